package driver

import (
	"context"
	"fmt"
	"slices"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Factory creates a storage driver from its parameters, as given in the
// registry's storage configuration.
type Factory func(ctx context.Context, params map[string]any) (storagedriver.StorageDriver, error)

var (
	driversMu sync.RWMutex
	drivers   = make(map[string]Factory)
)

// Register makes a driver available to Open under name. As with
// database/sql, the package that provides a driver calls it from its init
// function, and a program gets the driver by importing that package (for
// its side effect alone, with a blank import). Register panics if f is nil
// or name is already registered.
func Register(name string, f Factory) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if f == nil {
		panic("driver: Register factory is nil")
	}
	if _, dup := drivers[name]; dup {
		panic(fmt.Sprintf("driver: Register called twice for driver %q", name))
	}
	drivers[name] = f
}

// Drivers returns the sorted names of the registered drivers.
func Drivers() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	names := make([]string, 0, len(drivers))
	for name := range drivers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// lookup returns the factory registered under name, or nil.
func lookup(name string) Factory {
	driversMu.RLock()
	defer driversMu.RUnlock()
	return drivers[name]
}

// The drivers every program gets: they bring in no dependency beyond
// distribution's driver base. s3 is in storage/driver/s3.
func init() {
	Register("filesystem", func(_ context.Context, params map[string]any) (storagedriver.StorageDriver, error) {
		d, err := filesystem.FromParameters(params)
		if err != nil {
			return nil, err
		}
		return d, nil
	})
	Register("inmemory", func(context.Context, map[string]any) (storagedriver.StorageDriver, error) {
		return inmemory.New(), nil
	})
}
