package proxy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eagle-p2p/eagle/internal/logbuf"
	"github.com/eagle-p2p/eagle/internal/testenv"
)

// upstreamCounter is a proxy's transport to its upstreams: it counts and
// records every request the proxy sends there.
type upstreamCounter struct {
	rt *http.Transport

	mu   sync.Mutex
	reqs []string
}

func (u *upstreamCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	u.mu.Lock()
	u.reqs = append(u.reqs, r.Method+" "+r.URL.Path)
	u.mu.Unlock()
	return u.rt.RoundTrip(r)
}

func (u *upstreamCounter) sent() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.reqs...)
}

// embedder is the embedder's own registry handler behind the middleware:
// it answers everything with deleteStatus (DELETE) or 200 and its own
// body, and records what reached it.
type embedder struct {
	deleteStatus int

	mu      sync.Mutex
	reached []string
}

func (e *embedder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.reached = append(e.reached, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization"))
	e.mu.Unlock()
	if r.Method == http.MethodDelete {
		w.WriteHeader(e.deleteStatus)
		return
	}
	_, _ = w.Write([]byte("the embedder's own answer"))
}

func (e *embedder) seen() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.reached...)
}

// The proxy as middleware in front of an embedder's handler, with an
// origin that wants credentials: the blob reads are the proxy's,
// authorized at the origin with the client's own credentials, logged and
// counted; every other request reaches the embedder's handler untouched,
// and nothing of it reaches the upstream.
func TestMiddleware(t *testing.T) {
	reg := testenv.Origin(t)
	originURL, _ := url.Parse(reg.URL)
	gate := &authGate{rp: httputil.NewSingleHostReverseProxy(originURL), heads: make(map[string]int)}
	gateSrv := httptest.NewServer(gate)
	t.Cleanup(gateSrv.Close)
	up := &upstreamCounter{rt: &http.Transport{}}
	t.Cleanup(up.rt.CloseIdleConnections)
	var logs logbuf.Buffer
	metrics := prometheus.NewRegistry()
	src := newMemSource(t)
	h := newHandler(t, Config{DefaultUpstream: gateSrv.URL, Transport: up, Metrics: metrics}, src,
		slog.New(slog.NewJSONHandler(&logs, nil)))
	next := &embedder{deleteStatus: http.StatusAccepted}
	srv := httptest.NewServer(h.Middleware(next))
	t.Cleanup(srv.Close)
	client := srv.Client()

	im := pushTo(t, client, reg.URL, "private/app", 100*kib)
	d := im.Layers[0].Digest
	want := readBlob(t, client, reg.URL, im.Repository, d.String())
	blobURL := srv.URL + "/v2/" + im.Repository + "/blobs/" + d.String()
	alice := []string{"Authorization", basic("alice")}

	// Blob reads: served by the proxy, ranges and all.
	resp := doReq(t, client, http.MethodGet, blobURL, nil, alice...)
	if got := readAll(t, resp); resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		t.Fatalf("alice GET: %s, %d bytes; want the blob", resp.Status, len(got))
	}
	checkBlobHeaders(t, resp, d, int64(len(want)))
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("a blob read has no X-Request-Id")
	}
	resp = doReq(t, client, http.MethodGet, blobURL, nil, append(alice, "Range", "bytes=10-19", "X-Request-Id", "ranged-1")...)
	if got := readAll(t, resp); resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, want[10:20]) {
		t.Fatalf("alice range: %s, %q", resp.Status, got)
	}
	resp = doReq(t, client, http.MethodHead, blobURL, nil, alice...)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(want)) {
		t.Fatalf("alice HEAD: %s, Content-Length %d", resp.Status, resp.ContentLength)
	}
	if n := gate.headCount("alice"); n != 1 {
		t.Fatalf("the origin checked alice %d times, want once (then cached)", n)
	}
	// Authorized with the client's credentials: the origin's refusals.
	resp = doReq(t, client, http.MethodGet, blobURL, nil)
	if wantOCIError(t, resp, http.StatusUnauthorized, CodeUnauthorized); resp.Header.Get("WWW-Authenticate") != challenge {
		t.Errorf("anonymous: WWW-Authenticate %q, want the origin's", resp.Header.Get("WWW-Authenticate"))
	}
	wantOCIError(t, doReq(t, client, http.MethodGet, blobURL, nil, "Authorization", basic("bob")), http.StatusForbidden, CodeDenied)
	wantOCIError(t, doReq(t, client, http.MethodGet, srv.URL+"/v2/private/app/blobs/sha256:0", nil, alice...),
		http.StatusBadRequest, CodeDigestInvalid)
	if got := next.seen(); len(got) != 0 {
		t.Fatalf("blob reads reached the embedder's handler: %q", got)
	}
	if fills := src.originFetches.Load(); fills != 1 {
		t.Errorf("the source fetched the blob %d times, want 1", fills)
	}

	// Everything else is the embedder's, and never reaches the upstream.
	before := up.sent()
	others := []struct{ method, path string }{
		{http.MethodGet, "/v2/"},
		{http.MethodGet, "/v2/private/app/manifests/" + im.Tag},
		{http.MethodHead, "/v2/private/app/manifests/" + im.Manifest.Digest.String()},
		{http.MethodGet, "/v2/private/app/tags/list"},
		{http.MethodPost, "/v2/private/app/blobs/uploads/"},
		{http.MethodPut, "/v2/private/app/manifests/v2"},
		{http.MethodGet, "/v2/private/app/blobs/uploads/some-session"},
		{http.MethodGet, "/v2/Bad/Name/manifests/v1"},
		{http.MethodGet, "/healthz"},
	}
	for _, o := range others {
		resp := doReq(t, client, o.method, srv.URL+o.path, nil, alice...)
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusOK || (o.method != http.MethodHead && string(body) != "the embedder's own answer") {
			t.Errorf("%s %s: %s %q; want the embedder's answer", o.method, o.path, resp.Status, body)
		}
		if id := resp.Header.Get("X-Request-Id"); id != "" {
			t.Errorf("%s %s: X-Request-Id %q set on a request the proxy did not serve", o.method, o.path, id)
		}
	}
	if got := next.seen(); len(got) != len(others) {
		t.Fatalf("the embedder's handler saw %q, want the %d other requests", got, len(others))
	}
	for _, r := range next.seen() {
		if !strings.HasSuffix(r, " auth="+basic("alice")) {
			t.Errorf("the embedder's handler got %q: the request was changed", r)
		}
	}
	if after := up.sent(); len(after) != len(before) {
		t.Fatalf("requests handed on reached the upstream: %q", after[len(before):])
	}

	// One access-log line per blob read, none for the others.
	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 6 {
		t.Fatalf("%d access-log lines, want one for each of the 6 blob reads: %v", len(lines), lines)
	}
	if l := lines[1]; l["request_id"] != "ranged-1" || l["status"] != float64(http.StatusPartialContent) ||
		l["upstream"] != gateSrv.URL || l["bytes"] != float64(10) {
		t.Errorf("access-log line of the range: %v", l)
	}
	for _, l := range lines {
		if !strings.Contains(l["path"].(string), "/blobs/") {
			t.Errorf("access-log line for a request handed on: %v", l)
		}
	}
	if n := testutil.CollectAndCount(h.metrics.requests); n != 6 {
		t.Errorf("%d request series, want the 6 of the blob reads", n)
	}
	for _, c := range []struct {
		method, code string
		want         float64
	}{{"GET", "200", 1}, {"GET", "206", 1}, {"HEAD", "200", 1}, {"GET", "401", 1}, {"GET", "403", 1}, {"GET", "400", 1}} {
		if got := testutil.ToFloat64(h.metrics.requests.WithLabelValues(string(RouteBlob), c.method, c.code)); got != c.want {
			t.Errorf("eagle_proxy_requests_total{route=blob,method=%s,code=%s} = %v, want %v", c.method, c.code, got, c.want)
		}
	}
	if got := testutil.ToFloat64(h.metrics.fromLocal); got != float64(len(want)+10) {
		t.Errorf("local blob bytes %v, want %d", got, len(want)+10)
	}

	// A blob DELETE the embedder refuses changes nothing; one it accepts
	// makes the next read ask the origin again.
	next.deleteStatus = http.StatusMethodNotAllowed
	readAll(t, doReq(t, client, http.MethodDelete, blobURL, nil, alice...))
	readAll(t, doReq(t, client, http.MethodGet, blobURL, nil, alice...))
	if n := gate.headCount("alice"); n != 1 {
		t.Fatalf("after a refused DELETE the origin checked alice %d times, want 1 (still cached)", n)
	}
	next.deleteStatus = http.StatusAccepted
	resp = doReq(t, client, http.MethodDelete, blobURL, nil, alice...)
	if readAll(t, resp); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %s, want the embedder's 202", resp.Status)
	}
	readAll(t, doReq(t, client, http.MethodGet, blobURL, nil, alice...))
	if n := gate.headCount("alice"); n != 2 {
		t.Fatalf("after an accepted DELETE the origin checked alice %d times in all, want 2", n)
	}
	// A malformed DELETE is handed on all the same.
	readAll(t, doReq(t, client, http.MethodDelete, srv.URL+"/v2/private/app/blobs/sha256:0", nil, alice...))
	if got := next.seen(); len(got) != len(others)+3 || !strings.HasPrefix(got[len(got)-1], "DELETE ") {
		t.Fatalf("the embedder's handler saw %q; want the 3 DELETEs too", got[len(others):])
	}
}

// middlewareForm makes newEnv serve its Handler as Middleware in front of
// a handler that fails the test if a blob read reaches it (and hands the
// rest to the Handler itself, so that the tests' other requests work).
var middlewareForm bool

// blobReadGuard is next in the middleware form of newEnv.
type blobReadGuard struct {
	t    *testing.T
	next http.Handler
}

func (g blobReadGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rt, _ := ParseRoute(r); rt.Kind == RouteBlob && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		g.t.Errorf("%s %s reached the handler behind the middleware", r.Method, r.URL.Path)
	}
	g.next.ServeHTTP(w, r)
}

// The blob route's tests, again with the proxy mounted as middleware:
// authorization, ranges, bad input, source errors, aborted streams,
// first-byte and stall timeouts, fallback, metrics and containerd's pull
// behave exactly as with the whole Handler.
func TestMiddlewareKeepsBlobRoute(t *testing.T) {
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"BlobGET", TestBlobGET},
		{"BlobHEAD", TestBlobHEAD},
		{"BlobRange", TestBlobRange},
		{"BadInput", TestBadInput},
		{"SourceErrors", TestSourceErrors},
		{"BlobAbortMidStream", TestBlobAbortMidStream},
		{"Authorization", TestAuthorization},
		{"AuthorizationJoinsConcurrentChecks", TestAuthorizationJoinsConcurrentChecks},
		{"AuthorizationOriginDown", TestAuthorizationOriginDown},
		{"MetricsRequestsAndLocalBytes", TestMetricsRequestsAndLocalBytes},
		{"MetricsAbortedBlob", TestMetricsAbortedBlob},
		{"FirstByteTimeoutAnswers503", TestFirstByteTimeoutAnswers503},
		{"FallbackOrigin", TestFallbackOrigin},
		{"StallTimeoutCutsStream", TestStallTimeoutCutsStream},
		{"BlobDeleteThroughProxy", TestBlobDeleteThroughProxy},
		{"ContainerdMirror", TestContainerdMirror},
	} {
		t.Run(tc.name, func(t *testing.T) {
			middlewareForm = true
			defer func() { middlewareForm = false }()
			tc.test(t)
		})
	}
}

func TestMiddlewareNilNextPanics(t *testing.T) {
	h := newHandler(t, Config{DefaultUpstream: closedPortURL(t)}, newMemSource(t), nil)
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "nil next") {
			t.Errorf("Middleware(nil): recovered %v, want a panic naming the nil handler", p)
		}
	}()
	h.Middleware(nil)
}
