package p2p_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
	"github.com/eagle-p2p/eagle/storage/memory"
)

func TestMain(m *testing.M) {
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

var quiet = slog.New(slog.DiscardHandler)

// permissiveOrigin is a registry that lets everyone read every blob (it
// answers every authorization HEAD with 200), for tests whose blobs come
// from a static metainfo source rather than a real origin.
func permissiveOrigin(t *testing.T) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(hs.Close)
	return hs.URL
}

// testAuthorizer is a real origin authorizer (a HEAD at the blob's origin
// with the caller's credentials) that Cleanup closes.
func testAuthorizer(t *testing.T) *auth.Authorizer {
	t.Helper()
	a, err := auth.New(auth.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func newEngine(t *testing.T, role p2p.Role, trackerURL string, store storage.Store, src p2p.MetaInfoSource) *p2p.Engine {
	t.Helper()
	return newEngineAt(t, "127.0.0.1", role, trackerURL, store, src)
}

// newEngineAt starts an engine on the loopback address ip. Peers that must be
// told apart by IP (anacrolix bans a peer's IP after a bad piece) live on
// their own loopback address.
func newEngineAt(t *testing.T, ip string, role p2p.Role, trackerURL string, store storage.Store, src p2p.MetaInfoSource) *p2p.Engine {
	t.Helper()
	cfg := p2p.Config{
		TLS:        testtls.Member(t, "node"),
		ListenAddr: ip + ":0",
		DataDir:    t.TempDir(),
		Trackers:   []string{trackerURL},
		Role:       role,
		Logger:     quiet,
	}
	if role == p2p.RoleSeeder {
		// Its reads are the seeder service's, which authorizes them.
		cfg.SkipAuthorization = true
	} else {
		cfg.Authorizer = testAuthorizer(t)
	}
	e, err := p2p.New(cfg, store, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	return e
}

// startSeeder runs a real seeder (gRPC service + seeding engine) and returns its address.
func startSeeder(t *testing.T, trackerURL string) (string, *seeder.Server, *p2p.Engine) {
	t.Helper()
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	eng := newEngine(t, p2p.RoleSeeder, trackerURL, store, nil)
	srv, addr := serveSeeder(t, store, eng)
	return addr, srv, eng
}

// serveSeeder runs the seeder service over store and eng on a loopback
// gRPC port, in mutual TLS, and returns it with its address.
func serveSeeder(t *testing.T, store storage.Store, eng *p2p.Engine) (*seeder.Server, string) {
	t.Helper()
	srv, addr, _ := serveSeederStop(t, store, eng)
	return srv, addr
}

// serveSeederStop is serveSeeder that also returns a func that stops the
// service and its gRPC server (Cleanup calls it too).
func serveSeederStop(t *testing.T, store storage.Store, eng *p2p.Engine) (*seeder.Server, string, func()) {
	t.Helper()
	return serveSeederWith(t, store, eng, seeder.Config{})
}

// serveSeederWith is serveSeederStop with cfg's settings beside the test
// defaults.
func serveSeederWith(t *testing.T, store storage.Store, eng *p2p.Engine, cfg seeder.Config) (*seeder.Server, string, func()) {
	t.Helper()
	cfg.AllowedUpstreams, cfg.PeerAddr, cfg.Logger = []string{"127.0.0.1"}, eng.Addr, quiet
	srv, err := seeder.NewServer(cfg, store, eng)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(append(seeder.ServerOptions(), grpc.Creds(credentials.NewTLS(testtls.Credentials(t, "seeder").ServerConfig())))...)
	srv.Register(g)
	done := make(chan struct{})
	go func() { defer close(done); g.Serve(lis) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			srv.Close()
			g.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return srv, lis.Addr().String(), stop
}

func newSeederClient(t *testing.T, addrs ...string) *seeder.Client {
	t.Helper()
	c, err := seeder.NewClient(seeder.ClientConfig{Seeders: addrs, Credentials: testtls.Credentials(t, "node")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// pushBlob stores content at the origin as a blob of repo and returns its ref.
func pushBlob(t *testing.T, o *origin.Registry, repo string, layerSize int64) (blob.Ref, []byte) {
	t.Helper()
	img, err := origin.PushRandomImage(context.Background(), nil, o.URL, repo, "v1", []int64{layerSize}, time.Now().UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	resp, err := http.Get(o.URL + "/v2/" + repo + "/blobs/" + layer.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	content, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	o.ResetCounts()
	return blob.Ref{Upstream: o.URL, Repository: repo, Digest: layer.Digest}, content
}

func readAll(t *testing.T, ctx context.Context, e *p2p.Engine, ref blob.Ref) []byte {
	t.Helper()
	b, err := e.Fetch(ctx, ref)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", len(got), err)
	}
	return got
}

// countingSource counts the metainfo requests a node makes to the real seeders.
type countingSource struct {
	p2p.MetaInfoSource
	n atomic.Int64
}

func (c *countingSource) MetaInfo(ctx context.Context, ref blob.Ref) ([]byte, error) {
	c.n.Add(1)
	return c.MetaInfoSource.MetaInfo(ctx, ref)
}

func TestSwarmFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	ref, want := pushBlob(t, o, "swarm/app", 5<<20+12345)

	const agents = 4
	engines := make([]*p2p.Engine, agents)
	for i := range engines {
		store, err := filesystem.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		engines[i] = newEngine(t, p2p.RoleAgent, trk, store, newSeederClient(t, addr))
	}
	var wg sync.WaitGroup
	for _, e := range engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := readAll(t, ctx, e, ref); !bytes.Equal(got, want) {
				t.Errorf("got %d bytes that differ from the origin's %d", len(got), len(want))
			}
		}()
	}
	wg.Wait()
	if n := o.BlobGETs(ref.Digest); n != 1 {
		t.Errorf("origin served the blob %d times, want 1", n)
	}
	var received int64
	for _, e := range engines {
		st := e.Stats()
		received += st.BytesFromAgents + st.BytesFromSeeders
	}
	if received < int64(agents*len(want)) {
		t.Errorf("agents received %d piece bytes from peers, want at least %d", received, agents*len(want))
	}
	// A second read is served from the node's store.
	if got := readAll(t, ctx, engines[0], ref); !bytes.Equal(got, want) {
		t.Error("cached read differs")
	}
	if n := o.BlobGETs(ref.Digest); n != 1 {
		t.Errorf("origin served the blob %d times after cached reads, want 1", n)
	}
}

func TestConcurrentFetchesShareOneDownload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	ref, want := pushBlob(t, o, "share/app", 3<<20)
	src := &countingSource{MetaInfoSource: newSeederClient(t, addr)}
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, p2p.RoleAgent, trk, store, src)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := readAll(t, ctx, e, ref); !bytes.Equal(got, want) {
				t.Error("bytes differ")
			}
		}()
	}
	wg.Wait()
	if n := src.n.Load(); n != 1 {
		t.Errorf("8 concurrent fetches asked for metainfo %d times, want 1", n)
	}
	if n := o.BlobGETs(ref.Digest); n != 1 {
		t.Errorf("origin GETs = %d, want 1", n)
	}
}

func TestSeekWhileDownloading(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	ref, want := pushBlob(t, o, "seek/app", 4<<20+7)
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, p2p.RoleAgent, trk, store, newSeederClient(t, addr))
	b, err := e.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Size() != int64(len(want)) {
		t.Fatalf("size %d, want %d", b.Size(), len(want))
	}
	off := int64(len(want)) * 2 / 3
	if _, err := b.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[off:]) {
		t.Fatalf("bytes from offset %d differ", off)
	}
}

// staticSource hands out fixed metainfo: it stands for a seeder that lies.
type staticSource map[digest.Digest][]byte

func (s staticSource) MetaInfo(_ context.Context, ref blob.Ref) ([]byte, error) {
	if b, ok := s[ref.Digest]; ok {
		return b, nil
	}
	return nil, blob.ErrNotFound
}

// swappedStore serves the bytes of one blob under another blob's digest: a
// peer that seeds content that does not match the digest it claims.
type swappedStore struct {
	storage.Store
	claimed, actual digest.Digest
}

func (s swappedStore) Open(ctx context.Context, d digest.Digest) (storage.Blob, error) {
	if d == s.claimed {
		d = s.actual
	}
	return s.Store.Open(ctx, d)
}

func metaInfoFor(t *testing.T, name digest.Digest, content []byte) []byte {
	t.Helper()
	h := p2p.NewInfoHasher(name, int64(len(content)))
	h.Write(content)
	b, err := h.MetaInfo()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putBlob(t *testing.T, s storage.Store, content []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	w, err := s.Create(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content)
	if _, err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

// A swarm whose every piece passes its hash but whose whole blob does not
// match the digest: the reader gets an error before the last byte, and
// nothing is cached, whether the agent's store copies the download (memory)
// or adopts its file (filesystem).
func TestDigestMismatchFailsReadAndCachesNothing(t *testing.T) {
	t.Run("copied", func(t *testing.T) { digestMismatch(t, memory.New()) })
	t.Run("adopted", func(t *testing.T) { digestMismatch(t, newFSStore(t)) })
}

func digestMismatch(t *testing.T, agentStore storage.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	trk := testenv.Tracker(t, nil)
	actual := randomBytes(t, 2<<20+99)
	claimed := digest.FromBytes(randomBytes(t, 16))
	mem := memory.New()
	actualDigest := putBlob(t, mem, actual)
	evilStore := swappedStore{Store: mem, claimed: claimed, actual: actualDigest}
	mi := metaInfoFor(t, claimed, actual)
	evil := newEngineAt(t, "127.0.0.2", p2p.RoleSeeder, trk, evilStore, nil)
	if err := evil.Seed(ctx, claimed, mi); err != nil {
		t.Fatal(err)
	}

	dataDir := t.TempDir()
	agent, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), Authorizer: testAuthorizer(t), ListenAddr: "127.0.0.1:0", DataDir: dataDir, Trackers: []string{trk}, Logger: quiet},
		agentStore, staticSource{claimed: mi})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	ref := blob.Ref{Upstream: permissiveOrigin(t), Repository: "evil/app", Digest: claimed}
	b, err := agent.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if !errors.Is(err, blob.ErrDigestMismatch) {
		t.Fatalf("read ended with %v after %d bytes, want blob.ErrDigestMismatch", err, len(got))
	}
	if len(got) >= len(actual) {
		t.Fatalf("reader got all %d bytes of a blob that fails its digest", len(got))
	}
	if !bytes.Equal(got, actual[:len(got)]) {
		t.Fatal("the bytes released are not the piece-verified ones")
	}
	if _, err := agentStore.Stat(ctx, claimed); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("store has the mismatching blob: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dataDir, "partial")); len(ents) != 0 {
		t.Fatalf("partial download left behind: %v", ents)
	}
	// The next fetch tries again (and fails again) rather than serving anything.
	b2, err := agent.Fetch(ctx, ref)
	if err == nil {
		_, err = io.ReadAll(b2)
		b2.Close()
	}
	if !errors.Is(err, blob.ErrDigestMismatch) {
		t.Fatalf("second fetch: %v, want blob.ErrDigestMismatch", err)
	}
}

// corruptStore flips a byte in everything it reads: a peer that sends bad pieces.
type corruptStore struct{ storage.Store }

func (s corruptStore) Open(ctx context.Context, d digest.Digest) (storage.Blob, error) {
	b, err := s.Store.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	return corruptBlob{b}, nil
}

type corruptBlob struct{ storage.Blob }

func (b corruptBlob) ReadAt(p []byte, off int64) (int, error) {
	n, err := b.Blob.ReadAt(p, off)
	for i := 0; i < n; i += 1000 {
		p[i] ^= 0xff
	}
	return n, err
}

// A peer that sends bad pieces never gets a byte to the reader and is
// banned; once an honest peer joins, the download completes with the right
// bytes.
func TestMaliciousBadPiecesNeverReachTheReader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	trk := testenv.Tracker(t, nil)
	content := randomBytes(t, 1<<20+5)
	mem := memory.New()
	d := putBlob(t, mem, content)
	mi := metaInfoFor(t, d, content)
	evil := newEngineAt(t, "127.0.0.2", p2p.RoleSeeder, trk, corruptStore{mem}, nil)
	if err := evil.Seed(ctx, d, mi); err != nil {
		t.Fatal(err)
	}
	agentStore := memory.New()
	agent := newEngine(t, p2p.RoleAgent, trk, agentStore, staticSource{d: mi})
	ref := blob.Ref{Upstream: permissiveOrigin(t), Repository: "bad/app", Digest: d}
	b, err := agent.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	got, err := readWithin(rctx, b)
	if len(got) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with only a corrupting peer the reader got %d bytes (err %v), want none", len(got), err)
	}

	honest := newEngine(t, p2p.RoleSeeder, trk, mem, nil)
	if err := honest.Seed(ctx, d, mi); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, ctx, agent, ref); !bytes.Equal(got, content) {
		t.Fatal("bytes differ after an honest peer joined")
	}
	if n := agent.Stats().BannedPeers; n != 1 {
		t.Errorf("%d peers banned, want the corrupting one", n)
	}
}

// readWithin reads r until ctx ends, in a goroutine, since a Blob read blocks
// on its Fetch context.
func readWithin(ctx context.Context, r io.Reader) ([]byte, error) {
	type result struct{ err error }
	ch := make(chan result, 1)
	var mu sync.Mutex
	var buf []byte
	go func() {
		p := make([]byte, 32<<10)
		for {
			n, err := r.Read(p)
			mu.Lock()
			buf = append(buf, p[:n]...)
			mu.Unlock()
			if err != nil {
				ch <- result{err: err}
				return
			}
		}
	}()
	select {
	case res := <-ch:
		mu.Lock()
		defer mu.Unlock()
		return buf, res.err
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		return buf, ctx.Err()
	}
}

func memoryStore() storage.Store { return memory.New() }

// newFSStore returns a filesystem store in a temporary directory, closed
// at cleanup.
func newFSStore(t *testing.T) *filesystem.Store {
	t.Helper()
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// newLimitedAgent starts an agent engine whose host-wide download is
// capped at down; cleanup closes it (Close may also be called earlier).
func newLimitedAgent(t *testing.T, trackerURL string, store storage.Store, src p2p.MetaInfoSource, down p2p.Rate) *p2p.Engine {
	t.Helper()
	return newEngineWith(t, trackerURL, store, src, func(c *p2p.Config) { c.DownloadLimit = down })
}

// newEngineWith starts an agent on loopback with the test defaults, changed
// by edit.
func newEngineWith(t *testing.T, trackerURL string, store storage.Store, src p2p.MetaInfoSource, edit func(*p2p.Config)) *p2p.Engine {
	t.Helper()
	cfg := p2p.Config{TLS: testtls.Member(t, "node"), Authorizer: testAuthorizer(t),
		ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(), Trackers: []string{trackerURL}, Logger: quiet}
	edit(&cfg)
	e, err := p2p.New(cfg, store, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}
