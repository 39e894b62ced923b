package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage/memory"
)

// Requests are counted by route, method and status, and blob bytes served
// from the source's store count as local, exactly as many as were sent.
func TestMetricsRequestsAndLocalBytes(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, Config{Metrics: reg}, nil)
	im := e.push(t, "metrics/app", 300*kib)
	blobURL := e.srv.URL + "/v2/metrics/app/blobs/" + im.Layers[0].Digest.String()

	for _, req := range []struct {
		method, url, rng string
		status           int
	}{
		{http.MethodGet, blobURL, "", http.StatusOK},
		{http.MethodGet, blobURL, "bytes=100-199", http.StatusPartialContent},
		{http.MethodHead, blobURL, "", http.StatusOK},
		{http.MethodGet, e.srv.URL + "/v2/", "", http.StatusOK},
		{http.MethodGet, e.srv.URL + "/v2/metrics/app/manifests/" + im.Manifest.Digest.String(), "", http.StatusOK},
		{http.MethodGet, e.srv.URL + "/v2/metrics/app/blobs/sha256:nothex", "", http.StatusBadRequest},
		{"BREW", e.srv.URL + "/v2/metrics/app/tags/list", "", http.StatusMethodNotAllowed},
	} {
		hdr := []string{"Accept", im.Manifest.MediaType}
		if req.rng != "" {
			hdr = append(hdr, "Range", req.rng)
		}
		resp := e.do(t, req.method, req.url, hdr...)
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != req.status {
			t.Fatalf("%s %s: %s, want %d", req.method, req.url, resp.Status, req.status)
		}
	}
	want := `
# HELP eagle_proxy_blob_bytes_total Blob bytes sent to clients, by source: local (the node's store), swarm (while downloading through the swarm) or origin (fetched from the origin by the node itself, fallback: origin).
# TYPE eagle_proxy_blob_bytes_total counter
eagle_proxy_blob_bytes_total{source="local"} 307300
eagle_proxy_blob_bytes_total{source="origin"} 0
eagle_proxy_blob_bytes_total{source="swarm"} 0
# HELP eagle_proxy_requests_total Registry API requests served, by route (ping, blob, upload, manifest, tags, referrers, catalog, other), method and HTTP status code ("aborted" for a blob stream cut short).
# TYPE eagle_proxy_requests_total counter
eagle_proxy_requests_total{code="200",method="GET",route="blob"} 1
eagle_proxy_requests_total{code="200",method="GET",route="manifest"} 1
eagle_proxy_requests_total{code="200",method="GET",route="ping"} 1
eagle_proxy_requests_total{code="200",method="HEAD",route="blob"} 1
eagle_proxy_requests_total{code="206",method="GET",route="blob"} 1
eagle_proxy_requests_total{code="400",method="GET",route="blob"} 1
eagle_proxy_requests_total{code="405",method="other",route="tags"} 1
`
	// The server counts a request after its handler returns, which can be
	// after the client has read the whole response.
	if err := eventually(func() error { return testutil.GatherAndCompare(reg, strings.NewReader(want)) }); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// A blob stream cut short (the digest check failed at the end) is counted
// as aborted, with the bytes that did go out.
func TestMetricsAbortedBlob(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, Config{Metrics: reg}, func(m *memSource) BlobSource {
		return &failingSource{memSource: m, failAfter: 64 * kib, failErr: blob.ErrDigestMismatch}
	})
	im := e.push(t, "metrics/abort", 512*kib)
	resp := e.do(t, http.MethodGet, e.srv.URL+"/v2/metrics/abort/blobs/"+im.Layers[0].Digest.String())
	got, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatal("the aborted download read without error")
	}
	// The server may log the request after the client saw the reset.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.CollectAndCount(e.h.metrics.requests) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := testutil.ToFloat64(e.h.metrics.requests.WithLabelValues(string(RouteBlob), http.MethodGet, "aborted")); n != 1 {
		t.Errorf("aborted blob requests = %v, want 1", n)
	}
	if n := testutil.ToFloat64(e.h.metrics.fromLocal); n != 64*kib {
		t.Errorf("local blob bytes = %v, want the %d sent before the abort (client read %d)", n, 64*kib, len(got))
	}
}

// staticMetaInfo hands out metainfo the test built: the seeder's job.
type staticMetaInfo map[digest.Digest][]byte

func (s staticMetaInfo) MetaInfo(_ context.Context, ref blob.Ref) ([]byte, error) {
	if b, ok := s[ref.Digest]; ok {
		return b, nil
	}
	return nil, blob.ErrNotFound
}

// With the real p2p engine as the source, the first read of a blob goes
// through the swarm (from a seeding peer) and counts as swarm bytes; the
// second comes from the node's store and counts as local.
func TestMetricsSwarmBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	announceURL := testenv.Tracker(t, nil)
	newEngine := func(role p2p.Role, src p2p.MetaInfoSource, store *memory.Store) *p2p.Engine {
		e, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "node"),
			ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(), Trackers: []string{announceURL},
			Role: role, Logger: quiet, SkipAuthorization: true,
		}, store, src)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}

	content := make([]byte, 2<<20+99)
	rand.Read(content)
	dgst := digest.FromBytes(content)
	ih := p2p.NewInfoHasher(dgst, int64(len(content)))
	ih.Write(content)
	mi, err := ih.MetaInfo()
	if err != nil {
		t.Fatal(err)
	}
	seedStore := memory.New()
	w, err := seedStore.Create(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content)
	if _, err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := newEngine(p2p.RoleSeeder, nil, seedStore).Seed(ctx, dgst, mi); err != nil {
		t.Fatal(err)
	}
	agent := newEngine(p2p.RoleAgent, staticMetaInfo{dgst: mi}, memory.New())

	reg := prometheus.NewRegistry()
	off := false
	h := newHandler(t, Config{DefaultUpstream: "http://127.0.0.1:1", AuthorizeBlobs: &off, Metrics: reg}, agent, quiet)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for i, source := range []string{sourceSwarm, sourceLocal} {
		resp := doReq(t, srv.Client(), http.MethodGet, srv.URL+"/v2/any/repo/blobs/"+dgst.String(), nil)
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("read %d: %d bytes, %v; want the %d bytes seeded", i, len(got), err, len(content))
		}
		resp.Body.Close()
		var n float64
		deadline := time.Now().Add(5 * time.Second)
		for n = testutil.ToFloat64(h.metrics.blobBytes.WithLabelValues(source)); n == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
			n = testutil.ToFloat64(h.metrics.blobBytes.WithLabelValues(source))
		}
		if n != float64(len(content)) {
			t.Errorf("read %d: %s bytes = %v, want %d", i, source, n, len(content))
		}
	}
}

// eventually calls check until it returns nil or 5 s have passed, and
// returns its last error: for counters the server updates after the client
// has seen the response.
func eventually(check func() error) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}
