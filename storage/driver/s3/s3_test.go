package s3_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/driver"
	_ "github.com/eagle-p2p/eagle/storage/driver/s3"
	"github.com/eagle-p2p/eagle/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestStorageDriverS3Registered checks that the import registers both
// names and that the driver's own parameter checks come through Open.
func TestStorageDriverS3Registered(t *testing.T) {
	for _, name := range []string{"s3", "s3aws"} {
		if !slices.Contains(driver.Drivers(), name) {
			t.Errorf("Drivers() = %v, want %s among them", driver.Drivers(), name)
		}
		_, err := driver.Open(t.Context(), name, map[string]any{"region": "us-east-1"})
		if err == nil || !strings.Contains(err.Error(), "bucket") {
			t.Fatalf("Open(%s without bucket) error = %v, want one about the bucket", name, err)
		}
	}
}

// TestStorageDriverS3 runs the conformance suite through distribution's s3
// driver (the AWS SDK, over HTTP) against an S3-compatible server on
// 127.0.0.1: gofakes3 with its in-memory backend. Each subtest gets its
// own prefix (rootdirectory) in one bucket.
func TestStorageDriverS3(t *testing.T) {
	// With AWS_CA_BUNDLE set (it is in CI's environment), aws-sdk-go v1
	// installs the bundle into http.DefaultClient's transport on every
	// session it creates, racing with requests in flight on other
	// sessions. A program opens its store once; this test opens one per
	// subtest while others run, and talks plain HTTP to loopback.
	t.Setenv("AWS_CA_BUNDLE", "")
	const bucket = "eagle"
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		faker.Server().ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		// The s3 driver uses the default transport: drop its connections
		// to the closed server so that goleak sees no reader goroutines.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	})

	// Parallel subtests run after this function returns; cleanups after them.
	t.Cleanup(func() {
		if requests.Load() == 0 {
			t.Error("the S3 server saw no request")
		}
	})
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := driver.Open(t.Context(), "s3", map[string]any{
			"accesskey":      "eagle",
			"secretkey":      "eagle-secret",
			"region":         "us-east-1",
			"regionendpoint": srv.URL,
			"forcepathstyle": true,
			"secure":         false,
			"bucket":         bucket,
			"rootdirectory":  fmt.Sprintf("/suite-%d", n.Add(1)),
			// The smallest part S3 allows, so that a 64 MiB blob is
			// uploaded in 13 parts.
			"chunksize": 5 << 20,
			// gofakes3 does not implement UploadPartCopy, so moves use
			// CopyObject up to its S3 limit of 5 GiB instead of switching
			// to a multipart copy above 32 MiB.
			"multipartcopythresholdsize": 5 << 30,
		})
		if err != nil {
			t.Fatalf("Open(s3): %v", err)
		}
		return s
	})
}
