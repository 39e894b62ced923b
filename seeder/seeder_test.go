package seeder

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

// Compile-time checks: what eagle.Config.MetaInfo takes.
var (
	_ p2p.PeerSource     = (*Server)(nil)
	_ p2p.PeerSource     = (*Seeder)(nil)
	_ p2p.MetaInfoSource = (*Seeder)(nil)
)

// An in-process caller gets what a gRPC caller gets, authorization at the
// origin with its own credentials included, and the errors a Client
// returns for the same answers.
func TestInProcessMetaInfo(t *testing.T) {
	layer := pushImage(t, 40, 600<<10)[0]
	const challenge = `Bearer realm="http://127.0.0.1/token",service="x",scope="repository:a:pull"`
	gw := startGateway(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Header.Get("Authorization") != "Bearer ok" {
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
	ts := startSeeder(t, Config{}, nil)
	ctx := context.Background()
	ref := blob.Ref{Upstream: gw.URL, Repository: testRepo(t), Digest: layer.Digest}

	_, _, _, err := ts.srv.MetaInfoWithPeers(ctx, ref)
	var oe *blob.OriginError
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized || oe.WWWAuthenticate != challenge {
		t.Fatalf("anonymous: %v, want the origin's 401 with its challenge", err)
	}
	if strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("error %q carries the origin's body", err)
	}
	if gw.hits.Load() != 0 {
		t.Errorf("the origin was asked for the blob %d times for a caller it refused", gw.hits.Load())
	}

	ref.Authorization = "Bearer ok"
	mi, name, peers, err := ts.srv.MetaInfoWithPeers(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	checkMetaInfo(t, ts.store, layer, mi)
	if name != "" {
		t.Errorf("seeder name %q, want none in-process", name)
	}
	if want := []netip.AddrPort{netip.MustParseAddrPort(ts.peer)}; !slices.Equal(peers, want) {
		t.Errorf("peers %v, want the engine's %v", peers, want)
	}
	// The blob is held now; a caller the origin refuses still gets nothing.
	anon := ref
	anon.Authorization = ""
	if _, err := ts.srv.MetaInfo(ctx, anon); !errors.As(err, &oe) {
		t.Errorf("anonymous, blob held: %v, want *blob.OriginError", err)
	}

	missing := ref
	missing.Digest = digest.FromString("missing")
	if _, err := ts.srv.MetaInfo(ctx, missing); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("unknown digest: %v, want blob.ErrNotFound", err)
	}
	badRepo := ref
	badRepo.Repository = "UPPER"
	if _, err := ts.srv.MetaInfo(ctx, badRepo); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad repository: %v, want InvalidArgument", err)
	}
	badDigest := ref
	badDigest.Digest = "sha256:nothex"
	if _, err := ts.srv.MetaInfo(ctx, badDigest); !errors.Is(err, storage.ErrInvalidDigest) {
		t.Errorf("bad digest: %v, want storage.ErrInvalidDigest", err)
	}
	elsewhere := ref
	elsewhere.Upstream = "https://registry.example"
	if _, err := ts.srv.MetaInfo(ctx, elsewhere); status.Code(err) != codes.PermissionDenied {
		t.Errorf("upstream not allowed: %v, want PermissionDenied", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	other := ref
	other.Digest = digest.FromString("other")
	if _, err := ts.srv.MetaInfo(cctx, other); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	if n := gw.hits.Load(); n != 1 {
		t.Errorf("origin blob GETs = %d, want 1", n)
	}
	ts.srv.Close()
	if _, err := ts.srv.MetaInfo(ctx, ref); status.Code(err) != codes.Unavailable {
		t.Errorf("after Close: %v, want Unavailable, even for a blob it held", err)
	}
}

// An in-process caller dials the seeder's listener on loopback when it
// listens on every interface.
func TestLocalPeers(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want []string
	}{
		{&net.TCPAddr{IP: net.IPv4zero, Port: 6881}, []string{"127.0.0.1:6881"}},
		{&net.TCPAddr{IP: net.IPv6zero, Port: 6881}, []string{"127.0.0.1:6881", "[::1]:6881"}},
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 6881}, []string{"10.1.2.3:6881"}},
		{&net.TCPAddr{IP: net.ParseIP("fd00::1"), Port: 6881}, []string{"[fd00::1]:6881"}},
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3)}, nil},
		{nil, nil},
	} {
		s := &Server{cfg: Config{PeerAddr: func() net.Addr { return tc.addr }}}
		var got []string
		for _, p := range s.localPeers() {
			got = append(got, p.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("PeerAddr %v: peers %v, want %v", tc.addr, got, tc.want)
		}
	}
	if got := (&Server{}).localPeers(); got != nil {
		t.Errorf("no PeerAddr: peers %v, want none", got)
	}
}

// seederConfig is a SeederConfig for a test: its own directory, a peer on
// loopback announcing to announce, the test origin allowed, cluster
// membership from the test CA.
func seederConfig(t *testing.T, announce string) SeederConfig {
	return SeederConfig{
		DataDir: t.TempDir(),
		P2P:     p2p.Config{ListenAddr: "127.0.0.1:0", Trackers: []string{announce}, Logger: engineLogger(t)},
		Service: Config{AllowedUpstreams: []string{"127.0.0.1"}},
		TLS:     testtls.Member(t, "seeder"),
		Logger:  testLogger(t),
	}
}

// serve runs sd.Serve on a loopback listener and returns its address and
// a channel that gets Serve's result.
func serve(t *testing.T, sd *Seeder) (string, <-chan error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sd.Serve(lis) }()
	return lis.Addr().String(), done
}

// New builds a whole seeder in one call: Serve serves it to members over
// mutual TLS, with health; its blobs land in DataDir/blobs; Close stops
// everything it built (the leak check of TestMain says so); and a seeder
// built again on the same directory seeds what it holds without the
// origin.
func TestNew(t *testing.T) {
	layer := pushImage(t, 41, 900<<10)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	cfg := seederConfig(t, testenv.Tracker(t, testLogger(t)))
	cfg.Metrics = reg
	sd, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, done := serve(t, sd)
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}

	c := newClient(t, addr)
	_, _, peers, err := c.MetaInfoWithPeers(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.AddrPort{netip.MustParseAddrPort(sd.Engine.Addr().String())}; !slices.Equal(peers, want) {
		t.Errorf("peers %v, want the seeder's own peer %v", peers, want)
	}
	resp, err := healthpb.NewHealthClient(dialConn(t, addr)).Check(ctx, &healthpb.HealthCheckRequest{Service: seederpb.MetaInfoService_ServiceDesc.ServiceName})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v %v, want SERVING", resp, err)
	}
	// Members only.
	stranger, err := NewClient(ClientConfig{Seeders: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := stranger.MetaInfo(sctx, ref); err == nil {
		t.Error("the seeder answered a client without a certificate")
	}
	scancel()
	stranger.Close()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var seederMetrics, p2pMetrics bool
	for _, f := range families {
		seederMetrics = seederMetrics || strings.HasPrefix(f.GetName(), "eagle_seeder_")
		p2pMetrics = p2pMetrics || strings.HasPrefix(f.GetName(), "eagle_p2p_")
	}
	if !seederMetrics || !p2pMetrics {
		t.Errorf("metrics registered: eagle_seeder_* %v, eagle_p2p_* %v; want both", seederMetrics, p2pMetrics)
	}

	if err := sd.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve after Close: %v, want nil", err)
	}
	if err := sd.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	fs, err := filesystem.New(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = fs.Stat(ctx, layer.Digest)
	fs.Close()
	if err != nil {
		t.Errorf("the blob is not in data_dir/blobs: %v", err)
	}

	// Built again on the same directory and registry: the blob is there.
	again, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := again.MetaInfo(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if st := again.Server.Stats(); st.OriginFetches != 0 || st.StoreRebuilds != 1 {
		t.Errorf("restarted seeder: %+v, want the metainfo rebuilt from the store", st)
	}
	if n := testOrigin.BlobGETs(layer.Digest); n != 1 {
		t.Errorf("origin blob GETs = %d, want 1", n)
	}
}

// A Store passed in gets the blobs and stays open after Close: it is the
// caller's.
func TestNewWithStore(t *testing.T) {
	layer := pushImage(t, 42, 300<<10)[0]
	ctx := context.Background()
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := seederConfig(t, testenv.Tracker(t, testLogger(t)))
	cfg.Store = store
	sd, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}
	mi, err := sd.MetaInfo(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.Close(); err != nil {
		t.Fatal(err)
	}
	checkMetaInfo(t, store, layer, mi)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "blobs")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data_dir/blobs: %v, want none when a store is given", err)
	}
}

// A seeder registered on a gRPC server that serves health already (as a
// gateway's server might) registers its service only: it does not crash
// the process by registering health twice, and its Close leaves the
// server's health alone.
func TestRegisterOnHostWithHealth(t *testing.T) {
	layer := pushImage(t, 43, 200<<10)[0]
	sd, err := New(context.Background(), seederConfig(t, testenv.Tracker(t, testLogger(t))))
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	hostHealth := health.NewServer()
	hostHealth.SetServingStatus("host.Service", healthpb.HealthCheckResponse_SERVING)
	g := grpc.NewServer(append(ServerOptions(), grpc.Creds(credentials.NewTLS(testtls.Credentials(t, "host").ServerConfig())))...)
	healthpb.RegisterHealthServer(g, hostHealth)
	sd.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Serve(lis)
	}()
	defer func() {
		g.Stop()
		<-done
	}()
	ctx := context.Background()
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}
	if _, err := newClient(t, lis.Addr().String()).MetaInfo(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.GetServiceInfo()[seederpb.MetaInfoService_ServiceDesc.ServiceName]; !ok {
		t.Error("the MetaInfoService is not registered")
	}
	sd.Close()
	hc := healthpb.NewHealthClient(dialConn(t, lis.Addr().String()))
	for _, svc := range []string{"", "host.Service"} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("host health %q after the seeder closed: %v %v, want SERVING", svc, resp, err)
		}
	}
}

func TestSeederConfigValidate(t *testing.T) {
	member := testtls.Member(t, "seeder")
	valid := func() SeederConfig {
		return SeederConfig{
			DataDir: "/var/lib/eagle/seeder",
			P2P:     p2p.Config{Trackers: []string{"https://tracker:7080/announce"}, Role: p2p.RoleAgent},
			Service: Config{AllowedUpstreams: []string{"registry.example"}},
			TLS:     member,
		}
	}
	if err := valid().Validate(); err != nil {
		t.Fatal(err)
	}
	cfg := valid()
	_ = cfg.Validate()
	if cfg.CacheSize != 0 || cfg.Logger != nil || cfg.P2P.DataDir != "" {
		t.Errorf("Validate changed its config: %+v", cfg)
	}
	cfg = cfg.WithDefaults()
	if cfg.CacheSize != DefaultCacheSize || cfg.P2P.DataDir != "/var/lib/eagle/seeder/p2p" ||
		cfg.P2P.WithDefaults().ListenAddr != ":6881" || cfg.P2P.Role != p2p.RoleSeeder || !cfg.P2P.SkipAuthorization ||
		cfg.P2P.TLS.Cert != member.Cert || cfg.Logger == nil || cfg.P2P.Logger != cfg.Logger {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	for _, tc := range []struct {
		name   string
		change func(*SeederConfig)
		want   error
		key    string
	}{
		{"no data_dir", func(c *SeederConfig) { c.DataDir = "" }, ErrInvalidConfig, "data_dir"},
		{"negative cache", func(c *SeederConfig) { c.CacheSize = -1 }, ErrInvalidConfig, "cache_size"},
		{"no tls", func(c *SeederConfig) { c.TLS = mtls.Config{} }, mtls.ErrInvalidConfig, "tls.ca"},
		{"no upstreams", func(c *SeederConfig) { c.Service.AllowedUpstreams = nil }, ErrInvalidConfig, "allowed_upstreams"},
		{"plain tracker", func(c *SeederConfig) { c.P2P.Trackers = []string{"http://tracker/announce"} }, ErrInvalidConfig, "trackers"},
	} {
		cfg := valid()
		tc.change(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: %v, want an error wrapping %v naming %s", tc.name, err, tc.want, tc.key)
		}
		if _, nerr := New(context.Background(), cfg); nerr == nil {
			t.Errorf("%s: New accepted it", tc.name)
		}
	}
}
