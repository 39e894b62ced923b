package seeder

import (
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

// testOrigin is the real distribution registry all tests fetch from. Each
// test pushes its own image (own repository and seed), so the per-digest
// counters are the test's own.
var testOrigin *origin.Registry

func TestMain(m *testing.M) {
	if os.Getenv(helperSeederEnv) != "" {
		// This process is a seeder that a test stops and kills.
		os.Exit(runHelperSeeder())
	}
	goleak.VerifyTestMain(withOrigin{m},
		// The registry's notification broadcaster, which nothing can stop
		// (see origin.Registry.Close).
		goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"),
	)
}

// withOrigin runs the tests with testOrigin up, and stops it before the
// leak check.
type withOrigin struct{ m *testing.M }

func (w withOrigin) Run() int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	reg, err := origin.Start(ctx, origin.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start origin:", err)
		return 1
	}
	testOrigin = reg
	defer reg.Close()
	return w.m.Run()
}

// pushImage pushes a fresh image with the given layer sizes to testOrigin
// and returns its layers.
func pushImage(t *testing.T, seed int64, sizes ...int64) []ocispec.Descriptor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	img, err := origin.PushRandomImage(ctx, nil, testOrigin.URL, testRepo(t), "v1", sizes, seed)
	if err != nil {
		t.Fatalf("push image: %v", err)
	}
	return img.Layers
}

// testRepo is the repository a test pushes to.
func testRepo(t *testing.T) string {
	return "seedertest/" + sanitize(t.Name())
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			if c >= 'A' && c <= 'Z' {
				b[i] = c + 'a' - 'A'
			} else {
				b[i] = '-'
			}
		}
	}
	return string(b)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// engineLogger is quieter: the torrent client logs every announce at Debug.
func engineLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// seeding wraps the real p2p engine and counts Seed calls per digest.
type seeding struct {
	eng *p2p.Engine
	mu  sync.Mutex
	n   map[digest.Digest]int
}

func (s *seeding) Seed(ctx context.Context, dgst digest.Digest, mi []byte) error {
	s.mu.Lock()
	s.n[dgst]++
	s.mu.Unlock()
	return s.eng.Seed(ctx, dgst, mi)
}

func (s *seeding) calls(d digest.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[d]
}

// testSeeder is a seeder server on a loopback gRPC port with its own p2p
// engine.
type testSeeder struct {
	srv     *Server
	addr    string
	peer    string // the engine's peer-wire address
	store   storage.Store
	seeding *seeding
	grpc    *grpc.Server
	stop    func()
}

// startSeeder starts a Server over store (a new filesystem store if nil),
// whose engine announces to a tracker of its own. Cleanup stops it.
func startSeeder(t *testing.T, cfg Config, store storage.Store) *testSeeder {
	t.Helper()
	return startSeederWith(t, cfg, seederSetup{store: store})
}

// startSeederAnnouncing is startSeeder with the engine announcing to
// announceURL.
func startSeederAnnouncing(t *testing.T, cfg Config, store storage.Store, announceURL string) *testSeeder {
	t.Helper()
	return startSeederWith(t, cfg, seederSetup{store: store, announce: announceURL})
}

// seederSetup is how startSeederWith starts a seeder; every zero field
// has a default.
type seederSetup struct {
	store    storage.Store // default a new filesystem store
	announce string        // default a tracker of its own
	// lis is the gRPC listener; default one on ip, port 0.
	lis net.Listener
	// ip is where the engine (and the default gRPC listener) listen.
	// Default 127.0.0.1.
	ip string
}

// startSeederWith starts a seeder as setup says, with the grpc server
// options of ServerOptions and, unless cfg has one, Config.PeerAddr set to
// its engine's address. Cleanup stops it.
func startSeederWith(t *testing.T, cfg Config, setup seederSetup) *testSeeder {
	t.Helper()
	if len(cfg.AllowedUpstreams) == 0 && !cfg.AllowAnyUpstream {
		// The test origin and every gateway in front of it.
		cfg.AllowedUpstreams = []string{"127.0.0.1"}
	}
	if setup.ip == "" {
		setup.ip = "127.0.0.1"
	}
	if setup.announce == "" {
		setup.announce = testenv.Tracker(t, testLogger(t))
	}
	store := setup.store
	if store == nil {
		fs, err := filesystem.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fs.Close() })
		store = fs
	}
	eng, err := p2p.New(p2p.Config{
		TLS: testtls.Member(t, "seeder"),
		// The seeder service authorizes every read of its engine's blobs.
		SkipAuthorization: true,
		ListenAddr:        net.JoinHostPort(setup.ip, "0"),
		DataDir:           t.TempDir(),
		Trackers:          []string{setup.announce},
		Role:              p2p.RoleSeeder,
		Logger:            engineLogger(t),
	}, store, nil)
	if err != nil {
		t.Fatalf("p2p engine: %v", err)
	}
	if cfg.PeerAddr == nil {
		cfg.PeerAddr = eng.Addr
	}
	sd := &seeding{eng: eng, n: map[digest.Digest]int{}}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv, err := NewServer(cfg, store, sd)
	if err != nil {
		eng.Close()
		t.Fatal(err)
	}
	lis := setup.lis
	if lis == nil {
		if lis, err = net.Listen("tcp", net.JoinHostPort(setup.ip, "0")); err != nil {
			srv.Close()
			eng.Close()
			t.Fatal(err)
		}
	}
	g := grpc.NewServer(append(ServerOptions(), grpc.Creds(credentials.NewTLS(testtls.Credentials(t, "seeder").ServerConfig())))...)
	srv.Register(g)
	srv.RegisterHealth(g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Serve(lis)
	}()
	var once sync.Once
	ts := &testSeeder{srv: srv, addr: lis.Addr().String(), peer: eng.Addr().String(), store: store, seeding: sd, grpc: g}
	ts.stop = func() {
		once.Do(func() {
			srv.Close()
			g.Stop()
			<-done
			eng.Close()
		})
	}
	t.Cleanup(ts.stop)
	return ts
}

// dial returns a raw gRPC stub for the seeder, to see status codes as sent.
func (ts *testSeeder) dial(t *testing.T) seederpb.MetaInfoServiceClient {
	return seederpb.NewMetaInfoServiceClient(dialConn(t, ts.addr))
}

// dialConn opens a gRPC connection that Cleanup closes.
func dialConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(testtls.Credentials(t, "agent").ClientConfig())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func request(upstream, repo string, d digest.Digest) *seederpb.GetMetaInfoRequest {
	return &seederpb.GetMetaInfoRequest{Upstream: upstream, Repository: repo, Digest: d.String()}
}

// gateway is an http server in front of the real registry that lets a
// test change what the origin answers: refuse, stall or corrupt.
type gateway struct {
	URL  string
	hits atomic.Int64 // GETs
}

// getsOnly applies handle to GETs and passes every other request (the
// seeder's authorization HEAD) to the registry untouched.
func getsOnly(handle func(w http.ResponseWriter, r *http.Request, next http.Handler)) func(w http.ResponseWriter, r *http.Request, next http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		handle(w, r, next)
	}
}

// startGateway proxies to testOrigin through handle, which gets the
// request and the proxy to call (or not).
func startGateway(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, next http.Handler)) *gateway {
	t.Helper()
	target, err := url.Parse(testOrigin.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	gw := &gateway{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gw.hits.Add(1)
		}
		handle(w, r, rp)
	}))
	t.Cleanup(hs.Close)
	gw.URL = hs.URL
	return gw
}

// checkMetaInfo parses mi and checks every piece hash against the stored
// blob's bytes and the blob's bytes against its digest.
func checkMetaInfo(t *testing.T, store storage.Store, layer ocispec.Descriptor, mi []byte) {
	t.Helper()
	_, info, err := p2p.ParseMetaInfo(layer.Digest, mi)
	if err != nil {
		t.Fatalf("metainfo does not parse: %v", err)
	}
	if info.Length != layer.Size {
		t.Fatalf("metainfo length %d, want %d", info.Length, layer.Size)
	}
	b, err := store.Open(context.Background(), layer.Digest)
	if err != nil {
		t.Fatalf("blob not in store: %v", err)
	}
	defer b.Close()
	if b.Size() != layer.Size {
		t.Fatalf("stored size %d, want %d", b.Size(), layer.Size)
	}
	verifier := layer.Digest.Verifier()
	r := io.TeeReader(storage.NewReader(b, 0), verifier)
	buf := make([]byte, info.PieceLength)
	for i := 0; i < info.NumPieces(); i++ {
		n, err := io.ReadFull(r, buf)
		if err != nil && err != io.ErrUnexpectedEOF {
			t.Fatalf("read piece %d: %v", i, err)
		}
		sum := sha1.Sum(buf[:n])
		if got, want := sum[:], info.Pieces[20*i:20*i+20]; string(got) != string(want) {
			t.Fatalf("piece %d hash %x, metainfo says %x", i, got, want)
		}
	}
	if n, _ := io.Copy(io.Discard, r); n != 0 {
		t.Fatalf("%d bytes after the last piece", n)
	}
	if !verifier.Verified() {
		t.Fatalf("stored bytes do not hash to %s", layer.Digest)
	}
}
