package tracker_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

func TestValidLocation(t *testing.T) {
	seg63 := strings.Repeat("a", 63)
	for _, loc := range []string{
		"", "eu", "eu-west-1/eu-west-1a", "eu-west-1/eu-west-1a/rack_7", "A.b_C-9/0",
		"a/b/c/d/e/f/g/h", seg63, strings.Join([]string{seg63, seg63, seg63, seg63}, "/"),
	} {
		if err := tracker.ValidLocation(loc); err != nil {
			t.Errorf("ValidLocation(%q) = %v, want nil", loc, err)
		}
	}
	for _, tc := range []struct{ loc, want string }{
		{"/", "segment 1 is empty"},
		{"/eu", "segment 1 is empty"},
		{"eu/", "segment 2 is empty"},
		{"eu//a", "segment 2 is empty"},
		{"eu a", `segment 1 holds ' '`},
		{"eu/zone:a", `segment 2 holds ':'`},
		{"eu/zoné", "segment 2 holds"},
		{"eu\x00", "segment 1 holds"},
		{"a/b/c/d/e/f/g/h/i", "more than 8 segments"},
		{seg63 + "a", "segment 1 is 64 bytes, at most 63 allowed"},
		{strings.Join([]string{seg63, seg63, seg63, seg63, "a"}, "/"), "257 bytes, at most 255 allowed"},
	} {
		err := tracker.ValidLocation(tc.loc)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tracker.ErrInvalidLocation) {
			t.Errorf("ValidLocation(%q) = %v, want ErrInvalidLocation saying %q", tc.loc, err, tc.want)
		}
	}
}

func TestConfigLocations(t *testing.T) {
	rule := func(cidr, loc string) tracker.LocationRule {
		p, _ := netip.ParsePrefix(cidr)
		return tracker.LocationRule{Prefix: p, Location: loc}
	}
	ok := tracker.Config{Locations: []tracker.LocationRule{
		rule("10.1.0.0/16", "eu/a"), rule("10.1.2.0/24", "eu/a/r2"), rule("fd00::/8", "us/b"),
	}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	for _, tc := range []struct {
		rules []tracker.LocationRule
		want  string
	}{
		{[]tracker.LocationRule{{Location: "eu"}}, "locations[0].cidr: missing or invalid"},
		{[]tracker.LocationRule{rule("10.0.0.0/8", "")}, "locations[0].location: missing"},
		{[]tracker.LocationRule{rule("10.0.0.0/8", "eu"), rule("10.0.0.0/8", "eu//a")}, `locations[1].location "eu//a": segment 2 is empty`},
		{[]tracker.LocationRule{rule("10.0.0.0/8", "eu"), rule("10.9.0.0/8", "us")}, "locations[1].cidr 10.9.0.0/8: given twice (also locations[0])"},
	} {
		err := tracker.Config{Locations: tc.rules}.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tracker.ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig saying %q", tc.rules, err, tc.want)
		}
	}
}

// recordingPolicy remembers the requester and candidates of every Order,
// and orders as CompletenessPolicy.
type recordingPolicy struct {
	mu    sync.Mutex
	calls []orderCall
}

type orderCall struct {
	ih         tracker.InfoHash
	requester  tracker.Peer
	candidates []tracker.Peer
}

func (p *recordingPolicy) Order(ih tracker.InfoHash, requester tracker.Peer, candidates []tracker.Peer) []tracker.Peer {
	p.mu.Lock()
	p.calls = append(p.calls, orderCall{ih, requester, slices.Clone(candidates)})
	p.mu.Unlock()
	return tracker.CompletenessPolicy{}.Order(ih, requester, candidates)
}

func (p *recordingPolicy) last() orderCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[len(p.calls)-1]
}

// The "location" parameter is stored and handed to the policy, with the
// peer and for the candidates; a peer that sends none gets the location
// of the longest prefix of Config.Locations covering its address.
func TestAnnounceLocation(t *testing.T) {
	store := tracker.NewMemoryStore(tracker.StoreConfig{})
	t.Cleanup(func() { store.Close() })
	// A peer announced before the tracker had its rules.
	plain, err := tracker.New(tracker.Config{}, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	mustAnnounce(t, plain, "10.1.7.7", announceQuery(7, 100))

	rec := &recordingPolicy{}
	s, err := tracker.New(tracker.Config{Policy: rec, Locations: []tracker.LocationRule{
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Location: "eu/a"},
		{Prefix: netip.MustParsePrefix("10.1.2.0/24"), Location: "eu/a/r2"},
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Location: "eu"},
		{Prefix: netip.MustParsePrefix("::ffff:10.3.0.0/112"), Location: "mapped"},
	}}, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	want := map[tracker.PeerID]string{storetest.ID(7): "eu/a"}
	for _, tc := range []struct {
		n          int
		from, loc  string // loc: the parameter, "-" for none
		wantLocate string
	}{
		{1, "10.1.2.5", "-", "eu/a/r2"}, // the longest prefix
		{2, "10.1.9.9", "-", "eu/a"},    // the /16
		{3, "10.200.0.1", "-", "eu"},    // the /8
		{4, "192.0.2.1", "-", ""},       // no rule
		{5, "10.1.2.6", "us/x", "us/x"}, // the peer's own wins
		{6, "10.1.2.7", "", "eu/a/r2"},  // empty is none
		{8, "10.3.0.9", "-", "mapped"},  // a 4in6 rule covers IPv4 peers
		{9, "192.0.2.2", "ap/y/z", "ap/y/z"},
	} {
		q := announceQuery(tc.n, 100, "location", tc.loc)
		r := mustAnnounce(t, s, tc.from, q)
		call := rec.last()
		if call.requester.Location != tc.wantLocate {
			t.Errorf("peer %d from %s with location %q: policy saw location %q, want %q", tc.n, tc.from, tc.loc, call.requester.Location, tc.wantLocate)
		}
		if call.ih != storetest.Hash(1) {
			t.Errorf("policy saw info hash %v, want the announce's", call.ih)
		}
		// Every candidate carries the location it was stored with, or
		// the one its address gives (peer 7, announced before the rules).
		for _, c := range call.candidates {
			if w, ok := want[c.ID]; !ok || c.Location != w {
				t.Errorf("peer %d's candidate %v has location %q, want %q", tc.n, c.ID, c.Location, w)
			}
		}
		if got := len(r.peers(t)); got != len(want) {
			t.Errorf("peer %d handed %d peers, want %d", tc.n, got, len(want))
		}
		want[storetest.ID(tc.n)] = tc.wantLocate
	}
	// The store holds what was announced (peer 7 still has none there).
	ps, err := store.Peers(t.Context(), storetest.Hash(1), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		w := want[p.ID]
		if p.ID == storetest.ID(7) {
			w = ""
		}
		if p.Location != w {
			t.Errorf("store holds peer %v at %q, want %q", p.ID, p.Location, w)
		}
	}
	// An invalid location is refused, naming the parameter, and stores
	// nothing.
	r := get(t, s, "10.1.2.5", "/announce?"+announceQuery(20, 100, "location", "eu/a b"))
	if !strings.HasPrefix(r.failure(), "location: ") {
		t.Errorf("invalid location: %q, want a failure reason naming location", r.raw)
	}
	if c, _ := store.Counts(t.Context(), storetest.Hash(1)); c.Incomplete != len(want) {
		t.Errorf("%d peers after an invalid announce, want %d", c.Incomplete, len(want))
	}
}

// Through the Server, TopologyPolicy sees the whole swarm (SampleSizer),
// so a location has exactly Remote border peers even when every announce
// wants few peers, and its loads come from what the Server handed out
// (HandoutRecorder).
func TestServerTopologyPolicy(t *testing.T) {
	s := newServer(t, tracker.Config{Policy: tracker.NewTopologyPolicy(tracker.TopologyConfig{}), NumWant: 5})
	seeders := map[netip.AddrPort]bool{}
	for n := 1; n <= 2; n++ {
		ip := fmt.Sprintf("127.0.0.%d", n)
		mustAnnounce(t, s, ip, announceQuery(n, 0, "location", "dc0"))
		seeders[netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(10000+n))] = true
	}
	const members = 30
	ip := func(n int) string { return fmt.Sprintf("127.0.1.%d", n) }
	for n := 100; n < 100+members; n++ {
		mustAnnounce(t, s, ip(n-100), announceQuery(n, size, "location", "dc1"))
	}
	for round := range 2 {
		border := 0
		for n := 100; n < 100+members; n++ {
			got := mustAnnounce(t, s, ip(n-100), announceQuery(n, size, "location", "dc1")).peers(t)
			if len(got) != 5 {
				t.Fatalf("member handed %d peers, want numwant 5", len(got))
			}
			if slices.ContainsFunc(got, func(a netip.AddrPort) bool { return seeders[a] }) {
				border++
			}
		}
		if border != 2 {
			t.Errorf("round %d: %d of %d members handed a seeder, want the 2 border peers (the policy must see the whole location)", round, border, members)
		}
	}

	// Three equal local seeders, one peer handed per announce: the load
	// makes every three announces hand out all three.
	s = newServer(t, tracker.Config{Policy: tracker.NewTopologyPolicy(tracker.TopologyConfig{})})
	for n := 1; n <= 3; n++ {
		mustAnnounce(t, s, fmt.Sprintf("127.0.0.%d", n), announceQuery(n, 0, "location", "dc1"))
	}
	var handed []netip.AddrPort
	for n := 10; n < 22; n++ {
		got := mustAnnounce(t, s, fmt.Sprintf("127.0.0.%d", n), announceQuery(n, size, "location", "dc1", "numwant", "1")).peers(t)
		if len(got) != 1 {
			t.Fatalf("handed %v, want one peer", got)
		}
		handed = append(handed, got[0])
	}
	for i := 0; i+3 <= len(handed); i += 3 {
		if w := handed[i : i+3]; w[0] == w[1] || w[1] == w[2] || w[0] == w[2] {
			t.Errorf("announces %d-%d handed out %v: a seeder twice while another was never handed out", i, i+2, w)
		}
	}
}

// Under the topology policy the response names the upstream peers it
// hands a border peer ("upstream", compact); under the others it has no
// such key.
func TestAnnounceUpstream(t *testing.T) {
	for _, tc := range []struct {
		policy tracker.Policy
		want   []string
	}{
		{tracker.NewTopologyPolicy(tracker.TopologyConfig{}), []string{"10.0.0.2:10002", "10.0.0.3:10003"}},
		{tracker.CompletenessPolicy{}, nil},
	} {
		h := newServer(t, tracker.Config{Policy: tc.policy})
		mustAnnounce(t, h, "10.0.0.3", announceQuery(3, 0))                      // a seeder, no location
		mustAnnounce(t, h, "10.0.0.2", announceQuery(2, 300, "location", "dc0")) // holds more than dc1
		r := mustAnnounce(t, h, "10.0.1.4", announceQuery(4, 1000, "location", "dc1", "numwant", "10"))
		if n := len(r.peers(t)); n != 2 {
			t.Errorf("%T: handed %d peers, want 2", tc.policy, n)
		}
		var got []string
		s, ok := r.dict["upstream"].(string)
		if ok != (tc.want != nil) {
			t.Fatalf("%T: response %q: upstream key present %v", tc.policy, r.raw, ok)
		}
		for ; len(s) >= 6; s = s[6:] {
			a, _ := netip.AddrFromSlice([]byte(s[:4]))
			got = append(got, netip.AddrPortFrom(a, uint16(s[4])<<8|uint16(s[5])).String())
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%T: upstream %v, want %v", tc.policy, got, tc.want)
		}
	}
}

// Under the topology policy every answer to a located requester says
// whether it is a border peer ("border": its share + 1, or 0) and, when it
// is, into how many shares its location's imports are cut ("borders");
// under other policies, and to a requester without a location, neither
// key is there.
func TestAnnounceBorder(t *testing.T) {
	h := newServer(t, tracker.Config{Policy: tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: 2})})
	mustAnnounce(t, h, "10.0.0.3", announceQuery(3, 0)) // a seeder, no location
	var shares []int64
	for n := 10; n < 14; n++ {
		mustAnnounce(t, h, fmt.Sprintf("10.0.1.%d", n), announceQuery(n, 1000, "location", "dc1"))
	}
	for n := 10; n < 14; n++ {
		r := mustAnnounce(t, h, fmt.Sprintf("10.0.1.%d", n), announceQuery(n, 1000, "location", "dc1"))
		b, ok := r.dict["border"].(int64)
		if !ok {
			t.Fatalf("response %q: no border key", r.raw)
		}
		bs, has := r.dict["borders"].(int64)
		if b > 0 {
			if !has || bs != 2 {
				t.Errorf("border peer's response %q: borders %d (present %v), want 2", r.raw, bs, has)
			}
			shares = append(shares, b)
		} else if has {
			t.Errorf("response %q: borders for a member that is not a border peer", r.raw)
		}
	}
	slices.Sort(shares)
	if !slices.Equal(shares, []int64{1, 2}) {
		t.Errorf("border values of the 4 members %v, want 1 and 2 (and two 0)", shares)
	}
	if r := mustAnnounce(t, h, "10.0.0.4", announceQuery(4, 1000)); r.dict["border"] != nil {
		t.Errorf("response to a requester without a location %q has a border key", r.raw)
	}
	h = newServer(t, tracker.Config{Policy: tracker.CompletenessPolicy{}})
	if r := mustAnnounce(t, h, "10.0.1.4", announceQuery(4, 1000, "location", "dc1")); r.dict["border"] != nil {
		t.Errorf("completeness policy's response %q has a border key", r.raw)
	}
}
