package memory_test

import (
	"testing"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/memory"
	"github.com/eagle-p2p/eagle/storage/storagetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return memory.New()
	})
}
