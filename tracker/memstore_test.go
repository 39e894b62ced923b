package tracker_test

import (
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, ttl time.Duration) tracker.PeerStore {
		return tracker.NewMemoryStore(ttl)
	})
}
