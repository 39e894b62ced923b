package tracker_test

import (
	"testing"

	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, cfg tracker.StoreConfig) tracker.PeerStore {
		return tracker.NewMemoryStore(cfg)
	})
}
