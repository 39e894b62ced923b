package proxy

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/internal/testenv"
)

// authGate puts access control in front of the real origin registry (the
// in-process registry has no auth configured): HTTP basic auth, with
//   - alice, carol: read everything;
//   - bob: 403 on repositories under private/;
//   - dave: 429 with Retry-After;
//   - no or wrong credentials: 401 with a Basic challenge.
//
// It counts the blob HEADs (authorization checks) per user, and can hold
// HEADs until release is closed.
type authGate struct {
	rp *httputil.ReverseProxy

	mu      sync.Mutex
	heads   map[string]int
	release chan struct{} // nil: do not hold
}

const challenge = `Basic realm="eagle-test"`

var passwords = map[string]string{"alice": "a-pw", "bob": "b-pw", "carol": "c-pw", "dave": "d-pw"}

func basic(user string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+passwords[user]))
}

func (g *authGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pw, ok := r.BasicAuth()
	if !ok || passwords[user] != pw {
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
		return
	}
	if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
		g.mu.Lock()
		g.heads[user]++
		release := g.release
		g.mu.Unlock()
		if release != nil {
			<-release
		}
	}
	switch {
	case user == "bob" && strings.HasPrefix(r.URL.Path, "/v2/private/"):
		w.WriteHeader(http.StatusForbidden)
		return
	case user == "dave":
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	g.rp.ServeHTTP(w, r)
}

func (g *authGate) headCount(user string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.heads[user]
}

// newAuthEnv starts origin, the gate in front of it and a proxy whose
// upstream is the gate.
func newAuthEnv(t *testing.T, cfg Config) (*env, *authGate) {
	t.Helper()
	reg := testenv.Origin(t)
	u, _ := url.Parse(reg.URL)
	gate := &authGate{rp: httputil.NewSingleHostReverseProxy(u), heads: make(map[string]int)}
	gateSrv := httptest.NewServer(gate)
	t.Cleanup(gateSrv.Close)
	cfg.DefaultUpstream = gateSrv.URL
	return newEnvWithOrigin(t, reg, cfg, nil), gate
}

func TestAuthorization(t *testing.T) {
	e, gate := newAuthEnv(t, Config{})
	im := e.push(t, "private/app", 100*kib)
	d := im.Layers[0].Digest
	want := e.blobBytes(t, im.Repository, d)
	blobURL := e.srv.URL + "/v2/" + im.Repository + "/blobs/" + d.String()

	// Anonymous: the origin's 401 and challenge reach the client.
	for _, method := range []string{"GET", "HEAD"} {
		resp := e.do(t, method, blobURL)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != challenge {
			t.Fatalf("anonymous %s: %s, WWW-Authenticate %q", method, resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
		if method == "GET" {
			wantOCIError(t, resp, http.StatusUnauthorized, CodeUnauthorized)
		}
	}
	// So does the 401 of a pass-through manifest request.
	resp := e.do(t, "GET", e.srv.URL+"/v2/"+im.Repository+"/manifests/"+im.Tag)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != challenge {
		t.Fatalf("anonymous manifest GET: %s, WWW-Authenticate %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}

	// alice may read: served, and the answer is cached.
	for range 3 {
		resp := e.do(t, "GET", blobURL, "Authorization", basic("alice"))
		if got := readAll(t, resp); resp.StatusCode != 200 || string(got) != string(want) {
			t.Fatalf("alice GET: %s, %d bytes", resp.Status, len(got))
		}
	}
	if n := gate.headCount("alice"); n != 1 {
		t.Fatalf("origin saw %d authorization HEADs for alice, want 1 (cached)", n)
	}

	// The blob is now cached in the source, but bob may not read it.
	fetches := e.src.fetches.Load()
	for _, method := range []string{"GET", "HEAD"} {
		resp := e.do(t, method, blobURL, "Authorization", basic("bob"))
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("bob %s: %s, want 403", method, resp.Status)
		}
		if method == "GET" {
			wantOCIError(t, resp, http.StatusForbidden, CodeDenied)
		}
	}
	if got := e.src.fetches.Load(); got != fetches {
		t.Fatalf("refused requests reached the blob source")
	}
	// A wrong password is not alice.
	resp = e.do(t, "GET", blobURL, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:guess")))
	wantOCIError(t, resp, http.StatusUnauthorized, CodeUnauthorized)

	// Rate limited: status, code and Retry-After pass through.
	resp = e.do(t, "GET", blobURL, "Authorization", basic("dave"))
	if resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("dave: Retry-After %q", resp.Header.Get("Retry-After"))
	}
	wantOCIError(t, resp, http.StatusTooManyRequests, CodeTooManyRequests)

	// A blob the origin does not have: 404 from the check.
	missing := e.srv.URL + "/v2/" + im.Repository + "/blobs/" + digest.FromString("missing").String()
	wantOCIError(t, e.do(t, "GET", missing, "Authorization", basic("alice")), http.StatusNotFound, CodeBlobUnknown)
}

func TestAuthorizationJoinsConcurrentChecks(t *testing.T) {
	e, gate := newAuthEnv(t, Config{AuthCacheTTL: -1}) // no cache: only singleflight joins
	im := e.push(t, "eagle/joined", 50*kib)
	blobURL := e.srv.URL + "/v2/" + im.Repository + "/blobs/" + im.Layers[0].Digest.String()
	// Fill the source first, so the requests below differ only in the check.
	readAll(t, e.do(t, "GET", blobURL, "Authorization", basic("alice")))

	release := make(chan struct{})
	gate.mu.Lock()
	gate.release = release
	gate.mu.Unlock()
	const n = 8
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", blobURL, nil)
			req.Header.Set("Authorization", basic("carol"))
			resp, err := e.client.Do(req)
			if err != nil {
				t.Errorf("carol GET: %v", err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if len(b) != 50*kib {
				t.Errorf("carol GET: %d bytes", len(b))
			}
			statuses[i] = resp.StatusCode
		}()
	}
	// Wait until all n requests are inside the proxy, then a little more
	// for them to reach the check, and let the origin answer.
	deadline := time.Now().Add(10 * time.Second)
	for e.methods.inFlight.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("request %d: status %d", i, s)
		}
	}
	if got := gate.headCount("carol"); got != 1 {
		t.Fatalf("origin saw %d HEADs for %d concurrent requests, want 1", got, n)
	}
	// Without a cache, the next request asks again.
	gate.mu.Lock()
	gate.release = nil
	gate.mu.Unlock()
	readAll(t, e.do(t, "GET", blobURL, "Authorization", basic("carol")))
	if got := gate.headCount("carol"); got != 2 {
		t.Fatalf("origin saw %d HEADs, want 2 with the cache off", got)
	}
}

func TestAuthorizationCacheExpires(t *testing.T) {
	e, gate := newAuthEnv(t, Config{AuthCacheTTL: 150 * time.Millisecond})
	im := e.push(t, "eagle/ttl", 10*kib)
	blobURL := e.srv.URL + "/v2/" + im.Repository + "/blobs/" + im.Layers[0].Digest.String()
	for range 2 {
		readAll(t, e.do(t, "GET", blobURL, "Authorization", basic("alice")))
	}
	if got := gate.headCount("alice"); got != 1 {
		t.Fatalf("HEADs %d, want 1 within the TTL", got)
	}
	time.Sleep(200 * time.Millisecond)
	readAll(t, e.do(t, "GET", blobURL, "Authorization", basic("alice")))
	if got := gate.headCount("alice"); got != 2 {
		t.Fatalf("HEADs %d, want 2 after the TTL", got)
	}
}

func TestAuthorizationOriginDown(t *testing.T) {
	e := newEnv(t, Config{DefaultUpstream: closedPortURL(t)}, nil)
	d := digest.FromString("x")
	for _, path := range []string{"/v2/eagle/down/blobs/" + d.String(), "/v2/", "/v2/eagle/down/manifests/v1"} {
		wantOCIError(t, e.do(t, "GET", e.srv.URL+path), http.StatusBadGateway, CodeUnavailable)
	}
	if n := e.src.fetches.Load(); n != 0 {
		t.Fatalf("blob source called %d times although the origin could not authorize", n)
	}
}
