package tracker_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

// heapSlack is what the heap may grow during a flood besides the store:
// the runtime's own bookkeeping, response buffers, metrics.
const heapSlack = 2 << 20

// heap returns the heap in use and the live heap after a full collection.
func heap() (inuse, alloc uint64) {
	// Two collections: sync.Pool keeps its victims through the first.
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.HeapAlloc
}

// floodResult counts the answers to a flood.
type floodResult struct {
	ok, full, other int
	firstOther      string
}

// flood sends n announces through h, each from a random address of
// 127.0.0.0/8 with a random peer ID, into a random swarm or, if ih is not
// nil, into ih. Every answer must be 200 or, with the "tracker full"
// failure reason, 503.
func flood(t *testing.T, h http.Handler, n int, ih *tracker.InfoHash, seed uint64) floodResult {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	rec := &recorder{h: make(http.Header)}
	req := httptest.NewRequest(http.MethodGet, "/announce", nil)
	var res floodResult
	var hash tracker.InfoHash
	var id tracker.PeerID
	for i := range n {
		if ih != nil {
			hash = *ih
		} else {
			fill(rng, hash[:])
		}
		fill(rng, id[:])
		req.URL.RawQuery = "info_hash=" + url.QueryEscape(string(hash[:])) + "&peer_id=" + url.QueryEscape(string(id[:])) +
			"&port=6881&uploaded=0&downloaded=0&left=1000&compact=1"
		a := rng.Uint32()
		req.RemoteAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(a >> 16), byte(a >> 8), byte(a)}), 40000).String()
		rec.body.Reset()
		h.ServeHTTP(rec, req)
		switch {
		case rec.status == http.StatusOK && !strings.HasPrefix(rec.body.String(), "d14:failure reason"):
			res.ok++
		case rec.status == http.StatusServiceUnavailable && rec.body.String() == "d14:failure reason12:tracker fulle":
			res.full++
		default:
			if res.other == 0 {
				res.firstOther = fmt.Sprintf("announce %d: status %d body %q", i, rec.status, rec.body.String())
			}
			res.other++
		}
	}
	return res
}

func fill(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// recorder is a ResponseWriter that keeps the status and body and reuses
// its buffer.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header         { return w.h }
func (w *recorder) WriteHeader(status int)      { w.status = status }
func (w *recorder) Write(p []byte) (int, error) { return w.body.Write(p) }

// storeStats gathers eagle_tracker_swarms and eagle_tracker_peers.
func storeStats(t *testing.T, reg *prometheus.Registry) (swarms, peers float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "eagle_tracker_swarms":
			swarms = mf.GetMetric()[0].GetGauge().GetValue()
		case "eagle_tracker_peers":
			peers = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return swarms, peers
}

// TestMaliciousAnnounceFlood floods a tracker at its default limits with
// 100,000 announces of made-up info hashes and peer IDs, each a new swarm,
// and checks that the heap grows by no more than the MemoryStore documents
// per swarm and peer.
func TestMaliciousAnnounceFlood(t *testing.T) {
	const n = 100_000 // = DefaultMaxSwarms: every announce is taken
	reg := prometheus.NewRegistry()
	s := newServer(t, tracker.Config{Metrics: reg})
	// Warm up the response buffers without taking a place in the store.
	mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 0, "event", "stopped"))
	inuse0, alloc0 := heap()
	start := time.Now()
	res := flood(t, s, n, nil, 1)
	took := time.Since(start)
	inuse1, alloc1 := heap()
	if res.other != 0 {
		t.Fatalf("%d of %d announces failed; first: %s", res.other, n, res.firstOther)
	}
	if res.ok != n {
		t.Fatalf("%d announces taken, %d full; want all %d taken at the default limits", res.ok, res.full, n)
	}
	if swarms, peers := storeStats(t, reg); swarms != n || peers != n {
		t.Fatalf("store holds %v swarms and %v peers, want %d of each", swarms, peers, n)
	}
	grewInuse, grewAlloc := int64(inuse1)-int64(inuse0), int64(alloc1)-int64(alloc0)
	bound := int64(n*(tracker.MemSwarmBytes+tracker.MemPeerBytes) + heapSlack)
	t.Logf("%d single-peer swarms in %v: heap in use +%.1f MB (%d B per swarm), live heap +%.1f MB (%d B per swarm); bound %.1f MB (%d + %d B per swarm and peer, + %d MB)",
		n, took.Round(time.Millisecond), float64(grewInuse)/1e6, grewInuse/n, float64(grewAlloc)/1e6, grewAlloc/n,
		float64(bound)/1e6, tracker.MemSwarmBytes, tracker.MemPeerBytes, heapSlack>>20)
	if grewInuse > bound || grewAlloc > bound {
		t.Errorf("heap grew by %d B in use, %d B live for %d swarms; the MemoryStore documents at most %d B", grewInuse, grewAlloc, n, bound)
	}
	runtime.KeepAlive(s)
}

// TestMaliciousAnnounceFloodBeyondLimits floods a tracker with small limits
// far past them: new swarms, then new peer IDs in one swarm. Announces past
// the limits are refused as full, the heap stays within what the limits
// allow, the refusals are logged a line per few seconds, and the nodes
// already there keep announcing and joining.
func TestMaliciousAnnounceFloodBeyondLimits(t *testing.T) {
	const maxSwarms, perSwarm, n = 1000, 100, 100_000
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	s, err := tracker.New(tracker.Config{MaxSwarms: maxSwarms, MaxPeersPerSwarm: perSwarm, Metrics: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ih := storetest.Hash(1)
	mustAnnounce(t, s, "127.0.0.2", announceQuery(1, 0)) // a seeder of swarm 1
	inuse0, alloc0 := heap()
	start := time.Now()
	res := flood(t, s, n, nil, 2)
	if res.other != 0 {
		t.Fatalf("%d announces failed; first: %s", res.other, res.firstOther)
	}
	if res.ok != maxSwarms-1 || res.full != n-res.ok {
		t.Errorf("new swarms: %d taken, %d full; want %d taken (MaxSwarms %d, one in use), the rest full", res.ok, res.full, maxSwarms-1, maxSwarms)
	}
	// Now new peer IDs into the one legitimate swarm.
	pres := flood(t, s, n/2, &ih, 3)
	if pres.other != 0 {
		t.Fatalf("%d announces failed; first: %s", pres.other, pres.firstOther)
	}
	if pres.ok != perSwarm-1 || pres.full != n/2-pres.ok {
		t.Errorf("new peers in swarm 1: %d taken, %d full; want %d taken (MaxPeersPerSwarm %d, one in use)", pres.ok, pres.full, perSwarm-1, perSwarm)
	}
	took := time.Since(start)
	inuse1, alloc1 := heap()
	grewInuse, grewAlloc := int64(inuse1)-int64(inuse0), int64(alloc1)-int64(alloc0)
	bound := int64(maxSwarms*(tracker.MemSwarmBytes+tracker.MemPeerBytes) + perSwarm*tracker.MemPeerBytes + heapSlack)
	t.Logf("%d announces past MaxSwarms %d and MaxPeersPerSwarm %d in %v: heap in use +%d kB, live +%d kB; bound %d kB",
		n+n/2, maxSwarms, perSwarm, took.Round(time.Millisecond), grewInuse>>10, grewAlloc>>10, bound>>10)
	if grewInuse > bound || grewAlloc > bound {
		t.Errorf("heap grew by %d B in use, %d B live; the limits allow %d B", grewInuse, grewAlloc, bound)
	}
	if swarms, peers := storeStats(t, reg); swarms != maxSwarms || peers != maxSwarms-1+perSwarm {
		t.Errorf("store holds %v swarms and %v peers, want %d and %d", swarms, peers, maxSwarms, maxSwarms-1+perSwarm)
	}

	// The legitimate seeder re-announces, and is found by the flood's peers.
	r := mustAnnounce(t, s, "127.0.0.2", announceQuery(1, 0))
	if r.int("complete") != 1 || r.int("incomplete") != perSwarm-1 {
		t.Errorf("seeder's re-announce: %d complete %d incomplete, want 1 and %d", r.int("complete"), r.int("incomplete"), perSwarm-1)
	}
	// Once a peer leaves, a new node can join the swarm; then it is full again.
	mustAnnounce(t, s, "127.0.0.2", announceQuery(1, 0, "event", "stopped"))
	r = mustAnnounce(t, s, "127.0.0.3", announceQuery(3, 500))
	if got := r.peers(t); len(got) != 50 {
		t.Errorf("new node handed %d peers, want numwant 50", len(got))
	}
	if r := get(t, s, "127.0.0.2", "/announce?"+announceQuery(1, 0)); r.status != http.StatusServiceUnavailable || r.failure() != "tracker full" {
		t.Errorf("announce to a full swarm: status %d body %q, want 503 tracker full", r.status, r.raw)
	}

	full := announces(t, reg, "none", "full")
	if int(full) != res.full+pres.full+1 {
		t.Errorf(`eagle_tracker_announces_total{event="none",result="full"} = %v, want %d`, full, res.full+pres.full+1)
	}
	// At most a line per five seconds, each with the count since the last.
	lines := strings.Count(logs.String(), "peer store full")
	if max := 1 + int(took/(5*time.Second)); lines < 1 || lines > max+1 {
		t.Errorf("logged %d lines about a full store in %v, want 1 to %d:\n%s", lines, took, max+1, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "refused=1 ") {
		t.Errorf("first full line is not a warning counting one refusal:\n%s", logs.String())
	}
}

// announces returns eagle_tracker_announces_total{event, result} from reg.
func announces(t *testing.T, reg *prometheus.Registry, ev, res string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "eagle_tracker_announces_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["event"] == ev && labels["result"] == res {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no eagle_tracker_announces_total{event=%q,result=%q}", ev, res)
	return 0
}

// TestMaliciousPeerIDTakeover has an attacker that learned a victim's peer
// ID try to take over or remove the victim's entry from another address.
func TestMaliciousPeerIDTakeover(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newServer(t, tracker.Config{Metrics: reg})
	const victim, attacker, bystander = "127.0.0.2", "127.0.0.3", "127.0.0.4"
	victimAddr := netip.MustParseAddrPort(victim + ":10001")
	handedOut := func() []netip.AddrPort {
		t.Helper()
		return mustAnnounce(t, s, bystander, announceQuery(3, 100)).peers(t)
	}
	mustAnnounce(t, s, victim, announceQuery(1, 100, "event", "started"))
	if got := handedOut(); len(got) != 1 || got[0] != victimAddr {
		t.Fatalf("bystander handed %v, want the victim %v", got, victimAddr)
	}

	// Re-announcing the victim's ID from elsewhere, on the victim's port or
	// the attacker's own, as a seeder, or claiming the victim's IP in the
	// "ip" parameter (not trusted), is refused.
	for _, q := range []string{
		announceQuery(1, 100),
		announceQuery(1, 0, "port", "6666", "event", "completed"),
		announceQuery(1, 100, "ip", victim),
	} {
		r := get(t, s, attacker, "/announce?"+q)
		if r.status != http.StatusOK || r.failure() != "peer_id: registered from another address" || len(r.dict) != 1 {
			t.Errorf("attacker's announce %s: status %d body %q, want 200 and the conflict failure reason", q, r.status, r.raw)
		}
	}
	if got := handedOut(); len(got) != 1 || got[0] != victimAddr {
		t.Fatalf("after the takeover attempts the bystander is handed %v, want the victim %v", got, victimAddr)
	}

	// The attacker's stop with the victim's ID removes nothing.
	r := get(t, s, attacker, "/announce?"+announceQuery(1, 100, "event", "stopped"))
	if r.status != http.StatusOK || r.failure() != "peer_id: registered from another address" {
		t.Errorf("attacker's stop: status %d body %q, want 200 and the conflict failure reason", r.status, r.raw)
	}
	r = mustAnnounce(t, s, bystander, announceQuery(3, 100))
	if got := r.peers(t); len(got) != 1 || got[0] != victimAddr || r.int("incomplete") != 2 || r.int("complete") != 0 {
		t.Fatalf("after the attacker's stop: handed %v, %d complete %d incomplete; want the victim, 0 and 2", got, r.int("complete"), r.int("incomplete"))
	}

	// The victim restarts on another port, then stops: its own requests count.
	mustAnnounce(t, s, victim, announceQuery(1, 100, "port", "10009"))
	if got := handedOut(); len(got) != 1 || got[0] != netip.MustParseAddrPort(victim+":10009") {
		t.Fatalf("after the victim's restart the bystander is handed %v, want %s:10009", got, victim)
	}
	mustAnnounce(t, s, victim, announceQuery(1, 100, "event", "stopped"))
	if got := handedOut(); len(got) != 0 {
		t.Fatalf("after the victim's own stop the bystander is handed %v, want nobody", got)
	}

	for _, tc := range []struct {
		ev   string
		want float64
	}{{"none", 2}, {"completed", 1}, {"stopped", 1}} {
		if got := announces(t, reg, tc.ev, "conflict"); got != tc.want {
			t.Errorf(`eagle_tracker_announces_total{event=%q,result="conflict"} = %v, want %v`, tc.ev, got, tc.want)
		}
	}
}

// A stopped peer's ID is free for anyone, and so is an expired one's.
func TestPeerIDFreeAfterExpiry(t *testing.T) {
	t.Parallel()
	s := newServer(t, tracker.Config{Interval: time.Second, MinInterval: time.Second, PeerTTL: 1100 * time.Millisecond})
	mustAnnounce(t, s, "127.0.0.2", announceQuery(1, 100))
	if r := get(t, s, "127.0.0.3", "/announce?"+announceQuery(1, 100)); r.failure() == "" {
		t.Fatalf("live peer's ID taken from another address: %q", r.raw)
	}
	time.Sleep(1200 * time.Millisecond)
	mustAnnounce(t, s, "127.0.0.3", announceQuery(1, 100))
	r := mustAnnounce(t, s, "127.0.0.4", announceQuery(4, 100))
	if got := r.peers(t); len(got) != 1 || got[0] != netip.MustParseAddrPort("127.0.0.3:10001") {
		t.Errorf("after expiry the bystander is handed %v, want the ID's new holder 127.0.0.3:10001", got)
	}
}
