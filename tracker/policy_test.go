package tracker_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

// policies are the built-in policies, by name.
var policies = map[string]tracker.Policy{
	"random":       tracker.RandomPolicy{},
	"completeness": tracker.CompletenessPolicy{},
	"topology":     tracker.NewTopologyPolicy(tracker.TopologyConfig{}),
}

func ids(ps []tracker.Peer) []tracker.PeerID {
	out := make([]tracker.PeerID, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// Every policy must drop the requester (by ID, and by address for a client
// that restarted with a new ID) and keep every other candidate.
func TestPoliciesExcludeRequester(t *testing.T) {
	for name, p := range policies {
		t.Run(name, func(t *testing.T) {
			self := storetest.MakePeer(0, 10)
			restarted := self
			restarted.ID = storetest.ID(99)
			var candidates []tracker.Peer
			for n := 1; n <= 10; n++ {
				candidates = append(candidates, storetest.MakePeer(n, int64(n%3)))
			}
			others := ids(candidates)
			candidates = append(candidates, self, restarted)
			got := p.Order(storetest.Hash(1), self, slices.Clone(candidates))
			gotIDs := ids(got)
			slices.SortFunc(gotIDs, func(a, b tracker.PeerID) int { return slices.Compare(a[:], b[:]) })
			if !slices.Equal(gotIDs, others) {
				t.Errorf("Order returned %d peers %v, want exactly the 10 others", len(got), gotIDs)
			}
		})
	}
}

func TestCompletenessPolicyOrder(t *testing.T) {
	p := tracker.CompletenessPolicy{}
	lefts := []int64{500, 0, 7, 1 << 62, 0, 7, 3, 0}
	var candidates []tracker.Peer
	for i, left := range lefts {
		candidates = append(candidates, storetest.MakePeer(i+1, left))
	}
	firsts := make(map[tracker.PeerID]int)
	for range 300 {
		got := p.Order(storetest.Hash(1), storetest.MakePeer(0, 10), slices.Clone(candidates))
		var gotLefts []int64
		for _, peer := range got {
			gotLefts = append(gotLefts, peer.Left)
		}
		if want := []int64{0, 0, 0, 3, 7, 7, 500, 1 << 62}; !slices.Equal(gotLefts, want) {
			t.Fatalf("Order gave lefts %v, want %v", gotLefts, want)
		}
		firsts[got[0].ID]++
	}
	// The three seeders share the first place: each should get it about 100
	// times in 300; fewer than 50 would mean the tie is not broken at random.
	for _, n := range []int{2, 5, 8} {
		if c := firsts[storetest.ID(n)]; c < 50 {
			t.Errorf("seeder %d came first %d times out of 300, want about 100", n, c)
		}
	}
}

func TestRandomPolicyShuffles(t *testing.T) {
	p := tracker.RandomPolicy{}
	var candidates []tracker.Peer
	for n := 1; n <= 5; n++ {
		candidates = append(candidates, storetest.MakePeer(n, int64(n)))
	}
	firsts := make(map[tracker.PeerID]int)
	for range 500 {
		got := p.Order(storetest.Hash(1), storetest.MakePeer(0, 1), slices.Clone(candidates))
		if len(got) != 5 {
			t.Fatalf("Order returned %d peers, want 5", len(got))
		}
		firsts[got[0].ID]++
	}
	for n := 1; n <= 5; n++ {
		if c := firsts[storetest.ID(n)]; c < 50 { // expected 100
			t.Errorf("peer %d came first %d times out of 500, want about 100", n, c)
		}
	}
}

// nearestPolicy stands in for a later topology-aware policy: it hands out
// peers on the requester's /24 first.
type nearestPolicy struct{}

func (nearestPolicy) Order(ih tracker.InfoHash, requester tracker.Peer, candidates []tracker.Peer) []tracker.Peer {
	candidates = tracker.RandomPolicy{}.Order(ih, requester, candidates)
	near := func(p tracker.Peer) bool {
		a, b := p.Addr.Addr().As4(), requester.Addr.Addr().As4()
		return a[0] == b[0] && a[1] == b[1] && a[2] == b[2]
	}
	slices.SortStableFunc(candidates, func(x, y tracker.Peer) int {
		switch {
		case near(x) == near(y):
			return 0
		case near(x):
			return -1
		}
		return 1
	})
	return candidates
}

// An embedder's own policy, passed as a value in Config.Policy, orders
// the peers the Server hands out.
func TestCustomPolicy(t *testing.T) {
	srv := newServer(t, tracker.Config{Policy: nearestPolicy{}})
	for n, ip := range map[int]string{1: "127.0.9.1", 2: "127.0.8.1", 3: "127.0.7.1", 4: "127.0.5.2"} {
		mustAnnounce(t, srv, ip, announceQuery(n, 100))
	}
	// The near peer first, whatever the store's order: the policy given
	// as a value is the one used.
	for range 5 {
		got := mustAnnounce(t, srv, "127.0.5.1", announceQuery(9, 100)).peers(t)
		if len(got) != 4 || got[0].Addr() != netip.MustParseAddr("127.0.5.2") {
			t.Fatalf("peers handed out %v, want 127.0.5.2 first (the custom policy's nearest)", got)
		}
	}
}
