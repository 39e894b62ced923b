package tracker_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

// size is the blob size of the swarms in these tests: Left == size means
// a peer that holds nothing yet.
const size = 1000

// located is peer n (storetest.MakePeer) at loc with left bytes left.
func located(n int, loc string, left int64) tracker.Peer {
	p := storetest.MakePeer(n, left)
	p.Location = loc
	return p
}

// group returns count peers numbered from first at loc, each with left.
func group(first, count int, loc string, left int64) []tracker.Peer {
	var ps []tracker.Peer
	for n := first; n < first+count; n++ {
		ps = append(ps, located(n, loc, left))
	}
	return ps
}

// without returns ps less the peer with self's ID.
func without(ps []tracker.Peer, self tracker.Peer) []tracker.Peer {
	return slices.DeleteFunc(slices.Clone(ps), func(p tracker.Peer) bool { return p.ID == self.ID })
}

// remoteOf returns the peers of got not at loc.
func remoteOf(got []tracker.Peer, loc string) []tracker.Peer {
	return slices.DeleteFunc(slices.Clone(got), func(p tracker.Peer) bool { return p.Location == loc })
}

// order asks p for the order of candidates (cloned) for self in swarm ih.
func order(p tracker.Policy, ih tracker.InfoHash, self tracker.Peer, candidates []tracker.Peer) []tracker.Peer {
	return p.Order(ih, self, slices.Clone(candidates))
}

// borders returns the members of members that get remote peers when each
// asks with every peer of swarm (members included) as candidates.
func borders(p tracker.Policy, ih tracker.InfoHash, members, swarm []tracker.Peer) []tracker.PeerID {
	var out []tracker.PeerID
	for _, m := range members {
		if len(remoteOf(order(p, ih, m, without(swarm, m)), m.Location)) > 0 {
			out = append(out, m.ID)
		}
	}
	return out
}

func TestTopologyLocalFirstRequesterNeverReturned(t *testing.T) {
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{})
	self := located(0, "eu/a", size)
	restarted := self
	restarted.ID = storetest.ID(99) // same address, another ID
	local := group(1, 5, "eu/a", 500)
	remote := append(group(10, 3, "eu/b", 0), group(20, 3, "us/a", 0)...)
	candidates := slices.Concat(remote, local, []tracker.Peer{self, restarted})
	ih := storetest.Hash(1)
	got := order(p, ih, self, candidates)
	for _, g := range got {
		if g.ID == self.ID || g.Addr == self.Addr {
			t.Fatalf("Order returned the requester (or its address): %+v", g)
		}
	}
	// Whether or not self is a border peer, every local peer comes, and a
	// local one first.
	if len(got) == 0 || got[0].Location != "eu/a" {
		t.Fatalf("first peer %+v, want a local one", got)
	}
	if n := len(got) - len(remoteOf(got, "eu/a")); n != len(local) {
		t.Errorf("%d local peers handed out, want all %d", n, len(local))
	}
}

// Local peers: seeders first, then fewest bytes left; equal ones by load.
func TestTopologyLocalOrder(t *testing.T) {
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{})
	ih := storetest.Hash(1)
	self := located(0, "eu/a", size)
	lefts := []int64{500, 0, 7, size, 0, 7, 3, 0}
	var local []tracker.Peer
	for i, left := range lefts {
		local = append(local, located(i+1, "eu/a", left))
	}
	firsts := map[tracker.PeerID]int{}
	for range 300 {
		got := order(p, ih, self, local)
		var gotLefts []int64
		for _, g := range got {
			gotLefts = append(gotLefts, g.Left)
		}
		if want := []int64{0, 0, 0, 3, 7, 7, 500, size}; !slices.Equal(gotLefts, want) {
			t.Fatalf("Order gave lefts %v, want %v", gotLefts, want)
		}
		firsts[got[0].ID]++
	}
	// Nothing was handed out (no RecordHandout): equal seeders share the
	// first place at random.
	for _, n := range []int{2, 5, 8} {
		if c := firsts[storetest.ID(n)]; c < 50 {
			t.Errorf("seeder %d came first %d times out of 300, want about 100", n, c)
		}
	}
	// A seeder handed out more sorts after the others; completeness still
	// comes before load.
	p.RecordHandout(ih, []tracker.Peer{local[1], local[1], local[4]})
	for range 20 {
		got := order(p, ih, self, local)
		if got[0].ID != local[7].ID || got[1].ID != local[4].ID || got[2].ID != local[1].ID || got[3].Left != 3 {
			t.Fatalf("after handouts: order %v, want seeder 8 (never handed), 5 (once), 2 (twice), then the leechers", ids(got))
		}
	}
}

// Loads halve every LoadHalfLife, and only MaxTracked peers are kept.
func TestTopologyLoadDecays(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{LoadHalfLife: 10 * time.Second})
	tracker.SetClock(p, func() time.Time { return now })
	ih := storetest.Hash(1)
	self := located(0, "dc1", size)
	a, b := located(1, "dc1", 0), located(2, "dc1", 0)
	first := func() tracker.PeerID {
		t.Helper()
		got := order(p, ih, self, []tracker.Peer{a, b})
		return got[0].ID
	}
	for range 4 {
		p.RecordHandout(ih, []tracker.Peer{a})
	}
	if first() != b.ID {
		t.Fatal("a handed out 4 times came before b, never handed out")
	}
	// Two half-lives later a's 4 are worth 1, less than b's 2 now.
	now = now.Add(20 * time.Second)
	p.RecordHandout(ih, []tracker.Peer{b, b})
	if first() != a.ID {
		t.Error("a's load did not decay: 4 handouts 20s ago (half-life 10s) sort after 2 now")
	}
	// The same peer ID at another address is another peer.
	moved := a
	moved.Addr = storetest.MakePeer(77, 0).Addr
	if got := order(p, ih, self, []tracker.Peer{b, moved}); got[0].ID != a.ID {
		t.Error("a at a new address inherited a's load")
	}

	small := tracker.NewTopologyPolicy(tracker.TopologyConfig{MaxTracked: 2})
	for range 5 {
		small.RecordHandout(ih, []tracker.Peer{a})
	}
	small.RecordHandout(ih, []tracker.Peer{b})
	c := located(3, "dc1", 0)
	small.RecordHandout(ih, []tracker.Peer{c}) // forgets a, the least recent
	for range 20 {
		if got := order(small, ih, self, []tracker.Peer{b, c, a}); got[0].ID != a.ID {
			t.Fatalf("MaxTracked 2: a's load was kept past two newer peers: order %v", ids(got))
		}
	}
}

// Each location has exactly min(Remote, its size) border peers per swarm,
// the same on every call and on every policy (tracker replica), and only
// they get remote peers.
func TestTopologyBorderPeers(t *testing.T) {
	seeders := group(900, 2, "dc0", 0)
	for _, remote := range []int{1, 2, 3} {
		for _, members := range []int{1, 2, 3, 8} {
			t.Run(fmt.Sprintf("remote=%d/members=%d", remote, members), func(t *testing.T) {
				dc1 := group(1, members, "dc1", size)
				dc2 := group(100, 8, "dc2", size)
				swarm := slices.Concat(seeders, dc1, dc2)
				cfg := tracker.TopologyConfig{Remote: remote}
				p, replica := tracker.NewTopologyPolicy(cfg), tracker.NewTopologyPolicy(cfg)
				duty := map[tracker.PeerID]int{}
				for sw := range 20 {
					ih := storetest.Hash(sw)
					b := borders(p, ih, dc1, swarm)
					if want := min(remote, members); len(b) != want {
						t.Fatalf("swarm %d: %d border peers in dc1, want %d", sw, len(b), want)
					}
					if again := borders(replica, ih, dc1, swarm); !slices.Equal(again, b) {
						t.Fatalf("swarm %d: border peers %v, then %v on another policy", sw, b, again)
					}
					for _, id := range b {
						duty[id]++
					}
				}
				// Over 20 swarms the duty is spread: more members than
				// Remote take a turn.
				if members > remote && len(duty) <= remote {
					t.Errorf("border duty over 20 swarms fell on %d members only", len(duty))
				}
			})
		}
	}
}

// A border peer gets up to Remote remote peers, right after its first
// local peer; a non-border member gets none.
func TestTopologyRemotePlacement(t *testing.T) {
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{})
	ih := storetest.Hash(3)
	dc1 := group(1, 8, "dc1", 600)
	seeders := group(900, 4, "dc0", 0)
	swarm := slices.Concat(seeders, dc1)
	nBorder := 0
	for _, m := range dc1 {
		got := order(p, ih, m, without(swarm, m))
		remote := remoteOf(got, "dc1")
		if len(got) != 7+len(remote) {
			t.Fatalf("member %v handed %d peers, %d of them remote; want the 7 other members and the remote ones", m.ID, len(got), len(remote))
		}
		if len(remote) == 0 {
			continue
		}
		nBorder++
		if len(remote) != 2 {
			t.Errorf("border peer handed %d remote peers, want Remote = 2", len(remote))
		}
		if got[0].Location != "dc1" || got[1].Location != "dc0" || got[2].Location != "dc0" {
			t.Errorf("border peer's list %v: want a local peer, then the 2 remote ones", got)
		}
	}
	if nBorder != 2 {
		t.Errorf("%d border peers, want 2", nBorder)
	}
	// Alone in its location, a peer is its border peer, and gets the
	// remote peers first.
	// It is handed 2 complete remote peers (seeders) and 2 partial ones
	// that hold more than it (dc1's).
	alone := located(50, "dc9", size)
	got := order(p, ih, alone, swarm)
	if len(got) != 4 || got[0].Left != 0 || got[1].Left != 0 || got[2].Location != "dc1" || got[3].Location != "dc1" {
		t.Errorf("lone peer handed %v, want 2 remote seeders, then 2 of dc1", got)
	}
}

// Among remote peers, the nearest come first: same region, other zone,
// before another region; then the most complete.
func TestTopologyRemoteAffinity(t *testing.T) {
	ih := storetest.Hash(1)
	self := located(0, "eu/a/r1", size)
	candidates := []tracker.Peer{
		located(1, "us/a/r1", 1),
		located(2, "eu/b/r1", 10),
		located(3, "eu/a/r2", 20),
		located(4, "", 1), // unknown: affinity 0
		located(5, "eu/b/r2", 5),
		located(6, "eu", 2), // a prefix of self's: a remote group, affinity 1
	}
	// A fresh policy each time: picks add to their locations' export
	// load (TestTopologyExportLoad).
	for range 20 {
		p := tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: 3})
		got := order(p, ih, self, candidates)
		// Alone in its rack, self is a border peer: 3 remote peers.
		if want := []tracker.PeerID{storetest.ID(3), storetest.ID(6), storetest.ID(5)}; !slices.Equal(ids(got), want) {
			t.Fatalf("order %v, want rack r2 of the zone, then the region's most complete: %v", ids(got), want)
		}
	}
	// A complete remote peer, however far, comes before the partial
	// ones, which are handed as well (as upstream peers, see
	// TestTopologyUpstream).
	candidates = append(candidates, located(7, "us/b/r1", 0))
	for range 20 {
		p := tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: 3})
		if got, want := order(p, ih, self, candidates), []tracker.PeerID{storetest.ID(7), storetest.ID(3), storetest.ID(6), storetest.ID(5)}; !slices.Equal(ids(got), want) {
			t.Fatalf("order %v, want the complete remote peer, then the nearest partial ones %v", ids(got), want)
		}
	}
}

// A location's export load spreads the border peers of others over the
// locations that hold the blob: once one location's members were handed
// to another's border peer, a third's takes from elsewhere, even from a
// less complete location of the same affinity; the load then decays.
func TestTopologyExportLoad(t *testing.T) {
	for range 20 {
		p := tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: 1, LoadHalfLife: time.Second})
		now := time.Unix(1000, 0)
		tracker.SetClock(p, func() time.Time { return now })
		ih := storetest.Hash(1)
		dc0 := group(100, 4, "dc0", 50)
		dc1, dc2 := located(1, "dc1", size), located(2, "dc2", size)
		r := remoteOf(order(p, ih, dc1, slices.Concat(dc0, []tracker.Peer{dc2})), "dc1")
		if len(r) != 1 || r[0].Location != "dc0" {
			t.Fatalf("empty dc1 handed remote %v, want one of dc0", r)
		}
		dc1.Left = 100 // it took some pieces, fewer than dc0 holds
		r = remoteOf(order(p, ih, dc2, slices.Concat(dc0, []tracker.Peer{dc1})), "dc2")
		if len(r) != 1 || r[0].ID != dc1.ID {
			t.Fatalf("dc2 handed remote %v after dc0 exported to dc1, want dc1's member", r)
		}
		now = now.Add(20 * time.Second)
		r = remoteOf(order(p, ih, dc2, slices.Concat(dc0, []tracker.Peer{dc1})), "dc2")
		if len(r) != 1 || r[0].Location != "dc0" {
			t.Fatalf("dc2 handed remote %v once the export loads decayed, want the most complete, in dc0", r)
		}
	}
}

// The no-starvation rule: a late location whose members hold nothing,
// while others hold everything, has its border peers pull complete peers
// in, even past nearer locations as empty as it is.
func TestTopologyLateGroupNotStarved(t *testing.T) {
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{})
	late := group(1, 8, "eu/late", size)
	emptyNear := group(100, 8, "eu/near", size) // nearer, but as empty
	done := group(200, 8, "us/done", 0)         // far, complete
	partial := group(300, 4, "eu/part", 400)    // nearer, holds more than late
	for sw := range 10 {
		ih := storetest.Hash(sw)
		swarm := slices.Concat(late, emptyNear, done)
		n := 0
		for _, m := range late {
			got := order(p, ih, m, without(swarm, m))
			remote := remoteOf(got, "eu/late")
			if len(remote) == 0 {
				continue
			}
			n++
			if len(remote) != 2 || remote[0].Left != 0 || remote[1].Left != 0 {
				t.Fatalf("swarm %d: late border peer handed remote %v, want 2 complete peers", sw, remote)
			}
			if idx := slices.IndexFunc(got, func(p tracker.Peer) bool { return p.Location != "eu/late" }); idx != 1 {
				t.Errorf("swarm %d: first remote peer at %d, want 1", sw, idx)
			}
		}
		if n != 2 {
			t.Fatalf("swarm %d: %d late border peers, want 2", sw, n)
		}
		// A partial location nearer that holds more is handed too, after
		// the complete one, as upstream: late takes from it and gives
		// nothing back. Both border peers get both kinds (each takes its
		// own share of the pieces, see Border).
		swarm = slices.Concat(late, emptyNear, done, partial)
		var withPartial int
		for _, m := range late {
			handed := order(p, ih, m, without(swarm, m))
			remote := remoteOf(handed, "eu/late")
			switch {
			case len(remote) == 0:
				continue
			case len(remote) == 4 && remote[0].Location == "us/done" && remote[1].Location == "us/done" &&
				remote[2].Location == "eu/part" && remote[3].Location == "eu/part":
				withPartial++
			default:
				t.Fatalf("swarm %d: late border peer handed %v, want 2 complete and 2 of the nearer partial location", sw, remote)
			}
			if up := p.Upstream(nil, m, handed); !slices.Equal(ids(up), ids(remote)) {
				t.Fatalf("swarm %d: upstream %v, want every remote peer handed %v", sw, ids(up), ids(remote))
			}
		}
		if withPartial != 2 {
			t.Fatalf("swarm %d: %d border peers handed partial ones, want 2", sw, withPartial)
		}
		// Without a complete one, the nearer partial location that
		// holds more than late is handed.
		swarm = slices.Concat(late, emptyNear, partial)
		for _, m := range late {
			remote := remoteOf(order(p, ih, m, without(swarm, m)), "eu/late")
			for _, r := range remote {
				if r.Location != "eu/part" {
					t.Fatalf("swarm %d: late border peer handed %v, want the nearer partial location", sw, remote)
				}
			}
		}
	}
}

// Nobody is handed remote peers when the local group holds a complete
// peer, or is complete itself; when nothing remote holds more than the
// group and no complete peer exists, the border peers trade with the
// nearest remote ones.
func TestTopologyWhenRemoteIsHanded(t *testing.T) {
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: 8})
	ih := storetest.Hash(1)
	remote := slices.Concat(group(100, 3, "dc0", 0), group(200, 3, "dc2", 10))
	withSeed := append(group(1, 3, "dc1", 500), located(4, "dc1", 0))
	for _, m := range withSeed[:3] {
		if r := remoteOf(order(p, ih, m, slices.Concat(without(withSeed, m), remote)), "dc1"); len(r) != 0 {
			t.Errorf("member of a group holding a seeder handed remote peers %v", r)
		}
	}
	if r := remoteOf(order(p, ih, withSeed[3], slices.Concat(withSeed[:3], remote)), "dc1"); len(r) != 0 {
		t.Errorf("complete peer handed remote peers %v", r)
	}
	// Everyone holds half, nobody all: the border peers (all 3 members,
	// Remote is 8) get the nearest remote peers that hold anything, not
	// the emptiest (us/c).
	half := group(1, 3, "eu/a", 500)
	others := slices.Concat(group(100, 3, "eu/b", 500), group(200, 3, "us/a", 500), group(300, 3, "us/b", 700), group(500, 3, "us/c", size))
	for _, m := range half {
		r := remoteOf(order(p, ih, m, slices.Concat(without(half, m), others)), "eu/a")
		if len(r) != 8 || r[0].Location != "eu/b" || r[2].Location != "eu/b" || r[3].Location != "us/a" || r[6].Location != "us/b" {
			t.Errorf("half-full border peer handed remote %v, want eu/b, us/a, then us/b", r)
		}
	}
	// At a swarm's start nobody holds anything: no location is joined to
	// another.
	empty := group(1, 3, "eu/a", size)
	for _, m := range empty {
		if r := remoteOf(order(p, ih, m, slices.Concat(without(empty, m), group(100, 3, "eu/b", size))), "eu/a"); len(r) != 0 {
			t.Errorf("border peer of an empty swarm handed remote %v, want none", r)
		}
	}
	// Only those remote peers that hold more than the group, when some
	// do, to every border peer.
	takers := 0
	for _, m := range half {
		more := located(400, "us/x", 100)
		r := remoteOf(order(p, ih, m, slices.Concat(without(half, m), others, []tracker.Peer{more})), "eu/a")
		if len(r) == 0 {
			continue
		}
		takers++
		if len(r) != 1 || r[0].ID != more.ID {
			t.Errorf("border peer handed remote %v, want only the one holding more", r)
		}
	}
	if takers != len(half) {
		t.Errorf("%d border peers handed the partial peer holding more, want %d", takers, len(half))
	}
}

// A requester without a location is ordered as CompletenessPolicy orders:
// every candidate, located or not, by Left.
func TestTopologyNoLocationIsCompleteness(t *testing.T) {
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{})
	ih := storetest.Hash(1)
	self := storetest.MakePeer(0, size)
	candidates := []tracker.Peer{
		located(1, "dc1", 500), located(2, "dc2", 0), storetest.MakePeer(3, 7),
		located(4, "dc1", size), located(5, "dc3", 0), storetest.MakePeer(6, 3),
	}
	for range 50 {
		got := order(p, ih, self, candidates)
		want := order(tracker.CompletenessPolicy{}, ih, self, candidates)
		var gl, wl []int64
		for i := range got {
			gl = append(gl, got[i].Left)
		}
		for i := range want {
			wl = append(wl, want[i].Left)
		}
		if !slices.Equal(gl, wl) || len(got) != len(candidates) {
			t.Fatalf("lefts %v, want CompletenessPolicy's %v", gl, wl)
		}
	}
}

// When the asker sees a sample of its location, it may count itself a
// border peer wrongly, but the true border peers always count
// themselves: sampling adds border peers, never removes them.
func TestTopologySampledGroupKeepsBorders(t *testing.T) {
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{})
	ih := storetest.Hash(5)
	dc1 := group(1, 40, "dc1", size)
	seed := located(900, "dc0", 0)
	full := borders(p, ih, dc1, append(slices.Clone(dc1), seed))
	if len(full) != 2 {
		t.Fatalf("%d border peers with the whole swarm, want 2", len(full))
	}
	for trial := range 50 {
		for _, m := range dc1 {
			// Every third member, a different third each trial.
			var sample []tracker.Peer
			for i, o := range dc1 {
				if o.ID != m.ID && (i+trial)%3 == 0 {
					sample = append(sample, o)
				}
			}
			sample = append(sample, seed)
			isBorder := len(remoteOf(order(p, ih, m, sample), "dc1")) > 0
			if slices.Contains(full, m.ID) && !isBorder {
				t.Fatalf("true border peer %v not a border peer with a sample", m.ID)
			}
		}
	}
}

// Order and RecordHandout are safe to call at once (run with -race).
func TestTopologyConcurrent(t *testing.T) {
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{MaxTracked: 16})
	swarm := slices.Concat(group(1, 20, "dc1", size), group(100, 20, "dc2", 0))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				ih := storetest.Hash(i % 7)
				self := swarm[(g*37+i)%len(swarm)]
				got := order(p, ih, self, without(swarm, self))
				p.RecordHandout(ih, got[:min(len(got), 5)])
			}
		})
	}
	wg.Wait()
}

func TestTopologyConfig(t *testing.T) {
	got := tracker.TopologyConfig{}.WithDefaults()
	want := tracker.TopologyConfig{Remote: 2, LoadHalfLife: 10 * time.Second, Sample: 1000, MaxTracked: 65536}
	if got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	if err := (tracker.TopologyConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	err := tracker.TopologyConfig{Remote: -1, LoadHalfLife: -time.Second, Sample: -2, MaxTracked: -3}.Validate()
	for _, key := range []string{"topology.remote -1", "topology.load_half_life -1s", "topology.sample -2", "topology.max_tracked -3"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate: %v, want it to name %q", err, key)
		}
	}
	if !errors.Is(err, tracker.ErrInvalidConfig) {
		t.Errorf("Validate: %v, does not wrap ErrInvalidConfig", err)
	}
	if n := tracker.NewTopologyPolicy(tracker.TopologyConfig{Sample: 77}).SampleSize(50); n != 77 {
		t.Errorf("SampleSize = %d, want the configured 77", n)
	}
}

// Upstream names the remote peers handed because they hold more than the
// asker's location, never those handed for trading, local ones, or any
// to an asker with no location.
func TestTopologyUpstream(t *testing.T) {
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{})
	ih := storetest.Hash(7)
	self := located(1, "eu/a", 800)
	mate := located(2, "eu/a", 500) // the group's most complete member
	seeder := located(3, "", 0)
	ahead := located(4, "us/b", 300)  // holds more than the group
	behind := located(5, "us/b", 600) // holds more than self, less than mate
	handed := []tracker.Peer{mate, seeder, ahead, behind}
	if got, want := ids(p.Upstream(nil, self, handed)), []tracker.PeerID{seeder.ID, ahead.ID}; !slices.Equal(got, want) {
		t.Errorf("upstream %v of %v, want %v", got, ids(handed), want)
	}
	// Locations that each lack part of the blob trade: nothing remote
	// holds more than the group, and nothing is upstream.
	other := located(6, "us/b", 700)
	handed = order(p, ih, self, []tracker.Peer{mate, other})
	if len(remoteOf(handed, "eu/a")) != 1 {
		t.Fatalf("handed %v, want the trading peer", handed)
	}
	if up := p.Upstream(nil, self, handed); len(up) != 0 {
		t.Errorf("trading: upstream %v, want none", ids(up))
	}
	if up := p.Upstream(nil, located(7, "", size), []tracker.Peer{seeder, ahead}); len(up) != 0 {
		t.Errorf("asker without a location: upstream %v, want none", ids(up))
	}
}

// Border names the members that Order hands remote peers to, each with
// its own share, of as many shares as the location has border peers; the
// others, and a requester without a location, get -1.
func TestTopologyBorderShares(t *testing.T) {
	seeders := group(900, 2, "dc0", 0)
	for _, remote := range []int{1, 2, 3} {
		for _, members := range []int{1, 2, 5} {
			p := tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: remote})
			dc1 := group(1, members, "dc1", size)
			swarm := slices.Concat(seeders, dc1)
			for sw := range 10 {
				ih := storetest.Hash(sw)
				want := borders(p, ih, dc1, swarm)
				var got []tracker.PeerID
				seen := map[int]bool{}
				for _, m := range dc1 {
					share, shares := p.Border(ih, m, without(swarm, m))
					if share < 0 {
						continue
					}
					got = append(got, m.ID)
					if shares != min(remote, members) || share >= shares || seen[share] {
						t.Fatalf("remote=%d members=%d swarm %d: share %d of %d (shares so far %v), want a share of its own of %d",
							remote, members, sw, share, shares, seen, min(remote, members))
					}
					seen[share] = true
				}
				if !slices.Equal(got, want) {
					t.Fatalf("remote=%d members=%d swarm %d: Border names %v, Order hands remote peers to %v", remote, members, sw, got, want)
				}
			}
		}
	}
	p := tracker.NewTopologyPolicy(tracker.TopologyConfig{})
	if share, _ := p.Border(storetest.Hash(1), storetest.MakePeer(5, size), seeders); share != -1 {
		t.Errorf("a requester without a location: share %d, want -1", share)
	}
}
