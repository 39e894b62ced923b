// Package s3 registers distribution's s3 storage driver with storage/driver
// as "s3" and "s3aws". It talks to Amazon S3 and to S3-compatible servers
// (set regionendpoint and forcepathstyle). It has a package of its own
// because it brings in the AWS SDK: a program that keeps blobs in S3
// imports it for its side effect,
//
//	import _ "github.com/eagle-p2p/eagle/storage/driver/s3"
//
// and then opens the store with driver.Open(ctx, "s3", params). What a
// commit and a delete cost on S3 is described in storage/driver.
package s3

import (
	"context"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	s3aws "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"

	"github.com/eagle-p2p/eagle/storage/driver"
)

func init() {
	driver.Register("s3", create)
	driver.Register("s3aws", create)
}

// create is the Factory of both names.
func create(ctx context.Context, params map[string]any) (storagedriver.StorageDriver, error) {
	d, err := s3aws.FromParameters(ctx, params)
	if err != nil {
		return nil, err
	}
	return d, nil
}
