package seeder

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
	"github.com/eagle-p2p/eagle/storage/lru"
)

// serveOn serves h on ip (a loopback address) and returns its base URL.
func serveOn(t *testing.T, ip string, h http.Handler) string {
	t.Helper()
	lis, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "http://" + lis.Addr().String()
}

// toOrigin is a handler that passes every request to the test origin.
func toOrigin(t *testing.T) http.Handler {
	target, err := url.Parse(testOrigin.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
}

// counted counts the requests h gets.
func counted(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// leaks reports what of secrets a caller-visible message carries.
func leaks(msg string, secrets ...string) []string {
	var found []string
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			found = append(found, s)
		}
	}
	return found
}

// An origin's blob GET may be redirected (real registries send it to
// storage or a CDN), but only to a listed host or to a public address:
// never to loopback, private, link-local or metadata addresses, and the
// caller learns nothing of what answered there.
func TestSSRFRedirects(t *testing.T) {
	layer := pushImage(t, 50, 300<<10)[0]
	blobPath := "/v2/" + testRepo(t) + "/blobs/" + layer.Digest.String()

	// Internal services the seeder must not reach; each counts its hits.
	var internalHits, storageHits atomic.Int64
	internal := serveOn(t, "127.0.0.1", counted(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "internal-secret-token")
	}), &internalHits))
	// A storage host the operator listed: it serves the real blob.
	storageHost := serveOn(t, "127.0.0.3", counted(toOrigin(t), &storageHits))

	var target atomic.Value // the Location of the next GET
	origin := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			toOrigin(t).ServeHTTP(w, r) // the authorization HEAD
			return
		}
		http.Redirect(w, r, target.Load().(string), http.StatusTemporaryRedirect)
	}))
	ts := startSeeder(t, Config{
		AllowedUpstreams: []string{"127.0.0.2"},
		RedirectHosts:    []string{"127.0.0.3"},
	}, nil)
	stub := ts.dial(t)

	internalHost := strings.TrimPrefix(internal, "http://")
	for _, loc := range []string{
		internal + blobPath, // loopback, unlisted
		"http://localhost:" + strings.Split(internalHost, ":")[1] + blobPath, // resolves to loopback
		"http://10.20.30.40" + blobPath,                                      // private
		"http://169.254.169.254/latest/meta-data/",                           // cloud metadata
		"http://[::1]:" + strings.Split(internalHost, ":")[1] + "/",          // IPv6 loopback
		"file:///etc/passwd",
	} {
		target.Store(loc)
		_, err := stub.GetMetaInfo(context.Background(), request(origin, testRepo(t), layer.Digest))
		st := status.Convert(err)
		if st.Code() != codes.Unavailable {
			t.Errorf("redirect to %s: %v, want Unavailable", loc, err)
		}
		if l := leaks(st.Message(), "internal-secret-token", "10.20.30.40", "169.254", "passwd", internalHost); len(l) > 0 {
			t.Errorf("redirect to %s: message %q names %q", loc, st.Message(), l)
		}
	}
	if n := internalHits.Load(); n != 0 {
		t.Errorf("the internal service got %d requests", n)
	}
	if _, err := ts.store.Stat(context.Background(), layer.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a refused fetch stored the blob: %v", err)
	}

	// The listed storage host is followed, whatever its address.
	target.Store(storageHost + blobPath)
	resp, err := stub.GetMetaInfo(context.Background(), request(origin, testRepo(t), layer.Digest))
	if err != nil {
		t.Fatalf("redirect to the listed storage host: %v", err)
	}
	checkMetaInfo(t, ts.store, layer, resp.GetMetainfo())
	if storageHits.Load() != 1 {
		t.Errorf("storage hits = %d, want 1", storageHits.Load())
	}
}

// An upstream outside allowed_upstreams (allow_any_upstream) is reached
// only at a public address: naming 127.0.0.1 reaches nothing.
func TestSSRFUnlistedUpstreamMustBePublic(t *testing.T) {
	layer := pushImage(t, 51, 5000)[0]
	var hits atomic.Int64
	internal := serveOn(t, "127.0.0.1", counted(toOrigin(t), &hits))
	ts := startSeeder(t, Config{AllowedUpstreams: []string{"registry.example.com"}, AllowAnyUpstream: true}, nil)
	_, err := ts.dial(t).GetMetaInfo(context.Background(), request(internal, testRepo(t), layer.Digest))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the loopback service got %d requests", n)
	}
	// Without allow_any_upstream, the same request is refused outright.
	ts2 := startSeeder(t, Config{AllowedUpstreams: []string{"registry.example.com"}}, nil)
	if _, err := ts2.dial(t).GetMetaInfo(context.Background(), request(internal, testRepo(t), layer.Digest)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("err = %v, want PermissionDenied", err)
	}
}

// What an origin answers — its error body, the digest and size of what it
// sent — never reaches the caller: an internal service's response would
// leak, and the seeder would hash anything for anyone.
func TestSSRFErrorsCarryNoOriginContent(t *testing.T) {
	layer := pushImage(t, 52, 5000)[0]
	other := make([]byte, 4321)
	rand.Read(other)
	otherDigest := digest.FromBytes(other)
	origin := serveOn(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer 502":
			http.Error(w, "upstream db password=hunter2", http.StatusBadGateway)
		case "Bearer 418":
			http.Error(w, "internal-teapot-secret", http.StatusTeapot)
		default:
			// Whatever the digest names, another content.
			w.Header().Set("Content-Length", strconv.Itoa(len(other)))
			w.Write(other)
		}
	}))
	ts := startSeeder(t, Config{}, nil)
	stub := ts.dial(t)
	for _, authz := range []string{"Bearer 502", "Bearer 418", ""} {
		req := request(origin, testRepo(t), layer.Digest)
		req.Authorization = authz
		_, err := stub.GetMetaInfo(context.Background(), req)
		if err == nil {
			t.Fatalf("%q: no error", authz)
		}
		st := status.Convert(err)
		text := st.Message() + fmt.Sprint(st.Details())
		if l := leaks(text, "hunter2", "password", "teapot-secret", otherDigest.String(), otherDigest.Encoded()[:16], "4321"); len(l) > 0 {
			t.Errorf("%q: the caller learns %q from %q", authz, l, text)
		}
	}
}

// A registry outside allowed_upstreams that answers yes to every HEAD gets
// no blob out of the seeder's cache: for an untrusted upstream the seeder
// hands out a blob only after fetching it from that very upstream and
// seeing it verify. A mirror that really has the bytes is served, once.
func TestMaliciousUntrustedUpstreamNeedsProvenance(t *testing.T) {
	layer := pushImage(t, 53, 300<<10)[0]
	var liarGETs, mirrorGETs atomic.Int64
	liar := serveOn(t, "127.0.0.9", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", strconv.FormatInt(layer.Size, 10))
			return // 200 to every HEAD
		}
		liarGETs.Add(1)
		if r.Header.Get("Authorization") == "Bearer garbage" {
			junk := make([]byte, layer.Size)
			rand.Read(junk)
			w.Header().Set("Content-Length", strconv.FormatInt(layer.Size, 10))
			w.Write(junk)
			return
		}
		http.NotFound(w, r)
	}))
	mirror := serveOn(t, "127.0.0.10", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			mirrorGETs.Add(1)
		}
		toOrigin(t).ServeHTTP(w, r)
	}))
	ts := startSeeder(t, Config{
		AllowedUpstreams: []string{"127.0.0.1"},
		AllowAnyUpstream: true,
		// Reachable although not public, so that provenance is what the
		// test exercises; listing a host does not make it trusted.
		RedirectHosts: []string{"127.0.0.9", "127.0.0.10"},
	}, nil)
	stub := ts.dial(t)
	ctx := context.Background()
	// The trusted origin's blob is cached.
	if _, err := stub.GetMetaInfo(ctx, request(testOrigin.URL, testRepo(t), layer.Digest)); err != nil {
		t.Fatal(err)
	}
	for _, authz := range []string{"", "Bearer garbage"} {
		req := request(liar, testRepo(t), layer.Digest)
		req.Authorization = authz
		resp, err := stub.GetMetaInfo(ctx, req)
		if err == nil || len(resp.GetMetainfo()) > 0 {
			t.Fatalf("the lying registry (%q) got metainfo of a cached blob", authz)
		}
		if c := status.Code(err); c != codes.NotFound && c != codes.DataLoss {
			t.Errorf("lying registry (%q): %v, want NotFound or DataLoss", authz, err)
		}
	}
	if n := liarGETs.Load(); n != 2 {
		t.Errorf("the lying registry got %d GETs, want 2 (one per attempt: its HEAD alone proves nothing)", n)
	}
	for range 2 {
		resp, err := stub.GetMetaInfo(ctx, request(mirror, testRepo(t), layer.Digest))
		if err != nil {
			t.Fatalf("a mirror that has the bytes: %v", err)
		}
		checkMetaInfo(t, ts.store, layer, resp.GetMetainfo())
	}
	if n := mirrorGETs.Load(); n != 1 {
		t.Errorf("the mirror served %d GETs, want 1 (then it is known to have served the bytes)", n)
	}
	if n := testOrigin.BlobGETs(layer.Digest); n != 2 {
		t.Errorf("origin blob GETs = %d, want 2 (the first fetch, and the one the mirror passed on)", n)
	}
}

// dialFrom dials the seeder as a member whose address is ip, so that the
// seeder tells it apart from other callers.
func dialFrom(t *testing.T, addr, ip string) seederpb.MetaInfoServiceClient {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(testtls.Credentials(t, "caller").ClientConfig())),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return seederpb.NewMetaInfoServiceClient(conn)
}

// A slow-loris origin — it declares most of the cache and sends a byte a
// second — evicts nothing from the seeder's cache (space is reserved as bytes
// arrive) and holds at most its caller's share of the fetch slots, so a
// legitimate cold pull goes through at once; when its callers give up,
// its fetches are cancelled.
func TestMaliciousSlowLorisOrigin(t *testing.T) {
	layers := pushImage(t, 54, 2<<20, 1<<20)
	kept, cold := layers[0], layers[1]
	var open atomic.Int64
	slow := serveOn(t, "127.0.0.4", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			return
		}
		open.Add(1)
		defer open.Add(-1)
		// Most of the cache: reserving it up front would evict the blob
		// the cache holds.
		w.Header().Set("Content-Length", strconv.Itoa(3<<20))
		w.WriteHeader(http.StatusOK)
		for {
			w.Write([]byte{0})
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Second):
			}
		}
	}))
	fs, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	cache, err := lru.New(context.Background(), fs, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	ts := startSeeder(t, Config{AllowedUpstreams: []string{"127.0.0.1", "127.0.0.4"}, MaxConcurrentFetches: 8}, cache)
	ctx := context.Background()
	if _, err := ts.dial(t).GetMetaInfo(ctx, request(testOrigin.URL, testRepo(t), kept.Digest)); err != nil {
		t.Fatal(err)
	}

	// An attacker's caller starts as many slow fetches as there are slots.
	attacker := dialFrom(t, ts.addr, "127.0.0.5")
	actx, stopAttack := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			d := digest.FromString(fmt.Sprintf("slow %d %s", i, t.Name()))
			attacker.GetMetaInfo(actx, request(slow, "evil/app", d))
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for open.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := open.Load(); n != 4 {
		t.Errorf("the attacker holds %d origin fetches, want its share of 4", n)
	}
	if _, err := fs.Stat(ctx, kept.Digest); err != nil {
		t.Errorf("the slow origin's declared size evicted a cached blob: %v", err)
	}
	if used, reserved := cache.Usage(); reserved > 64 {
		t.Errorf("cache reserves %d bytes (%d used) for bytes that never arrived", reserved, used)
	}

	// A legitimate caller's cold pull is not starved.
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := dialFrom(t, ts.addr, "127.0.0.6").GetMetaInfo(lctx, request(testOrigin.URL, testRepo(t), cold.Digest)); err != nil {
		t.Fatalf("legitimate cold pull during the attack: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("legitimate cold pull took %v during the attack", d)
	}

	// The attacker's callers give up: nobody waits for those fetches, so
	// they are cancelled and the origin connections closed.
	stopAttack()
	wg.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for open.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := open.Load(); n != 0 {
		t.Errorf("%d slow fetches still run after their callers left", n)
	}
}

// An origin body that stops sending is cut after origin_idle_timeout.
func TestOriginIdleTimeout(t *testing.T) {
	layer := pushImage(t, 55, 300<<10)[0]
	gw := startGateway(t, getsOnly(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		w.Header().Set("Content-Length", strconv.FormatInt(layer.Size, 10))
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	ts := startSeeder(t, Config{OriginIdleTimeout: 300 * time.Millisecond}, nil)
	start := time.Now()
	_, err := ts.dial(t).GetMetaInfo(context.Background(), request(gw.URL, testRepo(t), layer.Digest))
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "stalled") {
		t.Fatalf("err = %v, want Unavailable: origin stalled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a stalled body was cut after %v", d)
	}
}
