package tracker

import (
	"context"
	"errors"
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
	s := NewMemoryStore(StoreConfig{PeerTTL: ttl})
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

func TestNewMemoryStoreDefaults(t *testing.T) {
	s := NewMemoryStore(StoreConfig{})
	defer s.Close()
	want := StoreConfig{PeerTTL: 30 * time.Second, SeedTTL: 30 * time.Second, MaxSwarms: 100_000, MaxPeers: 1_000_000, MaxPeersPerSwarm: 20_000}
	if s.cfg != want || DefaultPeerTTL != want.PeerTTL {
		t.Errorf("config = %+v, want %+v", s.cfg, want)
	}
	// Negative fields mean the defaults too.
	n := NewMemoryStore(StoreConfig{PeerTTL: -1, MaxSwarms: -1, MaxPeers: -1, MaxPeersPerSwarm: -1})
	defer n.Close()
	if n.cfg != want {
		t.Errorf("config from negative fields = %+v, want %+v", n.cfg, want)
	}
}

// A full store sweeps expired entries out of every swarm before it refuses
// an announce, instead of waiting for the janitor.
func TestMemoryStoreFullReclaimsExpired(t *testing.T) {
	t.Parallel()
	// The janitor sweeps 200ms, 400ms, 600ms... after creation; the peers
	// announced at 100ms expire at 500ms, and are wanted at 520ms.
	const ttl = 400 * time.Millisecond
	created := time.Now()
	s := NewMemoryStore(StoreConfig{PeerTTL: ttl, MaxSwarms: 4})
	defer s.Close()
	ctx := context.Background()
	peer := func(n int) Peer {
		return Peer{ID: PeerID{byte(n)}, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(n)}), 6881), Left: 1}
	}
	time.Sleep(time.Until(created.Add(100 * time.Millisecond)))
	for i := range 4 {
		if err := s.Announce(ctx, InfoHash{byte(i), 1}, peer(i)); err != nil {
			t.Fatal(err)
		}
	}
	filled := time.Now()
	if err := s.Announce(ctx, InfoHash{9, 1}, peer(9)); !errors.Is(err, ErrFull) {
		t.Fatalf("announce of a fifth swarm: %v, want ErrFull", err)
	}
	time.Sleep(time.Until(filled.Add(ttl + 20*time.Millisecond)))
	if err := s.Announce(ctx, InfoHash{9, 1}, peer(9)); err != nil {
		t.Fatalf("announce %v after the other swarms expired: %v, want it taken", time.Since(filled), err)
	}
	if since := time.Since(created); since > 600*time.Millisecond {
		t.Logf("checked %v after creation: the janitor may have done the work", since)
	}
	// A flood against the full store sweeps at most every TTL/10.
	for i := range 3 {
		if err := s.Announce(ctx, InfoHash{10 + byte(i), 1}, peer(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	// As if a sweep had just run: none may run again for reclaimEvery.
	swept := time.Now().UnixNano()
	s.lastReclaim.Store(swept)
	for i := range 1000 {
		if err := s.Announce(ctx, InfoHash{20, byte(i), byte(i >> 8)}, peer(20)); !errors.Is(err, ErrFull) {
			t.Fatalf("flood announce %d: %v, want ErrFull", i, err)
		}
	}
	if took := time.Duration(time.Now().UnixNano() - swept); took < s.reclaimEvery && s.lastReclaim.Load() != swept {
		t.Errorf("a flood of %v against a full store swept within %v of the last sweep", took, s.reclaimEvery)
	}
}
