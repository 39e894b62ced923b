package storage_test

import (
	"testing"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/storagetest"
)

// TestExampleStoreConformance runs the conformance suite on the Store of
// Example_customStore, as every backend's tests do.
func TestExampleStoreConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return newMapStore()
	})
}
