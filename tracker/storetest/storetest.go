// Package storetest is the conformance suite for tracker.PeerStore
// implementations. A store's tests call Run with a constructor; every store
// Eagle ships (memory, Redis) must pass it unchanged. Besides membership and
// expiry it checks what keeps a store safe on a network with an attacker on
// it: the limits of tracker.StoreConfig (ErrFull) and the binding of a peer
// entry to the address that created it (ErrPeerConflict).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/tracker"
)

// NewStore returns an empty store with cfg's peer TTL and limits; a zero
// limit means the store's default. Run closes every store it creates; the
// constructor may register more cleanup with t.Cleanup.
type NewStore func(t *testing.T, cfg tracker.StoreConfig) tracker.PeerStore

// longTTL is the TTL of every subtest that is not about expiry.
const longTTL = time.Minute

// Run runs the conformance suite against the stores newStore makes. It takes
// a few seconds, most of it waiting for peers to expire.
func Run(t *testing.T, newStore NewStore) {
	open := func(t *testing.T, cfg tracker.StoreConfig) tracker.PeerStore {
		t.Helper()
		s := newStore(t, cfg)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	long := tracker.StoreConfig{PeerTTL: longTTL}
	for _, tc := range []struct {
		name string
		cfg  tracker.StoreConfig
		run  func(t *testing.T, s tracker.PeerStore)
	}{
		{"AnnounceThenPeers", long, testAnnounceThenPeers},
		{"ReannounceUpdates", long, testReannounceUpdates},
		{"Counts", long, testCounts},
		{"Downloaded", long, testDownloaded},
		{"Remove", long, testRemove},
		{"Limit", long, testLimit},
		{"SampleCoversSwarm", long, testSampleCoversSwarm},
		{"SwarmsIsolated", long, testSwarmsIsolated},
		{"InvalidPeer", long, testInvalidPeer},
		{"CanceledContext", long, testCanceledContext},
		{"Concurrent", long, testConcurrent},
		{"AddressBinding", long, testAddressBinding},
		{"Location", long, testLocation},
		{"MaxSwarms", tracker.StoreConfig{PeerTTL: longTTL, MaxSwarms: 3}, testMaxSwarms},
		{"MaxPeers", tracker.StoreConfig{PeerTTL: longTTL, MaxPeers: 4, MaxSwarms: 3}, testMaxPeers},
		{"MaxPeersPerSwarm", tracker.StoreConfig{PeerTTL: longTTL, MaxPeersPerSwarm: 2}, testMaxPeersPerSwarm},
		{"LimitsConcurrent", tracker.StoreConfig{PeerTTL: longTTL, MaxSwarms: 50, MaxPeers: 120}, testLimitsConcurrent},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t, tc.cfg)) })
	}
	t.Run("Expiry", func(t *testing.T) { testExpiry(t, open(t, tracker.StoreConfig{PeerTTL: time.Second})) })
	t.Run("ExpiryFreesLimitsAndIDs", func(t *testing.T) {
		testExpiryFreesLimitsAndIDs(t, open(t, tracker.StoreConfig{PeerTTL: time.Second, MaxSwarms: 2, MaxPeers: 3}))
	})
	t.Run("SeedTTL", func(t *testing.T) {
		testSeedTTL(t, open(t, tracker.StoreConfig{PeerTTL: time.Second, SeedTTL: 3 * time.Second, MaxPeers: 3}))
	})
	t.Run("Close", func(t *testing.T) { testClose(t, newStore(t, long)) })
}

// Hash returns a distinct info hash for every n.
func Hash(n int) tracker.InfoHash {
	var ih tracker.InfoHash
	copy(ih[:], fmt.Sprintf("swarm-%014d", n))
	return ih
}

// ID returns a distinct peer ID for every n.
func ID(n int) tracker.PeerID {
	var id tracker.PeerID
	copy(id[:], fmt.Sprintf("-EG0001-%012d", n))
	return id
}

// MakePeer returns peer n: ID(n) at 127.0.0.1, a port derived from n, with
// left bytes left.
func MakePeer(n int, left int64) tracker.Peer {
	return tracker.Peer{
		ID:   ID(n),
		Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(n >> 8), byte(n)}), uint16(10000+n%50000)),
		Left: left,
	}
}

// From returns the IP address peer n of MakePeer announces from.
func From(n int) netip.Addr { return MakePeer(n, 0).Addr.Addr() }

func announce(t *testing.T, s tracker.PeerStore, ih tracker.InfoHash, ps ...tracker.Peer) {
	t.Helper()
	for _, p := range ps {
		if err := s.Announce(context.Background(), ih, p); err != nil {
			t.Fatalf("Announce(%v, %v): %v", ih, p.ID, err)
		}
	}
}

func peers(t *testing.T, s tracker.PeerStore, ih tracker.InfoHash, limit int) []tracker.Peer {
	t.Helper()
	ps, err := s.Peers(context.Background(), ih, limit)
	if err != nil {
		t.Fatalf("Peers(%v, %d): %v", ih, limit, err)
	}
	return ps
}

func counts(t *testing.T, s tracker.PeerStore, ih tracker.InfoHash) tracker.SwarmCounts {
	t.Helper()
	c, err := s.Counts(context.Background(), ih)
	if err != nil {
		t.Fatalf("Counts(%v): %v", ih, err)
	}
	return c
}

// byID indexes peers by ID, failing the test on a duplicate.
func byID(t *testing.T, ps []tracker.Peer) map[tracker.PeerID]tracker.Peer {
	t.Helper()
	m := make(map[tracker.PeerID]tracker.Peer, len(ps))
	for _, p := range ps {
		if _, dup := m[p.ID]; dup {
			t.Fatalf("peer %v returned twice", p.ID)
		}
		m[p.ID] = p
	}
	return m
}

func samePeer(a, b tracker.Peer) bool {
	return a.ID == b.ID && a.Addr == b.Addr && a.Left == b.Left && a.Location == b.Location
}

func testAnnounceThenPeers(t *testing.T, s tracker.PeerStore) {
	ih := Hash(1)
	v4 := MakePeer(1, 1000)
	v6 := tracker.Peer{ID: ID(2), Addr: netip.MustParseAddrPort("[::1]:6881"), Left: 0}
	before := time.Now()
	announce(t, s, ih, v4, v6)
	after := time.Now()
	got := byID(t, peers(t, s, ih, 10))
	if len(got) != 2 {
		t.Fatalf("Peers returned %d peers, want 2", len(got))
	}
	for _, want := range []tracker.Peer{v4, v6} {
		p := got[want.ID]
		if !samePeer(p, want) {
			t.Errorf("Peers returned %+v, want %+v", p, want)
		}
		// Allow for a store whose clock is a little off ours (another host).
		if p.LastSeen.Before(before.Add(-time.Second)) || p.LastSeen.After(after.Add(time.Second)) {
			t.Errorf("LastSeen %v outside the announce window [%v, %v]", p.LastSeen, before, after)
		}
	}
}

func testReannounceUpdates(t *testing.T, s tracker.PeerStore) {
	ih := Hash(1)
	p := MakePeer(1, 1000)
	announce(t, s, ih, p)
	first := peers(t, s, ih, 10)[0].LastSeen
	time.Sleep(5 * time.Millisecond)
	p.Addr = netip.AddrPortFrom(p.Addr.Addr(), 7000) // restarted on another port
	p.Left = 10
	announce(t, s, ih, p)
	got := peers(t, s, ih, 10)
	if len(got) != 1 || !samePeer(got[0], p) {
		t.Fatalf("after re-announce Peers = %+v, want only %+v", got, p)
	}
	if !got[0].LastSeen.After(first) {
		t.Errorf("re-announce did not advance LastSeen: %v then %v", first, got[0].LastSeen)
	}
	if c := counts(t, s, ih); c.Complete != 0 || c.Incomplete != 1 {
		t.Errorf("Counts = %+v, want 0 complete, 1 incomplete", c)
	}
}

func testCounts(t *testing.T, s tracker.PeerStore) {
	ih := Hash(1)
	announce(t, s, ih, MakePeer(1, 0), MakePeer(2, 0), MakePeer(3, 5), MakePeer(4, 1<<40), MakePeer(5, 1))
	if c := counts(t, s, ih); c.Complete != 2 || c.Incomplete != 3 {
		t.Errorf("Counts = %+v, want 2 complete, 3 incomplete", c)
	}
	// A seeder that loses data becomes a leecher again.
	announce(t, s, ih, MakePeer(1, 7))
	if c := counts(t, s, ih); c.Complete != 1 || c.Incomplete != 4 {
		t.Errorf("after seeder turned leecher Counts = %+v, want 1 complete, 4 incomplete", c)
	}
}

func testDownloaded(t *testing.T, s tracker.PeerStore) {
	ih := Hash(1)
	announce(t, s, ih, MakePeer(1, 100), MakePeer(2, 0))
	if c := counts(t, s, ih); c.Downloaded != 0 {
		t.Fatalf("Downloaded = %d before any completion, want 0", c.Downloaded)
	}
	announce(t, s, ih, MakePeer(1, 50), MakePeer(1, 0)) // peer 1 finishes
	announce(t, s, ih, MakePeer(1, 0), MakePeer(2, 0))  // seeders re-announce
	announce(t, s, ih, MakePeer(3, 0))                  // a new seeder did not download here
	if c := counts(t, s, ih); c.Downloaded != 1 || c.Complete != 3 || c.Incomplete != 0 {
		t.Errorf("Counts = %+v, want 1 downloaded, 3 complete", c)
	}
	// The count outlives the swarm emptying (within the TTL).
	for n := 1; n <= 3; n++ {
		if err := s.Remove(context.Background(), ih, ID(n), From(n)); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	if c := counts(t, s, ih); c != (tracker.SwarmCounts{Downloaded: 1}) {
		t.Errorf("emptied swarm Counts = %+v, want only 1 downloaded", c)
	}
}

func testRemove(t *testing.T, s tracker.PeerStore) {
	ctx := context.Background()
	ih := Hash(1)
	announce(t, s, ih, MakePeer(1, 0), MakePeer(2, 10))
	if err := s.Remove(ctx, ih, ID(1), From(1)); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	got := peers(t, s, ih, 10)
	if len(got) != 1 || got[0].ID != ID(2) {
		t.Fatalf("after Remove Peers = %+v, want only peer 2", got)
	}
	if c := counts(t, s, ih); c.Complete != 0 || c.Incomplete != 1 {
		t.Errorf("after Remove Counts = %+v, want 0 complete, 1 incomplete", c)
	}
	if err := s.Remove(ctx, ih, ID(1), From(5)); err != nil {
		t.Errorf("Remove of an absent peer: %v, want nil", err)
	}
	if err := s.Remove(ctx, Hash(99), ID(1), From(1)); err != nil {
		t.Errorf("Remove from an unknown swarm: %v, want nil", err)
	}
	if err := s.Remove(ctx, ih, ID(2), From(2)); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := peers(t, s, ih, 10); len(got) != 0 {
		t.Errorf("emptied swarm still has peers %+v", got)
	}
	// The swarm can be joined again after it emptied.
	announce(t, s, ih, MakePeer(3, 1))
	if c := counts(t, s, ih); c.Incomplete != 1 {
		t.Errorf("rejoined swarm Counts = %+v, want 1 incomplete", c)
	}
}

func testLimit(t *testing.T, s tracker.PeerStore) {
	ih := Hash(1)
	all := make(map[tracker.PeerID]tracker.Peer)
	for n := range 20 {
		p := MakePeer(n, int64(n))
		announce(t, s, ih, p)
		all[p.ID] = p
	}
	for _, tc := range []struct{ limit, want int }{{-1, 0}, {0, 0}, {1, 1}, {5, 5}, {19, 19}, {20, 20}, {100, 20}} {
		got := byID(t, peers(t, s, ih, tc.limit))
		if len(got) != tc.want {
			t.Errorf("Peers(limit %d) returned %d peers, want %d", tc.limit, len(got), tc.want)
		}
		for id, p := range got {
			if !samePeer(p, all[id]) {
				t.Errorf("Peers(limit %d) returned %+v, not a peer of the swarm", tc.limit, p)
			}
		}
	}
}

func testSampleCoversSwarm(t *testing.T, s tracker.PeerStore) {
	ih := Hash(1)
	for n := range 20 {
		announce(t, s, ih, MakePeer(n, 1))
	}
	// With a uniform sample of 5 out of 20, missing any given peer in 200
	// draws has probability 0.75^200 ≈ 1e-25.
	seen := make(map[tracker.PeerID]int)
	for range 200 {
		for _, p := range peers(t, s, ih, 5) {
			seen[p.ID]++
		}
	}
	for n := range 20 {
		if seen[ID(n)] == 0 {
			t.Errorf("peer %d never sampled in 200 draws of 5 out of 20", n)
		}
	}
}

func testSwarmsIsolated(t *testing.T, s tracker.PeerStore) {
	a, b := Hash(1), Hash(2)
	announce(t, s, a, MakePeer(1, 0))
	announce(t, s, b, MakePeer(2, 5), MakePeer(3, 5))
	if got := peers(t, s, a, 10); len(got) != 1 || got[0].ID != ID(1) {
		t.Errorf("swarm a Peers = %+v, want only peer 1", got)
	}
	if c := counts(t, s, b); c.Complete != 0 || c.Incomplete != 2 {
		t.Errorf("swarm b Counts = %+v, want 0 complete, 2 incomplete", c)
	}
	if got := peers(t, s, Hash(3), 10); len(got) != 0 {
		t.Errorf("unknown swarm Peers = %+v, want none", got)
	}
	if c := counts(t, s, Hash(3)); c != (tracker.SwarmCounts{}) {
		t.Errorf("unknown swarm Counts = %+v, want zero", c)
	}
}

// A peer's Location is stored as announced and returned by Peers; a
// re-announce replaces it, with another label or none.
func testLocation(t *testing.T, s tracker.PeerStore) {
	ih := Hash(1)
	long := strings.Repeat("abcdefgh.", 7)[:63]
	ps := []tracker.Peer{
		MakePeer(1, 100), MakePeer(2, 0), MakePeer(3, 5),
		{ID: ID(4), Addr: netip.MustParseAddrPort("[::1]:6881"), Left: 7},
		MakePeer(5, 9),
	}
	ps[0].Location = "eu-west-1/eu-west-1a/rack_7"
	ps[1].Location = "eu-west-1"
	ps[3].Location = "us.east/B-2"
	ps[4].Location = strings.Join([]string{long, long, long, long}, "/") // 255 bytes
	// ps[2] has none.
	announce(t, s, ih, ps...)
	check := func(want []tracker.Peer) {
		t.Helper()
		got := byID(t, peers(t, s, ih, 10))
		if len(got) != len(want) {
			t.Fatalf("Peers returned %d peers, want %d", len(got), len(want))
		}
		for _, w := range want {
			if p := got[w.ID]; !samePeer(p, w) {
				t.Errorf("Peers returned %+v, want %+v (location %q)", p, w, w.Location)
			}
		}
	}
	check(ps)
	// Re-announces replace the location: a new one, none, one again.
	ps[0].Location = "eu-west-1/eu-west-1b"
	ps[1].Location = ""
	ps[2].Location = "ap/x"
	announce(t, s, ih, ps[:3]...)
	check(ps)
	// Peers is not the only way out: an AnnounceStore's answer carries
	// the locations too.
	if as, ok := s.(tracker.AnnounceStore); ok {
		got, _, err := as.AnnouncePeers(context.Background(), ih, ps[3], 10)
		if err != nil {
			t.Fatalf("AnnouncePeers: %v", err)
		}
		byid := byID(t, got)
		for _, w := range ps {
			if p := byid[w.ID]; !samePeer(p, w) {
				t.Errorf("AnnouncePeers returned %+v, want %+v (location %q)", p, w, w.Location)
			}
		}
	}
}

func testInvalidPeer(t *testing.T, s tracker.PeerStore) {
	ih := Hash(1)
	for name, p := range map[string]tracker.Peer{
		"no address":    {ID: ID(1), Left: 1},
		"port 0":        {ID: ID(1), Addr: netip.MustParseAddrPort("127.0.0.1:0"), Left: 1},
		"negative left": {ID: ID(1), Addr: netip.MustParseAddrPort("127.0.0.1:1"), Left: -1},
		"bad location":  {ID: ID(1), Addr: netip.MustParseAddrPort("127.0.0.1:1"), Left: 1, Location: "eu west/a"},
		"empty segment": {ID: ID(1), Addr: netip.MustParseAddrPort("127.0.0.1:1"), Left: 1, Location: "eu//a"},
	} {
		if err := s.Announce(context.Background(), ih, p); !errors.Is(err, tracker.ErrInvalidPeer) {
			t.Errorf("Announce of peer with %s: %v, want ErrInvalidPeer", name, err)
		}
	}
	if got := peers(t, s, ih, 10); len(got) != 0 {
		t.Errorf("invalid peers were stored: %+v", got)
	}
}

func testCanceledContext(t *testing.T, s tracker.PeerStore) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ih := Hash(1)
	if err := s.Announce(ctx, ih, MakePeer(1, 0)); !errors.Is(err, context.Canceled) {
		t.Errorf("Announce with canceled context: %v, want context.Canceled", err)
	}
	if err := s.Remove(ctx, ih, ID(1), From(1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Remove with canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.Peers(ctx, ih, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Peers with canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.Counts(ctx, ih); !errors.Is(err, context.Canceled) {
		t.Errorf("Counts with canceled context: %v, want context.Canceled", err)
	}
}

func testConcurrent(t *testing.T, s tracker.PeerStore) {
	const workers, perWorker, swarms = 8, 60, 5
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				n := w*perWorker + i
				ih := Hash(n % swarms)
				// Even peers finish as seeders; every third peer leaves.
				err := s.Announce(ctx, ih, MakePeer(n, 10))
				if err == nil && n%2 == 0 {
					err = s.Announce(ctx, ih, MakePeer(n, 0))
				}
				if err == nil && n%3 == 0 {
					err = s.Remove(ctx, ih, ID(n), From(n))
				}
				if err == nil {
					_, err = s.Peers(ctx, ih, 5)
				}
				if err == nil {
					_, err = s.Counts(ctx, ih)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for sw := range swarms {
		var want tracker.SwarmCounts
		for n := range workers * perWorker {
			if n%swarms != sw {
				continue
			}
			if n%2 == 0 {
				want.Downloaded++
			}
			switch {
			case n%3 == 0:
			case n%2 == 0:
				want.Complete++
			default:
				want.Incomplete++
			}
		}
		if got := counts(t, s, Hash(sw)); got != want {
			t.Errorf("swarm %d Counts = %+v, want %+v", sw, got, want)
		}
		if got := peers(t, s, Hash(sw), 1000); len(got) != want.Complete+want.Incomplete {
			t.Errorf("swarm %d has %d peers, want %d", sw, len(got), want.Complete+want.Incomplete)
		}
	}
}

// testExpiry needs a store with a one-second TTL.
func testExpiry(t *testing.T, s tracker.PeerStore) {
	ih := Hash(1)
	start := time.Now()
	announce(t, s, ih, MakePeer(1, 0), MakePeer(2, 10))
	time.Sleep(600*time.Millisecond - time.Since(start))
	refreshed := time.Now()
	announce(t, s, ih, MakePeer(1, 0)) // peer 1 keeps announcing, peer 2 falls silent
	time.Sleep(1300*time.Millisecond - time.Since(start))
	// Peer 2 was last seen 1.3s ago, past the 1s TTL; peer 1 0.7s ago.
	got := peers(t, s, ih, 10)
	c := counts(t, s, ih)
	if time.Since(refreshed) >= 900*time.Millisecond {
		// The machine stalled us long enough for peer 1 to near its TTL
		// too: only the expiry of peer 2 can be checked.
		t.Logf("checked %v after the refresh; not checking that peer 1 survived", time.Since(refreshed))
		got = slices.DeleteFunc(got, func(p tracker.Peer) bool { return p.ID == ID(1) })
		if len(got) != 0 || c.Incomplete != 0 {
			t.Fatalf("Peers = %+v, Counts = %+v: silent peer 2 did not expire", got, c)
		}
	} else {
		if len(got) != 1 || got[0].ID != ID(1) {
			t.Fatalf("Peers = %+v, want only peer 1 (peer 2 expired)", got)
		}
		if c.Complete != 1 || c.Incomplete != 0 {
			t.Errorf("Counts = %+v, want the expired leecher gone", c)
		}
	}
	time.Sleep(1700*time.Millisecond - time.Since(start))
	if got := peers(t, s, ih, 10); len(got) != 0 {
		t.Errorf("Peers = %+v after every peer expired, want none", got)
	}
	if c := counts(t, s, ih); c.Complete != 0 || c.Incomplete != 0 {
		t.Errorf("Counts = %+v after every peer expired, want zero", c)
	}
}

// testSeedTTL: a complete peer lasts the seed TTL (3s), an incomplete one
// the peer TTL (1s); a peer that completes moves to the longer TTL; the
// limits count live entries of both kinds, and an expired one frees its
// place.
func testSeedTTL(t *testing.T, s tracker.PeerStore) {
	ctx := context.Background()
	ih := Hash(1)
	start := time.Now()
	announce(t, s, ih, MakePeer(1, 0), MakePeer(2, 10), MakePeer(3, 10))
	time.Sleep(300*time.Millisecond - time.Since(start))
	announce(t, s, ih, MakePeer(3, 0)) // peer 3 completes
	time.Sleep(1600*time.Millisecond - time.Since(start))
	// Peer 2 fell silent 1.6s ago, past the peer TTL; the seeds 1 and 3
	// are within the seed TTL.
	got := peers(t, s, ih, 10)
	slices.SortFunc(got, func(a, b tracker.Peer) int { return strings.Compare(string(a.ID[:]), string(b.ID[:])) })
	if len(got) != 2 || got[0].ID != ID(1) || got[1].ID != ID(3) {
		t.Fatalf("Peers = %+v, want the seeds 1 and 3 (leecher 2 expired)", got)
	}
	for _, p := range got {
		if p.LastSeen.After(time.Now()) || p.LastSeen.Before(start.Add(-time.Second)) {
			t.Errorf("peer %s LastSeen %v: not the time of its last announce", p.ID, p.LastSeen)
		}
	}
	if c := counts(t, s, ih); c.Complete != 2 || c.Incomplete != 0 || c.Downloaded != 1 {
		t.Errorf("Counts = %+v, want 2 complete, 0 incomplete, 1 downloaded", c)
	}
	// MaxPeers is 3: the expired leecher's place is free, the seeds'
	// are not.
	announce(t, s, ih, MakePeer(4, 10))
	wantFull(t, s, Hash(2), MakePeer(5, 10))
	if err := s.Announce(ctx, ih, MakePeer(5, 0)); !errors.Is(err, tracker.ErrFull) {
		t.Errorf("a fourth live peer, complete: %v, want ErrFull", err)
	}
	time.Sleep(3600*time.Millisecond - time.Since(start))
	if got := peers(t, s, ih, 10); len(got) != 0 {
		t.Errorf("Peers = %+v after every peer expired, want none", got)
	}
	if c := counts(t, s, ih); c.Complete != 0 || c.Incomplete != 0 {
		t.Errorf("Counts = %+v after every peer expired, want zero", c)
	}
}

func testClose(t *testing.T, s tracker.PeerStore) {
	ctx := context.Background()
	ih := Hash(1)
	announce(t, s, ih, MakePeer(1, 0))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	if err := s.Announce(ctx, ih, MakePeer(2, 0)); !errors.Is(err, tracker.ErrStoreClosed) {
		t.Errorf("Announce after Close: %v, want ErrStoreClosed", err)
	}
	if err := s.Remove(ctx, ih, ID(1), From(1)); !errors.Is(err, tracker.ErrStoreClosed) {
		t.Errorf("Remove after Close: %v, want ErrStoreClosed", err)
	}
	if _, err := s.Peers(ctx, ih, 1); !errors.Is(err, tracker.ErrStoreClosed) {
		t.Errorf("Peers after Close: %v, want ErrStoreClosed", err)
	}
	if _, err := s.Counts(ctx, ih); !errors.Is(err, tracker.ErrStoreClosed) {
		t.Errorf("Counts after Close: %v, want ErrStoreClosed", err)
	}
}

// testAddressBinding: while an entry is live, its peer ID belongs to the IP
// address that announced it. Another address can neither move it, nor
// refresh it, nor remove it; the same address on another port can.
func testAddressBinding(t *testing.T, s tracker.PeerStore) {
	ctx := context.Background()
	ih := Hash(1)
	victim := tracker.Peer{ID: ID(1), Addr: netip.MustParseAddrPort("127.0.0.2:6881"), Left: 100}
	other := netip.MustParseAddr("127.0.0.3")
	announce(t, s, ih, victim)
	seen := peers(t, s, ih, 10)[0].LastSeen
	time.Sleep(5 * time.Millisecond)

	for _, addr := range []netip.AddrPort{
		netip.AddrPortFrom(other, 6881),
		netip.AddrPortFrom(other, 7000),
		netip.MustParseAddrPort("[::1]:6881"),
	} {
		attacker := tracker.Peer{ID: victim.ID, Addr: addr, Left: 0}
		if err := s.Announce(ctx, ih, attacker); !errors.Is(err, tracker.ErrPeerConflict) {
			t.Errorf("announce of the victim's ID from %v: %v, want ErrPeerConflict", addr, err)
		}
	}
	got := peers(t, s, ih, 10)
	if len(got) != 1 || !samePeer(got[0], victim) {
		t.Fatalf("after announces from other addresses Peers = %+v, want only the victim %+v", got, victim)
	}
	if !got[0].LastSeen.Equal(seen) {
		t.Errorf("a refused announce refreshed the victim: LastSeen %v, was %v", got[0].LastSeen, seen)
	}
	// The attacker's left=0 was not taken: no completion, no seeder.
	if c := counts(t, s, ih); c != (tracker.SwarmCounts{Incomplete: 1}) {
		t.Errorf("after refused announces Counts = %+v, want only the victim, incomplete", c)
	}

	if err := s.Remove(ctx, ih, victim.ID, other); !errors.Is(err, tracker.ErrPeerConflict) {
		t.Errorf("Remove of the victim's ID from %v: %v, want ErrPeerConflict", other, err)
	}
	if err := s.Remove(ctx, ih, victim.ID, netip.Addr{}); !errors.Is(err, tracker.ErrPeerConflict) {
		t.Errorf("Remove of the victim's ID from no address: %v, want ErrPeerConflict", err)
	}
	if got := peers(t, s, ih, 10); len(got) != 1 || !samePeer(got[0], victim) {
		t.Fatalf("after Removes from other addresses Peers = %+v, want the victim %+v", got, victim)
	}

	// The binding is per swarm: the same ID elsewhere is another entry.
	announce(t, s, Hash(2), tracker.Peer{ID: victim.ID, Addr: netip.AddrPortFrom(other, 6881), Left: 1})

	// The victim restarts on another port: same IP, so it is still its own.
	restarted := victim
	restarted.Addr = netip.AddrPortFrom(victim.Addr.Addr(), 7001)
	announce(t, s, ih, restarted)
	if got := peers(t, s, ih, 10); len(got) != 1 || !samePeer(got[0], restarted) {
		t.Fatalf("after a restart on another port Peers = %+v, want %+v", got, restarted)
	}
	// Its stop counts from any port of its address.
	if err := s.Remove(ctx, ih, victim.ID, victim.Addr.Addr()); err != nil {
		t.Fatalf("Remove by the victim: %v", err)
	}
	if got := peers(t, s, ih, 10); len(got) != 0 {
		t.Fatalf("after the victim's own Remove Peers = %+v, want none", got)
	}
	// A removed entry frees the ID.
	taker := tracker.Peer{ID: victim.ID, Addr: netip.AddrPortFrom(other, 6881), Left: 5}
	announce(t, s, ih, taker)
	if got := peers(t, s, ih, 10); len(got) != 1 || !samePeer(got[0], taker) {
		t.Errorf("after the ID was freed Peers = %+v, want %+v", got, taker)
	}
}

// wantFull checks that announcing p to ih is refused with ErrFull and
// leaves no trace.
func wantFull(t *testing.T, s tracker.PeerStore, ih tracker.InfoHash, p tracker.Peer) {
	t.Helper()
	before := counts(t, s, ih)
	if err := s.Announce(context.Background(), ih, p); !errors.Is(err, tracker.ErrFull) {
		t.Fatalf("Announce(%v, %v) to a full store: %v, want ErrFull", ih, p.ID, err)
	}
	if c := counts(t, s, ih); c != before {
		t.Errorf("refused announce changed the swarm's Counts from %+v to %+v", before, c)
	}
	for _, q := range peers(t, s, ih, 1000) {
		if q.ID == p.ID {
			t.Errorf("refused peer %v is in the swarm", p.ID)
		}
	}
}

// testMaxSwarms needs a store with MaxSwarms 3.
func testMaxSwarms(t *testing.T, s tracker.PeerStore) {
	for n := range 3 {
		announce(t, s, Hash(n), MakePeer(n, 1))
	}
	wantFull(t, s, Hash(3), MakePeer(3, 1))
	// Known swarms take re-announces and new peers.
	announce(t, s, Hash(0), MakePeer(0, 0), MakePeer(10, 1))
	announce(t, s, Hash(2), MakePeer(2, 1))
	if c := counts(t, s, Hash(0)); c != (tracker.SwarmCounts{Complete: 1, Incomplete: 1, Downloaded: 1}) {
		t.Errorf("swarm 0 Counts = %+v, want 1 complete, 1 incomplete, 1 downloaded", c)
	}
	// The refusals took no place.
	wantFull(t, s, Hash(4), MakePeer(4, 1))
	wantFull(t, s, Hash(3), MakePeer(3, 1))
}

// testMaxPeers needs a store with MaxPeers 4 and MaxSwarms 3.
func testMaxPeers(t *testing.T, s tracker.PeerStore) {
	announce(t, s, Hash(1), MakePeer(1, 1), MakePeer(2, 1))
	announce(t, s, Hash(2), MakePeer(3, 1), MakePeer(4, 1))
	wantFull(t, s, Hash(1), MakePeer(5, 1))
	// Nor in a new swarm, and the refusal takes no swarm's place either.
	wantFull(t, s, Hash(3), MakePeer(5, 1))
	wantFull(t, s, Hash(4), MakePeer(5, 1))
	for n := 1; n <= 4; n++ {
		announce(t, s, Hash(1+(n-1)/2), MakePeer(n, 0))
	}
	// A stop frees a place at once.
	if err := s.Remove(context.Background(), Hash(1), ID(1), From(1)); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	announce(t, s, Hash(3), MakePeer(5, 1))
	wantFull(t, s, Hash(3), MakePeer(6, 1))
	if c := counts(t, s, Hash(3)); c.Incomplete != 1 {
		t.Errorf("swarm 3 Counts = %+v, want the one new peer", c)
	}
}

// testMaxPeersPerSwarm needs a store with MaxPeersPerSwarm 2.
func testMaxPeersPerSwarm(t *testing.T, s tracker.PeerStore) {
	announce(t, s, Hash(1), MakePeer(1, 1), MakePeer(2, 1))
	wantFull(t, s, Hash(1), MakePeer(3, 1))
	// Other swarms have their own places; known peers re-announce.
	announce(t, s, Hash(2), MakePeer(3, 1), MakePeer(4, 1))
	announce(t, s, Hash(1), MakePeer(1, 0), MakePeer(2, 1))
	if c := counts(t, s, Hash(1)); c != (tracker.SwarmCounts{Complete: 1, Incomplete: 1, Downloaded: 1}) {
		t.Errorf("swarm 1 Counts = %+v, want 1 complete, 1 incomplete, 1 downloaded", c)
	}
	wantFull(t, s, Hash(1), MakePeer(5, 1))
}

// testLimitsConcurrent needs a store with MaxSwarms 50 and MaxPeers 120:
// racing announces take exactly the places there are.
func testLimitsConcurrent(t *testing.T, s tracker.PeerStore) {
	const workers, perWorker = 8, 30
	ctx := context.Background()
	announce(t, s, Hash(0), MakePeer(0, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, full int
	var other []error
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				n := 1 + w*perWorker + i
				// Every peer starts its own swarm, and every third joins
				// swarm 0 as well: the swarms run out first, then the
				// peers.
				errs := []error{s.Announce(ctx, Hash(n), MakePeer(n, 1))}
				if n%3 == 0 {
					errs = append(errs, s.Announce(ctx, Hash(0), MakePeer(1000+n, 1)))
				}
				mu.Lock()
				for _, err := range errs {
					switch {
					case err == nil:
						ok++
					case errors.Is(err, tracker.ErrFull):
						full++
					default:
						other = append(other, err)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range other {
		t.Fatal(err)
	}
	var swarms, stored int
	for n := range workers*perWorker + 1 {
		if c := counts(t, s, Hash(n)); c.Incomplete > 0 {
			swarms++
			stored += c.Incomplete
		}
	}
	const attempts = workers*perWorker + workers*perWorker/3
	if swarms != 50 || stored != 120 || ok != 119 || full != attempts-119 {
		t.Errorf("%d swarms of %d peers stored, %d announces succeeded and %d were full; want 50 swarms (MaxSwarms), 120 peers (MaxPeers), 119 and %d",
			swarms, stored, ok, full, attempts-119)
	}
}

// testExpiryFreesLimitsAndIDs needs a store with a one-second TTL,
// MaxSwarms 2 and MaxPeers 3: once entries expire, a full store takes new
// swarms and peers again, and a peer ID is free for another address.
func testExpiryFreesLimitsAndIDs(t *testing.T, s tracker.PeerStore) {
	const ttl = time.Second
	ctx := context.Background()
	start := time.Now()
	announce(t, s, Hash(1), MakePeer(1, 1), MakePeer(2, 1))
	announce(t, s, Hash(2), MakePeer(3, 1))
	filled := time.Now()
	wantFull(t, s, Hash(3), MakePeer(4, 1))
	wantFull(t, s, Hash(2), MakePeer(4, 1))
	taker := tracker.Peer{ID: ID(1), Addr: netip.MustParseAddrPort("[::1]:6881"), Left: 1}
	if err := s.Announce(ctx, Hash(1), taker); !errors.Is(err, tracker.ErrPeerConflict) {
		t.Fatalf("announce of a live peer's ID from another address: %v, want ErrPeerConflict", err)
	}
	// The ID is taken over as soon as its entry expires.
	for {
		err := s.Announce(ctx, Hash(1), taker)
		if err == nil {
			break
		}
		if !errors.Is(err, tracker.ErrPeerConflict) {
			t.Fatalf("announce of an expiring peer's ID from another address: %v, want ErrPeerConflict or success", err)
		}
		if time.Since(filled) > ttl+time.Second {
			t.Fatalf("peer ID still bound %v after its last announce, TTL %v", time.Since(filled), ttl)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Allow for a store whose clock is a little off ours.
	if since := time.Since(start); since < ttl-50*time.Millisecond {
		t.Errorf("a live peer's ID was taken by another address %v after its announce, TTL %v", since, ttl)
	}
	// Once everything has expired, the places are free at once: a full
	// store reclaims expired entries before it refuses.
	time.Sleep(time.Until(filled.Add(ttl + 10*time.Millisecond)))
	announce(t, s, Hash(3), MakePeer(4, 1)) // swarm 2's place
	announce(t, s, Hash(3), MakePeer(5, 1))
	// The places of the expired peers are free, and only those.
	wantFull(t, s, Hash(1), MakePeer(6, 1))
	wantFull(t, s, Hash(4), MakePeer(6, 1))
	if got := peers(t, s, Hash(1), 10); len(got) != 1 || !samePeer(got[0], taker) {
		t.Errorf("swarm 1 Peers = %+v, want only the new holder of ID 1 %+v", got, taker)
	}
}
