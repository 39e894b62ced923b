package p2p_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

// startStreamingSeeder starts a seeder that streams cold blobs to one
// agent (seeder.Config.StreamFanout), with relays as relay says.
func startStreamingSeeder(t *testing.T, trk string) (string, *seeder.Server) {
	t.Helper()
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, addr, _ := serveSeederWith(t, store, newEngine(t, p2p.RoleSeeder, trk, store, nil), seeder.Config{StreamFanout: 1})
	return addr, srv
}

// gatedOrigin is the registry behind a proxy that sends the first at
// bytes of every blob GET, then nothing more until open is called. It
// counts blob GETs.
type gatedOrigin struct {
	URL     string
	gets    atomic.Int64
	release chan struct{}
	once    sync.Once
}

func (g *gatedOrigin) open() { g.once.Do(func() { close(g.release) }) }

func startGatedOrigin(t *testing.T, o *origin.Registry, at int) *gatedOrigin {
	t.Helper()
	target, err := url.Parse(o.URL)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedOrigin{release: make(chan struct{})}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			rp.ServeHTTP(w, r)
			return
		}
		g.gets.Add(1)
		rp.ServeHTTP(&gateWriter{ResponseWriter: w, at: at, release: g.release}, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(g.open)
	g.URL = srv.URL
	return g
}

// gateWriter passes the first at bytes of a body, flushed, and the rest
// once release is closed.
type gateWriter struct {
	http.ResponseWriter
	at, off int
	release <-chan struct{}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	n := 0
	if k := min(len(p), g.at-g.off); k > 0 {
		m, err := g.ResponseWriter.Write(p[:k])
		g.off += m
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
		http.NewResponseController(g.ResponseWriter).Flush()
	}
	if len(p) == 0 {
		return n, nil
	}
	<-g.release
	m, err := g.ResponseWriter.Write(p)
	g.off += m
	return n + m, err
}

// TestCutThroughColdPull has an agent pull a blob nobody holds while the
// origin holds back all but its first megabytes: the reader gets those
// bytes, verified, before the origin sends the rest (the seeder streams
// them as they arrive, it does not wait for the whole blob), and the
// whole blob once the origin sends it, identical, from one origin GET.
// A second agent then pulls it from the swarm.
func TestCutThroughColdPull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, srv := startStreamingSeeder(t, trk)
	const size = 24 << 20
	ref, content := pushBlob(t, o, "cut/through", size)
	pieceLen := p2p.PieceLength(size)
	g := startGatedOrigin(t, o, int(4*pieceLen+1000))
	ref.Upstream = g.URL

	agent := newEngine(t, p2p.RoleAgent, trk, newFSStore(t), newSeederClient(t, addr))
	b, err := agent.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	head := make([]byte, 3*pieceLen)
	if _, err := io.ReadFull(b, head); err != nil {
		t.Fatalf("first %d bytes while the origin holds back the rest: %v", len(head), err)
	}
	if !bytes.Equal(head, content[:len(head)]) {
		t.Fatal("the first bytes differ from the blob's")
	}
	g.open()
	rest, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", len(head)+len(rest), err)
	}
	if !bytes.Equal(append(head, rest...), content) {
		t.Fatal("streamed blob differs from the origin's")
	}
	if n := g.gets.Load(); n != 1 {
		t.Errorf("origin blob GETs = %d, want 1", n)
	}
	// At least what the origin sent before it held back: the rest may
	// come by stream or, once the seeder holds the blob and the stream is
	// behind, from the swarm.
	if st := agent.Stats(); st.BytesStreamed < 4*pieceLen {
		t.Errorf("agent stats %+v: want at least the %d bytes sent before the origin held back streamed", st, 4*pieceLen)
	}
	if st := srv.Stats(); st.StreamedBytes < 4*pieceLen {
		t.Errorf("seeder stats %+v: want at least %d bytes streamed", st, 4*pieceLen)
	}

	// The streamed blob is committed and seeded like any other.
	other := newEngine(t, p2p.RoleAgent, trk, newFSStore(t), newSeederClient(t, addr))
	if got := readAll(t, ctx, other, ref); !bytes.Equal(got, content) {
		t.Fatal("second agent's blob differs")
	}
	if n := g.gets.Load(); n != 1 {
		t.Errorf("origin blob GETs after the second pull = %d, want 1", n)
	}
}

// TestCutThroughFallsBack has an agent read its stream far slower than
// the origin sends (16 MiB/s against an origin in the process), so that it
// is behind when the seeder holds the blob. Alone, it asked for the blob
// by itself, and the seeder sends it the rest from its stored copy on the
// same stream. WithOthers, a second agent asked while the origin held the
// blob back: the streamed agent gets its answer at once and takes the
// rest from the swarm, keeping the pieces it streamed, and the second
// agent streams nothing. The origin serves one copy either way.
func TestCutThroughFallsBack(t *testing.T) {
	for _, others := range []bool{false, true} {
		name := "Alone"
		if others {
			name = "WithOthers"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			o := testenv.Origin(t)
			trk := testenv.Tracker(t, nil)
			addr, _ := startStreamingSeeder(t, trk)
			const size = 64 << 20
			ref, content := pushBlob(t, o, "cut/fallback", size)
			pieceLen := p2p.PieceLength(size)
			g := startGatedOrigin(t, o, int(2*pieceLen))
			ref.Upstream = g.URL
			agent := newLimitedAgent(t, trk, newFSStore(t), newSeederClient(t, addr), 16<<20)
			b, err := agent.Fetch(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			head := make([]byte, pieceLen)
			if _, err := io.ReadFull(b, head); err != nil {
				t.Fatalf("first piece while the origin holds back the rest: %v", err)
			}
			var second *p2p.Engine
			secondDone := make(chan []byte, 1)
			if others {
				second = newLimitedAgent(t, trk, newFSStore(t), newSeederClient(t, addr), 16<<20)
				go func() {
					b, err := second.Fetch(ctx, ref)
					if err != nil {
						t.Errorf("second agent: %v", err)
						secondDone <- nil
						return
					}
					defer b.Close()
					got, err := io.ReadAll(b)
					if err != nil {
						t.Errorf("second agent, after %d bytes: %v", len(got), err)
					}
					secondDone <- got
				}()
				// Its call reaches the seeder and waits for the fetch.
				time.Sleep(time.Second)
			}
			g.open()
			rest, err := io.ReadAll(b)
			if err != nil {
				t.Fatalf("read after %d bytes: %v", len(head)+len(rest), err)
			}
			if !bytes.Equal(append(head, rest...), content) {
				t.Fatal("blob differs from the origin's")
			}
			st := agent.Stats()
			if others {
				if got := <-secondDone; !bytes.Equal(got, content) {
					t.Fatal("second agent's blob differs from the origin's")
				}
				if st.BytesStreamed == 0 || st.BytesStreamed >= size {
					t.Errorf("agent stats %+v: want part of the blob streamed and the rest from the swarm", st)
				}
				if st2 := second.Stats(); st2.BytesStreamed != 0 {
					t.Errorf("second agent stats %+v: want nothing streamed (the fan-out is 1)", st2)
				}
			} else if st.BytesStreamed != size {
				t.Errorf("agent stats %+v: want the whole blob streamed, the rest from the seeder's stored copy", st)
			}
			if n := g.gets.Load(); n != 1 {
				t.Errorf("origin blob GETs = %d, want 1", n)
			}
		})
	}
}

// TestCutThroughRelayChain has three agents pull one cold blob at once
// while the origin holds back all but its first megabytes: the first is
// streamed the bytes by the seeder, the others are chained behind it, each
// taking the bytes from the one before it and the hashes from the seeder.
// Every reader gets the first pieces, verified, before the origin sends
// the rest, and the whole blob after, from one origin GET.
func TestCutThroughRelayChain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, addr, _ := serveSeederWith(t, store, newEngine(t, p2p.RoleSeeder, trk, store, nil), seeder.Config{StreamFanout: 1, StreamRelay: true})
	const size = 24 << 20
	ref, content := pushBlob(t, o, "cut/relay", size)
	pieceLen := p2p.PieceLength(size)
	g := startGatedOrigin(t, o, int(4*pieceLen+1000))
	ref.Upstream = g.URL

	var agents []*p2p.Engine
	for range 3 {
		agents = append(agents, newEngine(t, p2p.RoleAgent, trk, newFSStore(t), newSeederClient(t, addr)))
	}
	readers := make([]io.ReadCloser, len(agents))
	for i, a := range agents {
		b, err := a.Fetch(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		readers[i] = b
	}
	head := make([]byte, 3*pieceLen)
	for i, b := range readers {
		if _, err := io.ReadFull(b, head); err != nil {
			t.Fatalf("agent %d: first %d bytes while the origin holds back the rest: %v", i, len(head), err)
		}
		if !bytes.Equal(head, content[:len(head)]) {
			t.Fatalf("agent %d: the first bytes differ from the blob's", i)
		}
	}
	g.open()
	var streamed, relayed int
	for i, b := range readers {
		rest, err := io.ReadAll(b)
		if err != nil {
			t.Fatalf("agent %d: read: %v", i, err)
		}
		if !bytes.Equal(append(bytes.Clone(head), rest...), content) {
			t.Fatalf("agent %d: blob differs from the origin's", i)
		}
		st := agents[i].Stats()
		t.Logf("agent %d: %+v", i, st)
		if st.BytesStreamed >= 3*pieceLen {
			streamed++
		}
		if st.BytesRelayed > 0 {
			relayed++
		}
	}
	if streamed != 1 || relayed != 2 {
		t.Errorf("%d agents were streamed the head of the blob and %d relayed it, want 1 and 2", streamed, relayed)
	}
	if n := g.gets.Load(); n != 1 {
		t.Errorf("origin blob GETs = %d, want 1", n)
	}
	if st := srv.Stats(); st.StreamedBytes < 3*pieceLen || st.StreamedBytes > size {
		t.Errorf("seeder stats %+v: want the head of the blob streamed, once", st)
	}

	// A member that does not know the relay key gets nothing from a node
	// that relays the blob.
	client := directMemberClient(t)
	for _, key := range []string{strings.Repeat("00", 16), strings.Repeat("ab", 16), "", "zz", strings.Repeat("00", 20), ref.Digest.Encoded()} {
		for i, a := range agents {
			resp, err := client.Get("https://" + a.Addr().String() + "/eagle/v1/relay/" + key)
			if err != nil {
				t.Fatalf("agent %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound || bytes.Contains(b, content[:64]) {
				t.Errorf("agent %d, relay key %q: %s, %d bytes; want 404 and nothing", i, key, resp.Status, len(b))
			}
		}
	}
}

// TestStreamedAgentSuperSeeds has an agent streamed a cold blob whole,
// then six agents that start empty pull it with that agent as their only
// source (the seeder announces elsewhere, and their metainfo source names
// only the streamed agent). The streamed agent holds the blob as a seeder
// does while the others start: telling each of them it had every piece,
// it was asked by all for the same pieces and its uplink carried several
// copies (a wave of 8 in bench cold took 2.7-2.8 × L/C against 2.0
// without streaming). It super-seeds the blob instead, and sends about
// one copy.
func TestStreamedAgentSuperSeeds(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 5 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk, elsewhere := testenv.Tracker(t, nil), testenv.Tracker(t, nil)
	store := newFSStore(t)
	_, addr, _ := serveSeederWith(t, store, newEngine(t, p2p.RoleSeeder, elsewhere, store, nil), seeder.Config{StreamFanout: 1})
	const size = 8 << 20
	ref, content := pushBlob(t, o, "cut/superseed", size)
	streamed := newEngineWith(t, trk, newFSStore(t), newSeederClient(t, addr), func(c *p2p.Config) { c.UploadLimit = 4 << 20 })
	checkFetch(t, ctx, streamed, ref, content, "the streamed agent")
	if st := streamed.Stats(); st.BytesStreamed != size {
		t.Fatalf("streamed agent stats %+v: want the whole blob streamed", st)
	}
	mi, err := newSeederClient(t, addr).MetaInfo(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	ap, err := netip.ParseAddrPort(streamed.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	src := namedPeers{staticSource{ref.Digest: mi}, []netip.AddrPort{ap}}
	var agents []*p2p.Engine
	for range 6 {
		agents = append(agents, newEngine(t, p2p.RoleAgent, trk, newFSStore(t), src))
	}
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() { checkFetch(t, ctx, a, ref, content, fmt.Sprintf("agent %d", i)) })
	}
	wg.Wait()
	copies := float64(streamed.Stats().BytesUploaded) / size
	t.Logf("the streamed agent sent %.2f copies; stats %+v", copies, streamed.Stats())
	if copies > 1.25 {
		t.Errorf("the streamed agent sent %.2f copies of the blob to six agents, want about 1: it should super-seed", copies)
	}
}

// namedPeers is a metainfo source that names peers holding every blob.
type namedPeers struct {
	staticSource
	peers []netip.AddrPort
}

func (s namedPeers) MetaInfoWithPeers(ctx context.Context, ref blob.Ref) ([]byte, string, []netip.AddrPort, error) {
	mi, err := s.MetaInfo(ctx, ref)
	return mi, "", s.peers, err
}
