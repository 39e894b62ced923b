package driver_test

import (
	"context"
	"slices"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"github.com/eagle-p2p/eagle/storage/driver"
)

// Registered once per test binary, as a driver package would, so that
// the tests pass with -count above 1.
var testParams = make(chan map[string]any, 1)

func init() {
	driver.Register("test-register", func(_ context.Context, params map[string]any) (storagedriver.StorageDriver, error) {
		testParams <- params
		return inmemory.New(), nil
	})
	factory.Register("test-distribution", distributionFactory{})
}

func TestStorageDriverRegister(t *testing.T) {
	names := driver.Drivers()
	if !slices.IsSorted(names) || !slices.Contains(names, "test-register") {
		t.Fatalf("Drivers() = %v, want it sorted and with test-register", names)
	}
	names[0] = "changed"
	if driver.Drivers()[0] == "changed" {
		t.Fatal("Drivers() returned the registry's own slice")
	}
	s, err := driver.Open(t.Context(), "test-register", map[string]any{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	if got := <-testParams; got["k"] != "v" {
		t.Fatalf("the factory got %v", got)
	}
	if _, ok := s.Driver().(*inmemory.Driver); !ok {
		t.Fatalf("Open made %T", s.Driver())
	}

	for _, tc := range []struct {
		name string
		f    driver.Factory
	}{
		{"test-register", func(context.Context, map[string]any) (storagedriver.StorageDriver, error) { return nil, nil }},
		{"filesystem", func(context.Context, map[string]any) (storagedriver.StorageDriver, error) { return nil, nil }},
		{"test-nil", nil},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", tc.name)
				}
			}()
			driver.Register(tc.name, tc.f)
		}()
	}
	if slices.Contains(driver.Drivers(), "test-nil") {
		t.Error("a nil factory was registered")
	}
}

// TestStorageDriverDistributionFactory checks that Open still finds a
// driver registered only with distribution's registry, as gcs and azure
// are by a blank import of their package.
func TestStorageDriverDistributionFactory(t *testing.T) {
	s, err := driver.Open(t.Context(), "test-distribution", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Driver().(*inmemory.Driver); !ok {
		t.Fatalf("Open made %T", s.Driver())
	}
}

type distributionFactory struct{}

func (distributionFactory) Create(context.Context, map[string]any) (storagedriver.StorageDriver, error) {
	return inmemory.New(), nil
}
