package p2p_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage/filesystem"
	"github.com/eagle-p2p/eagle/tracker"
)

// locationSwarm is a seeder announcing to one tracker, and the tracker
// the agents use, which does not know the seeder: an agent finds the
// seeder only through the seeder's own answer.
type locationSwarm struct {
	seeder, agentTracker string
}

func newLocationSwarm(t *testing.T) locationSwarm {
	t.Helper()
	seederTracker := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, seederTracker)
	return locationSwarm{seeder: addr, agentTracker: testenv.Tracker(t, nil)}
}

func (s locationSwarm) agent(t *testing.T, trackerURL, location string) *p2p.Engine {
	t.Helper()
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newEngineWith(t, trackerURL, store, newSeederClient(t, s.seeder), func(c *p2p.Config) { c.Location = location })
}

// TestLocationTakesPeersFromTheTracker: a node with a location does not
// dial the seeder its answer names while the trackers hand it a peer that
// holds the blob; a node without one does.
func TestLocationTakesPeersFromTheTracker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testenv.Origin(t)
	s := newLocationSwarm(t)
	ref, want := pushBlob(t, o, "location/app", 3<<20+777)

	// The first node has no location: it dials the seeder.
	warm := s.agent(t, s.agentTracker, "")
	if got := readAll(t, ctx, warm, ref); !bytes.Equal(got, want) {
		t.Fatal("the first node read bytes that differ from the origin's")
	}
	if st := warm.Stats(); st.BytesFromSeeders == 0 {
		t.Fatalf("a node without a location got nothing from the seeder its answer named: %+v", st)
	}

	near := s.agent(t, s.agentTracker, "dc1/a")
	if got := readAll(t, ctx, near, ref); !bytes.Equal(got, want) {
		t.Fatal("the node with a location read bytes that differ from the origin's")
	}
	st := near.Stats()
	if st.BytesFromSeeders != 0 || st.BytesFromAgents < int64(len(want)) {
		t.Errorf("the node with a location got %d bytes from the seeder and %d from agents; want 0 and at least %d",
			st.BytesFromSeeders, st.BytesFromAgents, len(want))
	}
	if n := o.BlobGETs(ref.Digest); n != 1 {
		t.Errorf("origin served the blob %d times, want 1", n)
	}
}

// TestLocationFallsBackToTheSeeder: a node with a location whose trackers
// do not answer, or answer with nobody, dials the seeder it held back and
// completes.
func TestLocationFallsBackToTheSeeder(t *testing.T) {
	o := testenv.Origin(t)
	s := newLocationSwarm(t)

	// A port nothing listens on: every announce fails at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "https://" + l.Addr().String() + "/announce"
	l.Close()

	for _, tc := range []struct{ name, tracker string }{
		{"TrackerDown", down},
		{"TrackerKnowsNobody", s.agentTracker},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ref, want := pushBlob(t, o, "location/"+strings.ToLower(tc.name), 2<<20+99)
			e := s.agent(t, tc.tracker, "dc1/a")
			if got := readAll(t, ctx, e, ref); !bytes.Equal(got, want) {
				t.Fatal("read bytes that differ from the origin's")
			}
			if st := e.Stats(); st.BytesFromSeeders < int64(len(want)) {
				t.Errorf("got %d bytes from the seeder, want at least %d", st.BytesFromSeeders, len(want))
			}
		})
	}
}

// borderLab is an origin, a seeder announcing to a tracker of its own,
// and the tracker the agents use, running policy: an agent finds the
// seeder only through the seeder's own answer.
type borderLab struct {
	t          *testing.T
	origin     *origin.Registry
	seeder     string
	trackerURL string
}

func newBorderLab(t *testing.T, policy tracker.Policy) *borderLab {
	return newBorderLabWith(t, policy, false)
}

// newBorderLabWith is newBorderLab; with shared, the seeder announces to
// the agents' tracker, which hands it out like any peer.
func newBorderLabWith(t *testing.T, policy tracker.Policy, shared bool) *borderLab {
	t.Helper()
	o := testenv.Origin(t)
	trk, err := tracker.New(tracker.Config{Policy: policy, Interval: time.Second, MinInterval: time.Second, Logger: quiet}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trk.Close() })
	url, _ := testtls.Server(t, trk)
	url += "/announce"
	seederTracker := url
	if !shared {
		seederTracker = testenv.Tracker(t, nil)
	}
	seederAddr, _, _ := startSeeder(t, seederTracker)
	return &borderLab{t: t, origin: o, seeder: seederAddr, trackerURL: url}
}

// agent starts an agent listening on listen (a distinct loopback address
// per agent: upstream peers are known by address) at location, receiving
// at most limit (0: no limit).
func (l *borderLab) agent(listen, location string, limit p2p.Rate) *p2p.Engine {
	l.t.Helper()
	return l.agentLogging(listen, location, limit, quiet)
}

// agentLogging is agent logging to log.
func (l *borderLab) agentLogging(listen, location string, limit p2p.Rate, log *slog.Logger) *p2p.Engine {
	l.t.Helper()
	store, err := filesystem.New(l.t.TempDir())
	if err != nil {
		l.t.Fatal(err)
	}
	return newEngineWith(l.t, l.trackerURL, store, newSeederClient(l.t, l.seeder), func(c *p2p.Config) {
		c.ListenAddr, c.Location, c.DownloadLimit, c.Logger = listen, location, limit, log
	})
}

// warnings records the messages logged at warn and above.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// with returns the recorded messages that contain sub.
func (w *warnings) with(sub string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs {
		if strings.Contains(m, sub) {
			out = append(out, m)
		}
	}
	return out
}

// borderScript is a tracker policy for TestLocationLeavesUpstreamWhenNotBorder:
// a requester's own location first; other locations' peers, as upstream,
// only while the requester is a border peer, which a located requester is
// for its first announce only (as the first of a location to announce is,
// until the others do).
type borderScript struct {
	mu   sync.Mutex
	seen map[tracker.PeerID]int
	// onLeave, if set, is called with the requester when a node is first
	// told it is not a border peer (any more).
	onLeave func(requester tracker.Peer)
}

// Border implements tracker.BorderJudge.
func (p *borderScript) Border(_ tracker.InfoHash, requester tracker.Peer, _ []tracker.Peer) (share, shares int) {
	p.mu.Lock()
	p.seen[requester.ID]++
	n, onLeave := p.seen[requester.ID], p.onLeave
	p.mu.Unlock()
	if n == 1 {
		return 0, 1
	}
	if n == 2 && onLeave != nil {
		onLeave(requester)
	}
	return -1, 0
}

func (p *borderScript) border(requester tracker.Peer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[requester.ID] == 1
}

// Order implements tracker.Policy.
func (p *borderScript) Order(_ tracker.InfoHash, requester tracker.Peer, candidates []tracker.Peer) []tracker.Peer {
	return nearUnlessBorder(requester, candidates, p.border(requester))
}

// Upstream implements tracker.UpstreamMarker.
func (p *borderScript) Upstream(dst []tracker.Peer, requester tracker.Peer, handed []tracker.Peer) []tracker.Peer {
	return otherLocations(dst, requester, handed)
}

// nearUnlessBorder returns the candidates other than requester: those of
// its location, and those of others too if it is a border peer.
func nearUnlessBorder(requester tracker.Peer, candidates []tracker.Peer, border bool) []tracker.Peer {
	var out []tracker.Peer
	for _, c := range candidates {
		if c.ID != requester.ID && (c.Location == requester.Location || border) {
			out = append(out, c)
		}
	}
	return out
}

// otherLocations appends to dst the handed peers of locations other than
// requester's: its upstream peers.
func otherLocations(dst []tracker.Peer, requester tracker.Peer, handed []tracker.Peer) []tracker.Peer {
	for _, c := range handed {
		if c.Location != requester.Location {
			dst = append(dst, c)
		}
	}
	return dst
}

// directQuickBytes is p2p's directQuick: the most bytes a direct transfer
// may ask for without waiting for the swarm to form.
const directQuickBytes = 1 << 20

// TestLocationLeavesUpstreamWhenNotBorder: a node whose tracker names it
// a border peer, then (on its next announce) says it is not, closes its
// connection to the upstream peer it was handed and takes the rest of the
// blob from elsewhere (here the seeder it held back): a location imports
// through its border peers only.
func TestLocationLeavesUpstreamWhenNotBorder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	script := &borderScript{seen: map[tracker.PeerID]int{}}
	lab := newBorderLab(t, script)
	o := lab.origin
	const size = 6 << 20
	ref, want := pushBlob(t, o, "location/border", size)

	// A node of another location that holds the blob (a distinct loopback
	// address: upstream peers are known by address).
	warm := lab.agent("127.0.0.3:0", "", 0)
	if got := readAll(t, ctx, warm, ref); !bytes.Equal(got, want) {
		t.Fatal("the warm node read bytes that differ from the origin's")
	}
	warm2 := warm.Stats()
	sentSince := func() int64 { return warm.Stats().BytesUploaded - warm2.BytesUploaded }

	// What the upstream peer had sent when the tracker told the late node
	// (the only node announcing in dc1 from here on) it is no longer a
	// border peer, and when the node had closed its connection to it.
	var sentTold, sentClosed, announcesClosed atomic.Int64
	sentTold.Store(-1)
	sentClosed.Store(-1)
	var lateID tracker.PeerID // set under script.mu
	script.mu.Lock()
	script.onLeave = func(requester tracker.Peer) {
		if requester.Location == "dc1" && sentTold.Load() < 0 {
			sentTold.Store(sentSince())
			script.mu.Lock()
			lateID = requester.ID
			script.mu.Unlock()
		}
	}
	script.mu.Unlock()
	closed := &onMessage{sub: "no longer a border peer", f: func() {
		if sentClosed.Load() < 0 {
			sentClosed.Store(sentSince())
			script.mu.Lock()
			announcesClosed.Store(int64(script.seen[lateID]))
			script.mu.Unlock()
		}
	}}
	late := lab.agentLogging("127.0.0.2:0", "dc1", 2<<20, slog.New(closed))
	if got := readAll(t, ctx, late, ref); !bytes.Equal(got, want) {
		t.Fatal("the late node read bytes that differ from the origin's")
	}
	st := late.Stats()
	sent := sentSince()
	t.Logf("late node: %d bytes from its upstream peer, %d from agents, %d from the seeder, %d by direct transfers; the upstream peer sent %d, %d of them before the tracker told the node it is no longer a border peer, %d before the node closed its connection",
		st.BytesFromUpstream, st.BytesFromAgents, st.BytesFromSeeders, st.BytesDirect, sent, sentTold.Load(), sentClosed.Load())
	if st.BytesFromUpstream == 0 || st.BytesFromUpstream != st.BytesFromAgents {
		t.Errorf("the late node got %d bytes from agents, %d of them from its upstream peer: want some, all from it", st.BytesFromAgents, st.BytesFromUpstream)
	}
	if sentTold.Load() < 0 {
		t.Fatal("the tracker never told the late node it is no longer a border peer")
	}
	if sentClosed.Load() < 0 {
		t.Fatal("the late node never closed its connection to its upstream peer")
	}
	// It acted on the answer that told it, not on a later one.
	if n := announcesClosed.Load(); n != 2 {
		t.Errorf("the late node closed its upstream connection after its announce %d, want 2 (the first that said it is no longer a border peer)", n)
	}
	// After it closed it: what was on its way (the requests in flight, the
	// sockets' buffers), not the rest of the blob (4.6-4.8 MB with the
	// node staying on its upstream peer). The seeder brought the rest.
	// Judged from the node's act, not from the tracker's answer: a CI run
	// failed a bound from the answer with 1.9 MB sent after it, on a
	// loaded machine (a slow trip of the answer, or a direct transfer
	// from the upstream peer that went on, which now ends at its next
	// piece; the run's logs were not kept). A direct transfer of a
	// download's last megabyte (directQuick) may be in the upstream
	// peer's socket whole when the node withdraws: a CI run counted
	// exactly 1 MiB sent after the close, none of it received.
	if after := sent - sentClosed.Load(); after > size/8+directQuickBytes {
		t.Errorf("the upstream peer sent %d bytes after the node closed its connection to it", after)
	}
	if st.BytesFromUpstream+st.BytesFromSeeders < size {
		t.Errorf("the late node got %d bytes from its upstream peer and %d from the seeder, less than the %d-byte blob", st.BytesFromUpstream, st.BytesFromSeeders, size)
	}
	if n := o.BlobGETs(ref.Digest); n != 1 {
		t.Errorf("origin served the blob %d times, want 1", n)
	}
}

// onMessage is a slog.Handler that calls f, in the logging goroutine, for
// each record whose message contains sub.
type onMessage struct {
	sub string
	f   func()
}

func (h *onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h *onMessage) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.sub) {
		h.f()
	}
	return nil
}
func (h *onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *onMessage) WithGroup(string) slog.Handler      { return h }

// TestLocationBorderPeersSplitImports: under the topology policy, the two
// members of a location (both its border peers) each take their own half
// of the pieces from the node of another location that holds the blob,
// and the other half from each other: the location takes the blob across
// its border about once, not twice.
func TestLocationBorderPeersSplitImports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lab := newBorderLab(t, tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: 2}))
	o := lab.origin
	const size = 8 << 20
	ref, want := pushBlob(t, o, "location/split", size)

	agent := lab.agent
	// Distinct loopback addresses: upstream peers are known by address.
	far := agent("127.0.0.3:0", "dc0", 0)
	if got := readAll(t, ctx, far, ref); !bytes.Equal(got, want) {
		t.Fatal("the node in dc0 read bytes that differ from the origin's")
	}
	members := []*p2p.Engine{agent("127.0.0.4:0", "dc1", 2<<20), agent("127.0.0.5:0", "dc1", 2<<20)}
	var wg sync.WaitGroup
	for _, e := range members {
		wg.Go(func() {
			if got := readAll(t, ctx, e, ref); !bytes.Equal(got, want) {
				t.Error("a node in dc1 read bytes that differ from the origin's")
			}
		})
	}
	wg.Wait()
	var imported int64
	for i, e := range members {
		st := e.Stats()
		t.Logf("dc1 member %d: %d bytes from dc0 (upstream), %d from agents, %d from the seeder", i, st.BytesFromUpstream, st.BytesFromAgents, st.BytesFromSeeders)
		imported += st.BytesFromUpstream
		// Half, and what it took before the other member announced (its
		// first answer can find it alone in dc1, taking every piece).
		// Without shares each took 5.6-6.8 MB, 12.0-12.7 MB in all.
		if st.BytesFromUpstream > size*3/4 {
			t.Errorf("dc1 member %d took %d bytes from dc0, want about half of %d", i, st.BytesFromUpstream, size)
		}
	}
	if imported < size || imported > size+size/4 {
		t.Errorf("dc1 took %d bytes from dc0 in all, want about %d (one copy)", imported, size)
	}
	if n := o.BlobGETs(ref.Digest); n != 1 {
		t.Errorf("origin served the blob %d times, want 1", n)
	}
}

// TestLocationBorderPeerLeaves: of a location's two border peers, each
// taking its half of the pieces from the node of another location, one
// goes away mid-download; the other still completes the blob, taking the
// other half too (the tracker makes it the only border peer, or its
// download stalls on the missing half and it drops its share).
func TestLocationBorderPeerLeaves(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lab := newBorderLab(t, tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: 2}))
	o := lab.origin
	const size = 8 << 20
	ref, want := pushBlob(t, o, "location/leaves", size)
	agent := lab.agent
	far := agent("127.0.0.3:0", "dc0", 0)
	if got := readAll(t, ctx, far, ref); !bytes.Equal(got, want) {
		t.Fatal("the node in dc0 read bytes that differ from the origin's")
	}
	stays, leaves := agent("127.0.0.4:0", "dc1", 1<<20), agent("127.0.0.5:0", "dc1", 1<<20)
	go func() {
		rc, err := leaves.Fetch(ctx, ref)
		if err == nil {
			defer rc.Close()
			io.Copy(io.Discard, rc)
		}
	}()
	time.AfterFunc(2*time.Second, func() { leaves.Close() })
	start := time.Now()
	if got := readAll(t, ctx, stays, ref); !bytes.Equal(got, want) {
		t.Fatal("the remaining member read bytes that differ from the origin's")
	}
	st := stays.Stats()
	t.Logf("remaining member: %.1fs, %d bytes from dc0, %d from agents, %d from the seeder",
		time.Since(start).Seconds(), st.BytesFromUpstream, st.BytesFromAgents, st.BytesFromSeeders)
	if st.BytesFromUpstream <= size/2 {
		t.Errorf("the remaining member took %d bytes from dc0: want more than its half of %d", st.BytesFromUpstream, size)
	}
}

// TestLocationBorderPeersShareASuperSeeder: the only holder of the blob is
// a seeder (of no location, so remote to everyone), which super-seeds:
// it offers each peer a piece or two at a time. The two border peers of
// dc1 take every offer (a share does not hide a seeder's pieces: a hidden
// offer would hold the seeder's slot and never be taken), so neither
// download stalls, and the seeder sends about one copy.
func TestLocationBorderPeersShareASuperSeeder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lab := newBorderLabWith(t, tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: 2}), true)
	const size = 8 << 20
	ref, want := pushBlob(t, lab.origin, "location/superseed", size)
	// The seeder fetches the blob from the origin for a node that leaves.
	warm := lab.agent("127.0.0.3:0", "", 0)
	if got := readAll(t, ctx, warm, ref); !bytes.Equal(got, want) {
		t.Fatal("the first node read bytes that differ from the origin's")
	}
	warm.Close()

	var w warnings
	log := slog.New(&w)
	members := []*p2p.Engine{lab.agentLogging("127.0.0.4:0", "dc1", 2<<20, log), lab.agentLogging("127.0.0.5:0", "dc1", 2<<20, log)}
	var wg sync.WaitGroup
	for _, e := range members {
		wg.Go(func() {
			if got := readAll(t, ctx, e, ref); !bytes.Equal(got, want) {
				t.Error("a node in dc1 read bytes that differ from the origin's")
			}
		})
	}
	wg.Wait()
	var fromSeeder int64
	for i, e := range members {
		st := e.Stats()
		t.Logf("dc1 member %d: %d bytes from the seeder, %d from agents", i, st.BytesFromSeeders, st.BytesFromAgents)
		fromSeeder += st.BytesFromSeeders
	}
	if stalls := w.with("stalled"); len(stalls) > 0 {
		t.Errorf("dc1's downloads stalled: %q", stalls)
	}
	if fromSeeder > size+size/4 {
		t.Errorf("dc1 took %d bytes from the seeder, want about %d (one copy)", fromSeeder, size)
	}
}
