package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/logbuf"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// handlers.NewApp (the origin registry) starts a notification
		// broadcaster that nothing can stop; see origin.Registry.Close.
		goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"),
	)
}

const kib = 1 << 10

// The p2p engine is the BlobSource the proxy is built for.
var _ BlobSource = (*p2p.Engine)(nil)

// memSource is the BlobSource of these tests: a pull-through cache in a
// storage/memory store, filled from the origin with the client's
// credentials, the way the p2p engine's seeder does.
type memSource struct {
	store  *memory.Store
	client *http.Client

	originFetches atomic.Int64 // GETs this source sent to an origin
	fetches       atomic.Int64 // Fetch calls
	stats         atomic.Int64 // Stat calls
}

func newMemSource(t *testing.T) *memSource {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &memSource{store: memory.New(), client: &http.Client{Transport: tr}}
}

// storeBlob adapts a storage.Blob to blob.Reader.
type storeBlob struct {
	*io.SectionReader
	b storage.Blob
}

func (s storeBlob) Close() error { return s.b.Close() }

func (s *memSource) Stat(ctx context.Context, ref blob.Ref) (int64, error) {
	s.stats.Add(1)
	if err := s.fill(ctx, ref); err != nil {
		return 0, err
	}
	info, err := s.store.Stat(ctx, ref.Digest)
	if err != nil {
		return 0, err
	}
	return info.Size, nil
}

func (s *memSource) Fetch(ctx context.Context, ref blob.Ref) (blob.Reader, error) {
	s.fetches.Add(1)
	if err := s.fill(ctx, ref); err != nil {
		return nil, err
	}
	b, err := s.store.Open(ctx, ref.Digest)
	if err != nil {
		return nil, err
	}
	return storeBlob{io.NewSectionReader(b, 0, b.Size()), b}, nil
}

// fill copies the blob from the origin into the store unless it is there.
func (s *memSource) fill(ctx context.Context, ref blob.Ref) error {
	if _, err := s.store.Stat(ctx, ref.Digest); err == nil {
		return nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		ref.Upstream+"/v2/"+ref.Repository+"/blobs/"+ref.Digest.String(), nil)
	if err != nil {
		return err
	}
	if ref.Authorization != "" {
		req.Header.Set("Authorization", ref.Authorization)
	}
	s.originFetches.Add(1)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("origin: %w", blob.ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return &blob.OriginError{StatusCode: resp.StatusCode, WWWAuthenticate: resp.Header.Get("WWW-Authenticate")}
	}
	w, err := s.store.Create(ctx, ref.Digest)
	if err != nil {
		return err
	}
	defer func() { _ = w.Cancel() }()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return err
	}
	if _, err := w.Commit(ctx); err != nil {
		if errors.Is(err, storage.ErrDigestMismatch) {
			return fmt.Errorf("%w: %w", blob.ErrDigestMismatch, err)
		}
		return err
	}
	return nil
}

// failingSource serves a blob's first failAfter bytes and then fails the
// read with failErr, as the engine does when the whole-blob digest check
// fails at the end.
type failingSource struct {
	*memSource
	failAfter int64
	failErr   error
}

func (s *failingSource) Fetch(ctx context.Context, ref blob.Ref) (blob.Reader, error) {
	b, err := s.memSource.Fetch(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &failingBlob{Reader: b, left: s.failAfter, err: s.failErr}, nil
}

type failingBlob struct {
	blob.Reader
	left int64
	err  error
}

func (b *failingBlob) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.Reader.Read(p)
	b.left -= int64(n)
	return n, err
}

// env is one test's world: a real origin registry, a proxy in front of it
// served over loopback HTTP, and a client.
type env struct {
	origin  *origin.Registry
	src     *memSource
	h       *Handler
	srv     *httptest.Server
	client  *http.Client
	methods *methodCounter
}

// methodCounter counts the requests that reach the proxy, by method, and
// how many are in flight.
type methodCounter struct {
	mu       sync.Mutex
	counts   map[string]int
	inFlight atomic.Int64
	next     http.Handler
}

func (c *methodCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.counts[r.Method]++
	c.mu.Unlock()
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	c.next.ServeHTTP(w, r)
}

func (c *methodCounter) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[method]
}

// newEnv starts an origin and a proxy whose DefaultUpstream is the origin
// unless cfg says otherwise. src, when not nil, replaces the memSource.
func newEnv(t *testing.T, cfg Config, src func(*memSource) BlobSource) *env {
	t.Helper()
	return newEnvWithOrigin(t, testenv.Origin(t), cfg, src)
}

// newEnvWithOrigin is newEnv with an origin that is already running.
func newEnvWithOrigin(t *testing.T, reg *origin.Registry, cfg Config, src func(*memSource) BlobSource) *env {
	t.Helper()
	e := &env{origin: reg, src: newMemSource(t)}
	if cfg.DefaultUpstream == "" && len(cfg.Upstreams) == 0 && !cfg.AllowAnyUpstream {
		cfg.DefaultUpstream = e.origin.URL
	}
	var bs BlobSource = e.src
	if src != nil {
		bs = src(e.src)
	}
	e.h = newHandler(t, cfg, bs, nil)
	var serve http.Handler = e.h
	if middlewareForm {
		serve = e.h.Middleware(blobReadGuard{t: t, next: e.h})
	}
	e.methods = &methodCounter{counts: make(map[string]int), next: serve}
	e.srv = httptest.NewServer(e.methods)
	t.Cleanup(e.srv.Close) // runs before the handler's Close (LIFO)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{Transport: tr}
	return e
}

func newHandler(t *testing.T, cfg Config, src BlobSource, logger *slog.Logger) *Handler {
	t.Helper()
	cfg.Logger = logger
	h, err := New(cfg, src)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Handler.Close: %v", err)
		}
	})
	return h
}

// push pushes a random image straight to the origin.
func (e *env) push(t *testing.T, repo string, sizes ...int64) origin.Image {
	t.Helper()
	return pushTo(t, e.client, e.origin.URL, repo, sizes...)
}

func pushTo(t *testing.T, client *http.Client, baseURL, repo string, sizes ...int64) origin.Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	im, err := origin.PushRandomImage(ctx, client, baseURL, repo, "v1", sizes, int64(len(repo)))
	if err != nil {
		t.Fatalf("PushRandomImage(%s): %v", repo, err)
	}
	return im
}

// do sends a request with optional headers (pairs of name, value).
func (e *env) do(t *testing.T, method, url string, hdr ...string) *http.Response {
	t.Helper()
	return doReq(t, e.client, method, url, nil, hdr...)
}

func doReq(t *testing.T, c *http.Client, method, url string, body io.Reader, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatalf("NewRequest %s %s: %v", method, url, err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return b
}

// blobBytes reads a blob straight from the origin.
func (e *env) blobBytes(t *testing.T, repo string, d digest.Digest) []byte {
	t.Helper()
	resp := e.do(t, http.MethodGet, e.origin.URL+"/v2/"+repo+"/blobs/"+d.String())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("origin blob GET: %s", resp.Status)
	}
	b := readAll(t, resp)
	if got := digest.FromBytes(b); got != d {
		t.Fatalf("origin blob digest %s, want %s", got, d)
	}
	return b
}

// wantOCIError checks status, content type and the single error code.
func wantOCIError(t *testing.T, resp *http.Response, status int, code ErrorCode) ErrorResponse {
	t.Helper()
	body := readAll(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var er ErrorResponse
	if err := json.Unmarshal(body, &er); err != nil {
		t.Fatalf("error body %q is not OCI JSON: %v", body, err)
	}
	if len(er.Errors) != 1 || er.Errors[0].Code != code || er.Errors[0].Message == "" {
		t.Fatalf("errors %+v, want one %s with a message", er.Errors, code)
	}
	return er
}

// closedPortURL returns an http URL on loopback where nothing listens.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestLogLine(t *testing.T) {
	reg := testenv.Origin(t)
	var buf logbuf.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	h := newHandler(t, Config{DefaultUpstream: reg.URL}, newMemSource(t), logger)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := srv.Client()

	resp := doReq(t, c, http.MethodGet, srv.URL+"/v2/", nil, "X-Request-Id", "req-123")
	readAll(t, resp)
	if got := resp.Header.Get("X-Request-Id"); got != "req-123" {
		t.Fatalf("X-Request-Id %q, want the client's", got)
	}
	resp = doReq(t, c, http.MethodGet, srv.URL+"/v2/", nil, "X-Request-Id", "bad id "+strings.Repeat("x", 200))
	readAll(t, resp)
	if got := resp.Header.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Fatalf("X-Request-Id %q, want a fresh id", got)
	}

	var line struct {
		Msg, Method, Path, Upstream string
		RequestID                   string `json:"request_id"`
		Status                      int
		Bytes                       int64
		Duration                    int64
	}
	first, _, _ := bytes.Cut(buf.Bytes(), []byte("\n"))
	if err := json.Unmarshal(first, &line); err != nil {
		t.Fatalf("log %q: %v", first, err)
	}
	if line.Msg != "request" || line.RequestID != "req-123" || line.Method != "GET" || line.Path != "/v2/" ||
		line.Status != 200 || line.Upstream != reg.URL || line.Bytes != 2 || line.Duration <= 0 {
		t.Fatalf("log line %+v (%s)", line, first)
	}
}
