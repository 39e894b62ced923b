package proxy

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/eagle-p2p/eagle/internal/testenv"
)

// sameResponse checks that the proxy answered exactly like the origin:
// status, body and the registry headers.
func sameResponse(t *testing.T, what string, viaProxy, direct *http.Response) []byte {
	t.Helper()
	pb, db := readAll(t, viaProxy), readAll(t, direct)
	if viaProxy.StatusCode != direct.StatusCode {
		t.Fatalf("%s: status %d via proxy, %d from origin", what, viaProxy.StatusCode, direct.StatusCode)
	}
	if !bytes.Equal(pb, db) {
		t.Fatalf("%s: body via proxy %q, from origin %q", what, pb, db)
	}
	for _, k := range []string{"Content-Type", "Content-Length", "Docker-Content-Digest", "Docker-Distribution-Api-Version", "Etag", "WWW-Authenticate"} {
		if p, d := viaProxy.Header.Get(k), direct.Header.Get(k); p != d {
			t.Fatalf("%s: %s %q via proxy, %q from origin", what, k, p, d)
		}
	}
	return pb
}

func TestPassthroughPingAndManifests(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	im := e.push(t, "eagle/manifests", 3000)

	sameResponse(t, "ping", e.do(t, "GET", e.srv.URL+"/v2/"), e.do(t, "GET", e.origin.URL+"/v2/"))

	accept := []string{"Accept", ocispec.MediaTypeImageManifest}
	for _, ref := range []string{im.Tag, im.Manifest.Digest.String()} {
		path := "/v2/" + im.Repository + "/manifests/" + ref
		body := sameResponse(t, "GET manifest "+ref,
			e.do(t, "GET", e.srv.URL+path, accept...), e.do(t, "GET", e.origin.URL+path, accept...))
		if got := digest.FromBytes(body); got != im.Manifest.Digest {
			t.Fatalf("manifest %s: digest %s, want %s", ref, got, im.Manifest.Digest)
		}
		head := e.do(t, "HEAD", e.srv.URL+path, accept...)
		sameResponse(t, "HEAD manifest "+ref, head, e.do(t, "HEAD", e.origin.URL+path, accept...))
		if got := head.Header.Get("Docker-Content-Digest"); got != im.Manifest.Digest.String() {
			t.Fatalf("HEAD manifest %s: Docker-Content-Digest %q", ref, got)
		}
	}

	for _, path := range []string{
		"/v2/" + im.Repository + "/manifests/nope",
		"/v2/eagle/unknown/manifests/v1",
		"/v2/" + im.Repository + "/tags/list",
		"/v2/" + im.Repository + "/tags/list?n=1",
		"/v2/" + im.Repository + "/blobs/uploads/not-an-upload",
	} {
		sameResponse(t, "GET "+path, e.do(t, "GET", e.srv.URL+path, accept...), e.do(t, "GET", e.origin.URL+path, accept...))
	}
	if n := e.src.fetches.Load() + e.src.stats.Load(); n != 0 {
		t.Fatalf("pass-through requests reached the blob source %d times", n)
	}
}

func TestPushThroughProxy(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	// PushRandomImage follows the Location headers the origin returns;
	// they point at the proxy because the origin honours X-Forwarded-Host.
	im := pushTo(t, e.client, e.srv.URL, "eagle/pushed", 200*kib, 5000)
	if e.methods.count("POST") == 0 || e.methods.count("PATCH") == 0 || e.methods.count("PUT") == 0 {
		t.Fatalf("push did not go through the proxy: %v", e.methods.counts)
	}
	accept := []string{"Accept", ocispec.MediaTypeImageManifest}
	resp := e.do(t, "GET", e.srv.URL+"/v2/"+im.Repository+"/manifests/"+im.Tag, accept...)
	if body := readAll(t, resp); resp.StatusCode != 200 || digest.FromBytes(body) != im.Manifest.Digest {
		t.Fatalf("pulling the pushed manifest: %s", resp.Status)
	}
	for _, desc := range im.Blobs() {
		resp := e.do(t, "GET", e.srv.URL+"/v2/"+im.Repository+"/blobs/"+desc.Digest.String())
		body := readAll(t, resp)
		if resp.StatusCode != 200 || digest.FromBytes(body) != desc.Digest || int64(len(body)) != desc.Size {
			t.Fatalf("pulling pushed blob %s: %s, %d bytes", desc.Digest, resp.Status, len(body))
		}
	}
	// The origin has the image too.
	e.blobBytes(t, im.Repository, im.Layers[0].Digest)
}

// recordingFront is a reverse proxy in front of the origin that records
// the query strings and Host headers it receives.
type recordingFront struct {
	mu      sync.Mutex
	queries []string
	hosts   []string
	fwdHost []string
	rp      *httputil.ReverseProxy
}

func (f *recordingFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.queries = append(f.queries, r.URL.RawQuery)
	f.hosts = append(f.hosts, r.Host)
	f.fwdHost = append(f.fwdHost, r.Header.Get("X-Forwarded-Host"))
	f.mu.Unlock()
	f.rp.ServeHTTP(w, r)
}

func TestNamespaceSelection(t *testing.T) {
	reg := testenv.Origin(t)
	originURL, _ := url.Parse(reg.URL)
	front := &recordingFront{rp: httputil.NewSingleHostReverseProxy(originURL)}
	frontSrv := httptest.NewServer(front)
	t.Cleanup(frontSrv.Close)
	frontURL, _ := url.Parse(frontSrv.URL)

	// The default upstream is down; only ?ns= can reach the front.
	e := newEnv(t, Config{DefaultUpstream: closedPortURL(t), Upstreams: []string{frontSrv.URL}}, nil)
	im := pushTo(t, e.client, reg.URL, "eagle/ns", 4000)
	accept := []string{"Accept", ocispec.MediaTypeImageManifest}

	path := "/v2/" + im.Repository + "/manifests/" + im.Tag
	resp := e.do(t, "GET", e.srv.URL+path+"?ns="+frontURL.Host, accept...)
	if body := readAll(t, resp); resp.StatusCode != 200 || digest.FromBytes(body) != im.Manifest.Digest {
		t.Fatalf("GET with ns=%s: %s", frontURL.Host, resp.Status)
	}
	front.mu.Lock()
	q, host, fwd := front.queries[0], front.hosts[0], front.fwdHost[0]
	front.mu.Unlock()
	if q != "" || host != frontURL.Host || fwd != strings.TrimPrefix(e.srv.URL, "http://") {
		t.Fatalf("upstream saw query %q, Host %q, X-Forwarded-Host %q; want no ns, its own host, the proxy's", q, host, fwd)
	}

	d := im.Layers[0].Digest.String()
	resp = e.do(t, "GET", e.srv.URL+"/v2/"+im.Repository+"/blobs/"+d+"?ns="+frontURL.Host)
	if body := readAll(t, resp); resp.StatusCode != 200 || digest.FromBytes(body).String() != d {
		t.Fatalf("blob GET with ns: %s", resp.Status)
	}

	// Without ns the default upstream is used, and it is down: 502.
	wantOCIError(t, e.do(t, "GET", e.srv.URL+path, accept...), http.StatusBadGateway, CodeUnavailable)
	// An unknown or malformed ns is refused with 502 so containerd falls back.
	for _, ns := range []string{"registry.example.com", "127.0.0.1:1", "bad host", "a/b"} {
		for _, p := range []string{path, "/v2/" + im.Repository + "/blobs/" + d} {
			wantOCIError(t, e.do(t, "GET", e.srv.URL+p+"?ns="+url.QueryEscape(ns)), http.StatusBadGateway, CodeUnavailable)
		}
	}
}

// TestNamespaceUpload checks a monolithic-by-PATCH upload in mirror mode:
// the Location the origin returns is made to carry the same ns, so the
// follow-up requests reach the same upstream.
func TestNamespaceUpload(t *testing.T) {
	reg := testenv.Origin(t)
	e := newEnv(t, Config{DefaultUpstream: closedPortURL(t), Upstreams: []string{reg.URL}}, nil)
	ns := "?ns=" + reg.Host

	resp := e.do(t, "POST", e.srv.URL+"/v2/eagle/upload/blobs/uploads/"+ns)
	readAll(t, resp)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload: %s", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	loc = resp.Request.URL.ResolveReference(loc)
	if loc.Host != strings.TrimPrefix(e.srv.URL, "http://") || loc.Query().Get("ns") != reg.Host {
		t.Fatalf("Location %s: want the proxy with ns=%s", loc, reg.Host)
	}

	content := []byte("blob uploaded in mirror mode")
	d := digest.FromBytes(content)
	resp = doReq(t, e.client, "PATCH", loc.String(), bytes.NewReader(content), "Content-Type", "application/octet-stream")
	readAll(t, resp)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH: %s", resp.Status)
	}
	loc, _ = url.Parse(resp.Header.Get("Location"))
	loc = resp.Request.URL.ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	resp = doReq(t, e.client, "PUT", loc.String(), nil)
	readAll(t, resp)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s", resp.Status)
	}
	resp = e.do(t, "GET", e.srv.URL+"/v2/eagle/upload/blobs/"+d.String()+ns)
	if got := readAll(t, resp); !bytes.Equal(got, content) {
		t.Fatalf("uploaded blob reads back as %q (%s)", got, resp.Status)
	}
}

func TestWithoutNS(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "",
		"ns=docker.io":              "",
		"n=1&ns=a&last=x%2Fy":       "n=1&last=x%2Fy",
		"ns=a&ns=b&digest=sha256:1": "digest=sha256:1",
		"n%73=a&x=1":                "x=1",
		"nsx=1&xns=2":               "nsx=1&xns=2",
		"_state=abc%3D%3D&ns=h:5":   "_state=abc%3D%3D",
	} {
		if got := withoutNS(in); got != want {
			t.Errorf("withoutNS(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	reg := testenv.Origin(t)
	originURL, _ := url.Parse(reg.URL)
	front := &recordingFront{rp: httputil.NewSingleHostReverseProxy(originURL)}
	frontSrv := httptest.NewServer(front)
	t.Cleanup(frontSrv.Close)

	for _, trust := range []bool{false, true} {
		e := newEnvWithOrigin(t, reg, Config{DefaultUpstream: frontSrv.URL, TrustForwardedHeaders: trust}, nil)
		readAll(t, e.do(t, "GET", e.srv.URL+"/v2/", "X-Forwarded-Host", "lb.example:443", "X-Forwarded-Proto", "https"))
		front.mu.Lock()
		got := front.fwdHost[len(front.fwdHost)-1]
		front.mu.Unlock()
		want := strings.TrimPrefix(e.srv.URL, "http://")
		if trust {
			want = "lb.example:443"
		}
		if got != want {
			t.Fatalf("trust=%v: upstream saw X-Forwarded-Host %q, want %q", trust, got, want)
		}
	}
}
