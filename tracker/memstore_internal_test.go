package tracker

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// swarmCount returns how many swarms the store holds, expired or not.
func (s *MemoryStore) swarmCount() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.swarms)
		sh.mu.Unlock()
	}
	return n
}

// The janitor must reclaim swarms that nobody touches after their peers
// expire; lazy expiry alone would keep them forever.
func TestMemoryStoreJanitorReclaimsIdleSwarms(t *testing.T) {
	t.Parallel()
	const ttl = 100 * time.Millisecond
	s := NewMemoryStore(ttl)
	defer s.Close()
	for i := range 50 {
		ih := InfoHash{byte(i), 1}
		p := Peer{ID: PeerID{byte(i)}, Addr: netip.MustParseAddrPort("127.0.0.1:6881"), Left: 1}
		if err := s.Announce(context.Background(), ih, p); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.swarmCount(); n != 50 {
		t.Fatalf("store holds %d swarms, want 50", n)
	}
	// Peers expire after ttl and empty swarms are dropped ttl after their
	// last announce; the janitor runs every ttl/2.
	deadline := time.Now().Add(20 * ttl)
	for s.swarmCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("janitor left %d idle swarms after %v", s.swarmCount(), 20*ttl)
		}
		time.Sleep(ttl / 4)
	}
}

func TestNewMemoryStoreDefaultTTL(t *testing.T) {
	s := NewMemoryStore(0)
	defer s.Close()
	if s.ttl != DefaultPeerTTL || DefaultPeerTTL != 30*time.Second {
		t.Errorf("ttl = %v, want DefaultPeerTTL 30s", s.ttl)
	}
}
