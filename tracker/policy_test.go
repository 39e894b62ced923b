package tracker_test

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

func policy(t *testing.T, name string) tracker.Policy {
	t.Helper()
	p, err := tracker.NewPolicy(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
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
	for _, name := range tracker.Policies() {
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
			got := policy(t, name).Order(self, slices.Clone(candidates))
			gotIDs := ids(got)
			slices.SortFunc(gotIDs, func(a, b tracker.PeerID) int { return slices.Compare(a[:], b[:]) })
			if !slices.Equal(gotIDs, others) {
				t.Errorf("Order returned %d peers %v, want exactly the 10 others", len(got), gotIDs)
			}
		})
	}
}

func TestCompletenessPolicyOrder(t *testing.T) {
	p := policy(t, tracker.PolicyCompleteness)
	lefts := []int64{500, 0, 7, 1 << 62, 0, 7, 3, 0}
	var candidates []tracker.Peer
	for i, left := range lefts {
		candidates = append(candidates, storetest.MakePeer(i+1, left))
	}
	firsts := make(map[tracker.PeerID]int)
	for range 300 {
		got := p.Order(storetest.MakePeer(0, 10), slices.Clone(candidates))
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
	p := policy(t, tracker.PolicyRandom)
	var candidates []tracker.Peer
	for n := 1; n <= 5; n++ {
		candidates = append(candidates, storetest.MakePeer(n, int64(n)))
	}
	firsts := make(map[tracker.PeerID]int)
	for range 500 {
		got := p.Order(storetest.MakePeer(0, 1), slices.Clone(candidates))
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

func (nearestPolicy) Order(requester tracker.Peer, candidates []tracker.Peer) []tracker.Peer {
	candidates = tracker.RandomPolicy{}.Order(requester, candidates)
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

// Registration is process-wide, as for sql.Register: do it once even when
// the test runs several times (-count).
var registerNearest = sync.OnceFunc(func() {
	tracker.RegisterPolicy("test-nearest", func() tracker.Policy { return nearestPolicy{} })
})

func TestRegisterPolicy(t *testing.T) {
	registerNearest()
	if !slices.Contains(tracker.Policies(), "test-nearest") {
		t.Fatalf("Policies() = %v, missing the registered policy", tracker.Policies())
	}
	if err := (tracker.Config{Policy: "test-nearest"}).Validate(); err != nil {
		t.Fatalf("config naming a registered policy: %v", err)
	}
	p := policy(t, "test-nearest")
	self := tracker.Peer{ID: storetest.ID(0), Addr: netip.MustParseAddrPort("127.0.5.1:1")}
	candidates := []tracker.Peer{
		{ID: storetest.ID(1), Addr: netip.MustParseAddrPort("127.0.9.1:1")},
		{ID: storetest.ID(2), Addr: netip.MustParseAddrPort("127.0.5.2:1")},
	}
	if got := p.Order(self, candidates); got[0].ID != storetest.ID(2) {
		t.Errorf("registered policy not used: first peer %v", got[0].Addr)
	}
	for name, register := range map[string]func(){
		"duplicate": func() { tracker.RegisterPolicy("random", func() tracker.Policy { return nearestPolicy{} }) },
		"empty":     func() { tracker.RegisterPolicy("", func() tracker.Policy { return nearestPolicy{} }) },
		"nil":       func() { tracker.RegisterPolicy("test-nil", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterPolicy with %s name/constructor did not panic", name)
				}
			}()
			register()
		}()
	}
	if _, err := tracker.NewPolicy("nope"); !errors.Is(err, tracker.ErrUnknownPolicy) {
		t.Errorf("NewPolicy(nope) = %v, want ErrUnknownPolicy", err)
	}
}
