package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/driver"
	_ "github.com/eagle-p2p/eagle/storage/driver/s3" // the s3 driver (and the AWS SDK)
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

// storageConfig is the storage section of "eagle seeder": where the
// seeder keeps the blobs it fetched from origin.
type storageConfig struct {
	// Driver is "filesystem" (Eagle's own store on local disk, the
	// default), or the name of a distribution storage driver: "inmemory"
	// (tests and demos: blobs in RAM) or "s3" (Amazon S3 or an
	// S3-compatible server).
	Driver string `yaml:"driver"`
	// Parameters are the driver's parameters, as in the distribution
	// registry's storage configuration. filesystem takes only
	// rootdirectory (default data_dir/blobs); s3 takes bucket, region,
	// regionendpoint, forcepathstyle, accesskey, secretkey, rootdirectory,
	// chunksize, ...; inmemory takes none.
	Parameters map[string]any `yaml:"parameters"`
}

// openStore opens the store that cfg names. A seeder's torrent state and
// partial downloads stay in its local data directory whatever the store.
func openStore(ctx context.Context, cfg storageConfig, dataDir string) (storage.Store, error) {
	switch cfg.Driver {
	case "", "filesystem":
		root := filepath.Join(dataDir, "blobs")
		for k, v := range cfg.Parameters {
			if k != "rootdirectory" {
				return nil, fmt.Errorf("storage.parameters.%s: the filesystem store takes only rootdirectory", k)
			}
			s, ok := v.(string)
			if !ok || s == "" {
				return nil, fmt.Errorf("storage.parameters.rootdirectory: %v is not a directory name", v)
			}
			root = s
		}
		return filesystem.New(root)
	}
	s, err := driver.Open(ctx, cfg.Driver, cfg.Parameters)
	if errors.Is(err, driver.ErrUnknownDriver) {
		return nil, fmt.Errorf("storage.driver: unknown driver %q (known: filesystem, inmemory, s3)", cfg.Driver)
	}
	if err != nil {
		return nil, fmt.Errorf("storage (driver %s): %w", cfg.Driver, err)
	}
	return s, nil
}
