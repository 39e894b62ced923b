package seeder

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/internal/logbuf"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

func TestColdFetchCacheAndRestart(t *testing.T) {
	layers := pushImage(t, 1, 3<<20+1234)
	layer := layers[0]
	root := t.TempDir()
	store, err := filesystem.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()

	ts := startSeeder(t, Config{}, store)
	stub := ts.dial(t)
	req := request(testOrigin.URL, testRepo(t), layer.Digest)
	resp, err := stub.GetMetaInfo(ctx, req)
	if err != nil {
		t.Fatalf("cold GetMetaInfo: %v", err)
	}
	if resp.GetSize() != layer.Size {
		t.Errorf("size %d, want %d", resp.GetSize(), layer.Size)
	}
	checkMetaInfo(t, store, layer, resp.GetMetainfo())
	if n := testOrigin.BlobGETs(layer.Digest); n != 1 {
		t.Errorf("origin blob GETs after cold fetch = %d, want 1", n)
	}
	if n := ts.seeding.calls(layer.Digest); n != 1 {
		t.Errorf("Seed calls = %d, want 1", n)
	}

	// Warm: from the cache, no origin traffic, no second Seed.
	again, err := stub.GetMetaInfo(ctx, req)
	if err != nil {
		t.Fatalf("warm GetMetaInfo: %v", err)
	}
	if !bytes.Equal(again.GetMetainfo(), resp.GetMetainfo()) {
		t.Error("warm metainfo differs from cold")
	}
	if n := testOrigin.BlobGETs(layer.Digest); n != 1 {
		t.Errorf("origin blob GETs after warm call = %d, want 1", n)
	}
	st := ts.srv.Stats()
	if st.OriginFetches != 1 || st.CacheHits != 1 || st.OriginBytes != layer.Size || st.StoreRebuilds != 0 {
		t.Errorf("stats %+v, want 1 fetch of %d bytes and 1 cache hit", st, layer.Size)
	}

	// Restart over the same store: the metainfo is rebuilt from disk and
	// seeded again, without asking the origin.
	ts.stop()
	ts2 := startSeeder(t, Config{}, store)
	resp2, err := ts2.dial(t).GetMetaInfo(ctx, req)
	if err != nil {
		t.Fatalf("GetMetaInfo after restart: %v", err)
	}
	if !bytes.Equal(resp2.GetMetainfo(), resp.GetMetainfo()) {
		t.Error("rebuilt metainfo differs from the original")
	}
	if n := testOrigin.BlobGETs(layer.Digest); n != 1 {
		t.Errorf("origin blob GETs after restart = %d, want 1", n)
	}
	if st := ts2.srv.Stats(); st.OriginFetches != 0 || st.StoreRebuilds != 1 {
		t.Errorf("stats after restart %+v, want 0 fetches and 1 rebuild", st)
	}
	if n := ts2.seeding.calls(layer.Digest); n != 1 {
		t.Errorf("Seed calls after restart = %d, want 1", n)
	}
}

func TestConcurrentCallsShareOneFetch(t *testing.T) {
	layer := pushImage(t, 2, 2<<20)[0]
	ts := startSeeder(t, Config{}, nil)
	stub := ts.dial(t)
	req := request(testOrigin.URL, testRepo(t), layer.Digest)

	const n = 16
	results := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := stub.GetMetaInfo(context.Background(), req)
			results[i], errs[i] = resp.GetMetainfo(), err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if !bytes.Equal(results[i], results[0]) {
			t.Fatalf("call %d got different metainfo", i)
		}
	}
	checkMetaInfo(t, ts.store, layer, results[0])
	if got := testOrigin.BlobGETs(layer.Digest); got != 1 {
		t.Errorf("origin blob GETs = %d, want 1", got)
	}
	if got := ts.srv.Stats().OriginFetches; got != 1 {
		t.Errorf("seeder origin fetches = %d, want 1", got)
	}
	if got := ts.seeding.calls(layer.Digest); got != 1 {
		t.Errorf("Seed calls = %d, want 1", got)
	}
}

func TestUnknownDigestNotFound(t *testing.T) {
	pushImage(t, 3, 4096) // the repository exists; the blob does not
	ts := startSeeder(t, Config{}, nil)
	missing := digest.FromString("not in the registry")
	_, err := ts.dial(t).GetMetaInfo(context.Background(), request(testOrigin.URL, testRepo(t), missing))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
	if _, err := ts.store.Stat(context.Background(), missing); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("store Stat = %v, want ErrNotFound", err)
	}
}

func TestInvalidArgument(t *testing.T) {
	ts := startSeeder(t, Config{}, nil)
	stub := ts.dial(t)
	good := digest.FromString("x")
	for _, tc := range []struct {
		name string
		req  *seederpb.GetMetaInfoRequest
		want string
	}{
		{"empty digest", request(testOrigin.URL, "a/b", ""), "digest"},
		{"bad hex", request(testOrigin.URL, "a/b", "sha256:xyz"), "digest"},
		{"md5", request(testOrigin.URL, "a/b", "md5:d41d8cd98f00b204e9800998ecf8427e"), "digest"},
		{"traversal digest", request(testOrigin.URL, "a/b", "sha256:../../etc/passwd"), "digest"},
		{"empty repo", request(testOrigin.URL, "", good), "repository"},
		{"uppercase repo", request(testOrigin.URL, "Library/Alpine", good), "lowercase"},
		{"traversal repo", request(testOrigin.URL, "../etc", good), "repository"},
		{"double slash repo", request(testOrigin.URL, "a//b", good), "repository"},
		{"repo with query", request(testOrigin.URL, "a/b?x=1", good), "repository"},
		{"no scheme", request(testOrigin.Host, "a/b", good), "upstream"},
		{"ftp", request("ftp://"+testOrigin.Host, "a/b", good), "scheme"},
		{"path", request(testOrigin.URL+"/v2", "a/b", good), "path"},
		{"query", request(testOrigin.URL+"?x=1", "a/b", good), "query"},
		{"fragment", request(testOrigin.URL+"#x", "a/b", good), "fragment"},
		{"user info", request("http://u:p@"+testOrigin.Host, "a/b", good), "user info"},
		{"empty port", request("http://127.0.0.1:", "a/b", good), "port"},
		{"empty upstream", request("", "a/b", good), "upstream"},
		{"header injection", &seederpb.GetMetaInfoRequest{Upstream: testOrigin.URL, Repository: "a/b", Digest: good.String(), Authorization: "Bearer x\r\nX-Evil: 1"}, "authorization"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stub.GetMetaInfo(context.Background(), tc.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) {
				t.Fatalf("err = %v, want InvalidArgument mentioning %q", err, tc.want)
			}
		})
	}
	if got := ts.srv.Stats().OriginFetches; got != 0 {
		t.Errorf("origin fetches = %d, want 0", got)
	}
}

func TestAllowedUpstreams(t *testing.T) {
	layer := pushImage(t, 4, 5000)[0]
	req := request(testOrigin.URL, testRepo(t), layer.Digest)

	denied := startSeeder(t, Config{AllowedUpstreams: []string{"registry.example.com", "127.0.0.1:1"}}, nil)
	_, err := denied.dial(t).GetMetaInfo(context.Background(), req)
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), testOrigin.Host) {
		t.Fatalf("err = %v, want PermissionDenied naming %s", err, testOrigin.Host)
	}
	if got := testOrigin.BlobGETs(layer.Digest); got != 0 {
		t.Fatalf("origin blob GETs = %d, want 0", got)
	}

	// A host without a port allows every port of it.
	byHost := startSeeder(t, Config{AllowedUpstreams: []string{"registry.example.com", "127.0.0.1"}}, nil)
	if _, err := byHost.dial(t).GetMetaInfo(context.Background(), req); err != nil {
		t.Fatalf("allowed by host: %v", err)
	}
	byHostPort := startSeeder(t, Config{AllowedUpstreams: []string{testOrigin.Host}}, nil)
	if _, err := byHostPort.dial(t).GetMetaInfo(context.Background(), req); err != nil {
		t.Fatalf("allowed by host:port: %v", err)
	}
}

func TestOriginRefusals(t *testing.T) {
	layer := pushImage(t, 5, 5000)[0]
	const token = "Bearer let-me-in"
	const challenge = `Bearer realm="http://127.0.0.1/token",service="test"`
	gw := startGateway(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		switch r.Header.Get("Authorization") {
		case token:
			next.ServeHTTP(w, r)
		case "Bearer forbidden":
			http.Error(w, `{"errors":[{"code":"DENIED"}]}`, http.StatusForbidden)
		case "Bearer slow-down":
			http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS"}]}`, http.StatusTooManyRequests)
		case "Bearer teapot":
			http.Error(w, "short and stout", http.StatusTeapot)
		case "Bearer broken":
			http.Error(w, "upstream exploded", http.StatusBadGateway)
		default:
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		}
	})
	ts := startSeeder(t, Config{}, nil)
	stub := ts.dial(t)
	for _, tc := range []struct {
		auth      string
		code      codes.Code
		httpCode  string
		wwwAuthn  string
		bodyMatch string
	}{
		{"", codes.Unauthenticated, "401", challenge, "UNAUTHORIZED"},
		{"Bearer forbidden", codes.PermissionDenied, "403", "", "DENIED"},
		{"Bearer slow-down", codes.ResourceExhausted, "429", "", "TOOMANYREQUESTS"},
		{"Bearer teapot", codes.FailedPrecondition, "418", "", "short and stout"},
		{"Bearer broken", codes.Unavailable, "", "", "exploded"},
	} {
		req := request(gw.URL, testRepo(t), layer.Digest)
		req.Authorization = tc.auth
		_, err := stub.GetMetaInfo(context.Background(), req)
		st := status.Convert(err)
		if st.Code() != tc.code {
			t.Errorf("auth %q: code %v (%v), want %v", tc.auth, st.Code(), err, tc.code)
			continue
		}
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if ei, ok := d.(*errdetails.ErrorInfo); ok {
				info = ei
			}
		}
		if tc.httpCode == "" {
			if info != nil {
				t.Errorf("auth %q: unexpected ErrorInfo %v", tc.auth, info)
			}
			if strings.Contains(st.Message(), tc.bodyMatch) {
				t.Errorf("auth %q: message %q carries the origin's body", tc.auth, st.Message())
			}
			continue
		}
		if info == nil || info.GetReason() != ReasonOriginRefused || info.GetDomain() != ErrorDomain {
			t.Errorf("auth %q: ErrorInfo %v, want reason %s", tc.auth, info, ReasonOriginRefused)
			continue
		}
		md := info.GetMetadata()
		if md[MetadataOriginStatus] != tc.httpCode || md[MetadataWWWAuthenticate] != tc.wwwAuthn {
			t.Errorf("auth %q: metadata %v, want status %s, WWW-Authenticate %q",
				tc.auth, md, tc.httpCode, tc.wwwAuthn)
		}
		// The origin's body is not the caller's to see.
		for k, v := range md {
			if strings.Contains(v, tc.bodyMatch) {
				t.Errorf("auth %q: metadata %s = %q carries the origin's body", tc.auth, k, v)
			}
		}
		if strings.Contains(st.Message(), tc.bodyMatch) {
			t.Errorf("auth %q: message %q carries the origin's body", tc.auth, st.Message())
		}
	}
	if _, err := ts.store.Stat(context.Background(), layer.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused blob in store: %v", err)
	}

	// The right token gets the blob, and only that fetch reached the registry.
	req := request(gw.URL, testRepo(t), layer.Digest)
	req.Authorization = token
	resp, err := stub.GetMetaInfo(context.Background(), req)
	if err != nil {
		t.Fatalf("with token: %v", err)
	}
	checkMetaInfo(t, ts.store, layer, resp.GetMetainfo())
	if got := testOrigin.BlobGETs(layer.Digest); got != 1 {
		t.Errorf("origin blob GETs = %d, want 1", got)
	}
}

// A caller with good credentials is not failed by the refusal of another
// caller's credentials, even when it joined that caller's fetch.
func TestRefusalIsNotSharedAcrossCredentials(t *testing.T) {
	layer := pushImage(t, 6, 5000)[0]
	const token = "Bearer good"
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	gw := startGateway(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Header.Get("Authorization") == token {
			next.ServeHTTP(w, r)
			return
		}
		arrived <- struct{}{}
		<-release
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		http.Error(w, "no", http.StatusUnauthorized)
	})
	ts := startSeeder(t, Config{}, nil)
	stub := ts.dial(t)

	anon := request(gw.URL, testRepo(t), layer.Digest)
	anonErr := make(chan error, 1)
	go func() {
		_, err := stub.GetMetaInfo(context.Background(), anon)
		anonErr <- err
	}()
	<-arrived
	authed := request(gw.URL, testRepo(t), layer.Digest)
	authed.Authorization = token
	authedErr := make(chan error, 1)
	go func() {
		resp, err := stub.GetMetaInfo(context.Background(), authed)
		if err == nil && resp.GetSize() != layer.Size {
			err = errors.New("wrong size")
		}
		authedErr <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it join the anonymous fetch
	close(release)
	if err := <-anonErr; status.Code(err) != codes.Unauthenticated {
		t.Errorf("anonymous: %v, want Unauthenticated", err)
	}
	if err := <-authedErr; err != nil {
		t.Errorf("with token: %v", err)
	}
	if got := testOrigin.BlobGETs(layer.Digest); got != 1 {
		t.Errorf("origin blob GETs = %d, want 1", got)
	}
}

func TestDigestMismatchStoresNothing(t *testing.T) {
	layer := pushImage(t, 7, 300<<10)[0]
	gw := startGateway(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(&corrupter{ResponseWriter: w, at: 1000}, r)
	})
	ts := startSeeder(t, Config{}, nil)
	_, err := ts.dial(t).GetMetaInfo(context.Background(), request(gw.URL, testRepo(t), layer.Digest))
	if status.Code(err) != codes.DataLoss {
		t.Fatalf("err = %v, want DataLoss", err)
	}
	if _, err := ts.store.Stat(context.Background(), layer.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("corrupt blob in store: %v", err)
	}
	if n := ts.seeding.calls(layer.Digest); n != 0 {
		t.Fatalf("corrupt blob seeded %d times", n)
	}
}

// corrupter flips the byte at offset at of the body.
type corrupter struct {
	http.ResponseWriter
	at, off int
}

func (c *corrupter) Write(p []byte) (int, error) {
	if i := c.at - c.off; i >= 0 && i < len(p) {
		q := bytes.Clone(p)
		q[i] ^= 0xff
		p = q
	}
	c.off += len(p)
	return c.ResponseWriter.Write(p)
}

func TestNoContentLength(t *testing.T) {
	layer := pushImage(t, 8, 1<<20+7)[0]
	gw := startGateway(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(&chunked{ResponseWriter: w}, r)
	})
	ts := startSeeder(t, Config{}, nil)
	resp, err := ts.dial(t).GetMetaInfo(context.Background(), request(gw.URL, testRepo(t), layer.Digest))
	if err != nil {
		t.Fatal(err)
	}
	checkMetaInfo(t, ts.store, layer, resp.GetMetainfo())
	if st := ts.srv.Stats(); st.OriginFetches != 1 || st.StoreRebuilds != 1 {
		t.Errorf("stats %+v: want the pieces hashed from the store after one fetch", st)
	}
}

// chunked drops Content-Length so the body is sent chunked.
type chunked struct{ http.ResponseWriter }

func (c *chunked) WriteHeader(code int) {
	c.Header().Del("Content-Length")
	c.ResponseWriter.WriteHeader(code)
}

func (c *chunked) Write(p []byte) (int, error) { return c.ResponseWriter.Write(p) }

// A caller that gives up does not cancel the fetch that others wait for,
// and a slow origin keeps callers waiting rather than failing them.
func TestCallerGivingUpDoesNotCancelSharedFetch(t *testing.T) {
	layer := pushImage(t, 9, 600<<10)[0]
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	gw := startGateway(t, getsOnly(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		arrived <- struct{}{}
		<-release
		next.ServeHTTP(w, r)
	}))
	ts := startSeeder(t, Config{}, nil)
	stub := ts.dial(t)
	req := request(gw.URL, testRepo(t), layer.Digest)

	ctx, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := stub.GetMetaInfo(ctx, req)
		firstErr <- err
	}()
	<-arrived
	second := make(chan error, 1)
	var secondMI []byte
	go func() {
		resp, err := stub.GetMetaInfo(context.Background(), req)
		secondMI = resp.GetMetainfo()
		second <- err
	}()
	waitWaiters(t, ts.srv, layer.Digest.String(), 2)
	cancel()
	if err := <-firstErr; status.Code(err) != codes.Canceled {
		t.Errorf("first caller: %v, want Canceled", err)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-second; err != nil {
		t.Fatalf("second caller: %v", err)
	}
	checkMetaInfo(t, ts.store, layer, secondMI)
	if got := gw.hits.Load(); got != 1 {
		t.Errorf("origin requests = %d, want 1", got)
	}
}

func TestCloseCancelsInFlightFetch(t *testing.T) {
	layer := pushImage(t, 10, 600<<10)[0]
	arrived := make(chan struct{}, 1)
	gw := startGateway(t, getsOnly(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		// Headers and part of the body, then nothing until the seeder
		// hangs up.
		w.Header().Set("Content-Length", "614400")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 4096))
		w.(http.Flusher).Flush()
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	ts := startSeeder(t, Config{}, nil)
	stub := ts.dial(t)
	errc := make(chan error, 1)
	go func() {
		_, err := stub.GetMetaInfo(context.Background(), request(gw.URL, testRepo(t), layer.Digest))
		errc <- err
	}()
	<-arrived
	done := make(chan struct{})
	go func() {
		ts.srv.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-errc; status.Code(err) != codes.Unavailable {
		t.Fatalf("caller got %v, want Unavailable", err)
	}
	if _, err := ts.store.Stat(context.Background(), layer.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("partial blob in store: %v", err)
	}
	// A closed server refuses new work the same way.
	_, err := stub.GetMetaInfo(context.Background(), request(testOrigin.URL, testRepo(t), layer.Digest))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("after Close: %v, want Unavailable", err)
	}
}

func TestOriginTimeout(t *testing.T) {
	layer := pushImage(t, 11, 5000)[0]
	gw := startGateway(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		<-r.Context().Done() // never answers
	})
	ts := startSeeder(t, Config{OriginTimeout: 200 * time.Millisecond}, nil)
	start := time.Now()
	_, err := ts.dial(t).GetMetaInfo(context.Background(), request(gw.URL, testRepo(t), layer.Digest))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v with a 200ms origin timeout", d)
	}
}

// The health service RegisterHealth registers reports the MetaInfoService
// SERVING, and NOT_SERVING once the Server is closed, so that clients move
// on while the gRPC server stops; the server's overall status is not the
// seeder's to change.
func TestHealth(t *testing.T) {
	ts := startSeeder(t, Config{}, nil)
	hc := healthpb.NewHealthClient(dialConn(t, ts.addr))
	svc := seederpb.MetaInfoService_ServiceDesc.ServiceName
	check := func(svc string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != want {
			t.Fatalf("health %q: %v %v, want %v", svc, resp, err, want)
		}
	}
	check("", healthpb.HealthCheckResponse_SERVING)
	check(svc, healthpb.HealthCheckResponse_SERVING)
	ts.srv.Close()
	check(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	check("", healthpb.HealthCheckResponse_SERVING)
}

// waitWaiters waits until n callers wait for the fill of key.
func waitWaiters(t *testing.T, s *Server, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		got := 0
		if f := s.flights[key]; f != nil {
			got = f.waiters
		}
		s.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait for %q, want %d", got, key, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An origin fetch that waits for a fetch slot more than 2 s after its
// caller asked is named in a warning, with the wait: every caller of that
// blob waits too. One that starts at once logs nothing of the kind.
func TestLateFetchWarns(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a fetch slot for 2 s")
	}
	layers := pushImage(t, 31, 64<<10, 64<<10)
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	gw := startGateway(t, getsOnly(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		arrived <- struct{}{}
		if strings.HasSuffix(r.URL.Path, layers[0].Digest.String()) {
			<-release
		}
		next.ServeHTTP(w, r)
	}))
	var logs logbuf.Buffer
	ts := startSeeder(t, Config{MaxConcurrentFetches: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil)
	stub := ts.dial(t)
	repo := testRepo(t)
	first := make(chan error, 1)
	go func() {
		_, err := stub.GetMetaInfo(t.Context(), request(gw.URL, repo, layers[0].Digest))
		first <- err
	}()
	<-arrived
	if strings.Contains(logs.String(), "started late") {
		t.Errorf("a fetch that started at once logged %q", logs.String())
	}
	second := make(chan error, 1)
	go func() {
		_, err := stub.GetMetaInfo(t.Context(), request(gw.URL, repo, layers[1].Digest))
		second <- err
	}()
	time.Sleep(2100 * time.Millisecond)
	close(release)
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	s := logs.String()
	if !strings.Contains(s, `level=WARN msg="origin fetch started late" digest=`+layers[1].Digest.String()) || !strings.Contains(s, "slot_wait=2.") {
		t.Errorf("log %q: want a warning that the second blob's fetch started late, after a 2.x s wait for its slot", s)
	}
}
