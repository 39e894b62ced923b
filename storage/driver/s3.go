package driver

// The s3 driver (registered as "s3" and "s3aws") talks to Amazon S3 and to
// S3-compatible servers (set regionendpoint and forcepathstyle). It is kept
// in its own file because it brings in the AWS SDK.
import _ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
