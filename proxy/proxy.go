// Package proxy is Eagle's registry v2 interceptor: an http.Handler that
// speaks the registry v2 / OCI distribution API to container runtimes.
//
// Blob GET and HEAD (/v2/<name>/blobs/<digest>) are served from a
// BlobSource — the p2p engine — after the origin has confirmed that the
// client's own credentials may read the blob. Everything else (the /v2/
// ping, manifests, tags, token auth challenges, pushes and uploads) is
// reverse-proxied to the upstream registry unchanged.
//
// The upstream is chosen per request: containerd, when the proxy is a
// mirror in hosts.toml, names the registry in ?ns=<host>; other clients
// get Config.DefaultUpstream.
//
// A program with a registry API of its own (a gateway with its own users,
// a registry that keeps its own manifests) mounts only the blob reads, in
// front of its own handler, with Handler.Middleware; the requests it
// hands on never reach an upstream. ParseRoute reads a request's route
// with the proxy's own parsers, so that access checks see the repository
// the proxy serves, and WriteError answers in the OCI error format.
package proxy

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/blob"
)

// BlobSource serves blobs; *p2p.Engine implements it.
//
// Errors wrapping blob.ErrNotFound become 404 BLOB_UNKNOWN, a *blob.OriginError
// is answered with the origin's status, and any other error with a 5xx so
// that the runtime falls back to its next host.
type BlobSource interface {
	// Stat returns the blob's size.
	Stat(ctx context.Context, ref blob.Ref) (int64, error)
	// Fetch opens the blob for reading.
	Fetch(ctx context.Context, ref blob.Ref) (blob.Reader, error)
}

// OriginSource fetches blobs from their origin, verified and cached: what
// the p2p engine does for fallback: origin (*p2p.Engine implements it).
type OriginSource interface {
	// StatOrigin returns the blob's size as its origin reports it.
	StatOrigin(ctx context.Context, ref blob.Ref) (int64, error)
	// FetchOrigin streams the blob from its origin.
	FetchOrigin(ctx context.Context, ref blob.Ref) (blob.Reader, error)
}

// Handler is the registry v2 interceptor. Create it with New, serve it
// with any http.Server — or mount its blob routes in front of a handler
// of your own with Middleware — and Close it after the server has shut
// down.
type Handler struct {
	cfg       Config
	src       BlobSource
	log       *slog.Logger
	upstreams *upstreamSet
	transport http.RoundTripper
	ownsRT    bool // transport was made by New; Close releases it
	// origin serves blobs from the origin itself, with fallback:
	// origin; nil otherwise.
	origin  OriginSource
	auth    Authorizer
	ownAuth *auth.Authorizer // auth, when New made it; Close closes it
	rp      *httputil.ReverseProxy
	metrics *handlerMetrics
}

// New builds a Handler that serves blobs from src and proxies the rest of
// the API to the upstreams in cfg. Zero fields of cfg take their defaults
// (see Config.WithDefaults). Errors about cfg wrap ErrInvalidConfig.
func New(cfg Config, src BlobSource) (*Handler, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: nil BlobSource", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	logger := cfg.Logger
	ups, err := cfg.upstreams()
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, src: src, log: logger, upstreams: ups, transport: cfg.Transport}
	if cfg.Fallback == FallbackOrigin {
		o, ok := src.(OriginSource)
		if !ok {
			return nil, fmt.Errorf("%w: fallback: origin needs a BlobSource that fetches from origins (an OriginSource, as the p2p engine is)", ErrInvalidConfig)
		}
		h.origin = o
	}
	if h.transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Pass bodies through as the origin encoded them.
		t.DisableCompression = true
		h.transport = t
		h.ownsRT = true
	}
	h.auth = cfg.Authorizer
	if h.auth == nil {
		trusted := ups.trusted
		h.ownAuth, err = auth.New(auth.Config{
			Transport: h.transport,
			TTL:       cfg.AuthCacheTTL,
			CacheSize: cfg.AuthCacheSize,
			Timeout:   cfg.AuthTimeout,
			StaleTTL:  cfg.StaleAuthTTL,
			Trusted:   trusted,
			Logger:    logger,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		h.auth = h.ownAuth
	}
	if h.metrics, err = newHandlerMetrics(cfg.Metrics); err != nil {
		h.Close()
		return nil, err
	}
	h.rp = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      h.transport,
		FlushInterval:  -1, // stream: never hold back bytes of a pass-through body
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.proxyError,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	return h, nil
}

// Close stops running authorization checks, releases idle upstream
// connections and unregisters the metrics. Call it after the http.Server
// serving h has shut down.
func (h *Handler) Close() error {
	if h.metrics != nil {
		h.metrics.unregister()
	}
	if h.ownAuth != nil {
		h.ownAuth.Close()
	}
	if h.ownsRT {
		h.transport.(*http.Transport).CloseIdleConnections()
	}
	return nil
}

// ctxKey keys the per-request state in a request context.
type ctxKey struct{}

// reqState is what the handlers record for the access log.
type reqState struct {
	id       string
	upstream *url.URL
	ns       string
	// blobFrom is the source label of the blob the body carries, if any.
	blobFrom string
}

func stateOf(r *http.Request) *reqState {
	if s, ok := r.Context().Value(ctxKey{}).(*reqState); ok {
		return s
	}
	return &reqState{}
}

// ServeHTTP serves the registry v2 API: blob GET and HEAD from the
// BlobSource, everything else from the upstream. It writes one access-log
// line per request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, herr := parseRoute(r.URL.Path, r.URL.EscapedPath())
	h.observe(w, r, rt.Kind, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case isBlobRead(r, rt):
			h.serveBlob(w, r, rt, herr)
		case isBlobDelete(r, rt, herr):
			h.servePassthrough(h.forgetOnDelete(w, r, rt), r)
		default:
			// Malformed names and digests outside the blob reads are
			// the upstream's to refuse.
			h.servePassthrough(w, r)
		}
	})
}

// Middleware returns a handler that serves the blob reads — GET and HEAD
// /v2/<name>/blobs/<digest> — exactly as h does (authorized at the
// upstream, ranges, first-byte and stall timeouts, fallback, metrics, an
// access-log line and an X-Request-Id), and hands every other request to
// next, untouched: no upstream is contacted, no line logged, no metric
// counted for them. Use it to put Eagle in front of a registry API of your
// own:
//
//	mux.Handle("/v2/", h.Middleware(myRegistry))
//
// Its signature is gorilla/mux's MiddlewareFunc: router.Use(h.Middleware)
// works too, for the requests that match one of the router's routes.
//
// A blob DELETE goes to next; when next accepts it (a 2xx), the blob's
// authorizations at the request's upstream are forgotten before the
// client hears of it, so that the node's cached copy is not served on
// the strength of an answer the upstream gave before the delete.
//
// The blob reads still need an upstream (Config.Validate requires one):
// each names the registry the blob comes from, which the BlobSource
// fetches it from and the authorization asks. Close h after the server
// serving the returned handler has shut down. Middleware panics when next
// is nil, as http.Handle does.
func (h *Handler) Middleware(next http.Handler) http.Handler {
	if next == nil {
		panic("proxy: Middleware: nil next handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, herr := parseRoute(r.URL.Path, r.URL.EscapedPath())
		switch {
		case isBlobRead(r, rt):
			h.observe(w, r, rt.Kind, func(w http.ResponseWriter, r *http.Request) {
				h.serveBlob(w, r, rt, herr)
			})
			return
		case isBlobDelete(r, rt, herr):
			w = h.forgetOnDelete(w, r, rt)
		}
		next.ServeHTTP(w, r)
	})
}

// isBlobRead reports whether r is a blob GET or HEAD, the requests served
// from the BlobSource (those with a malformed name or digest included:
// they are answered 400 here).
func isBlobRead(r *http.Request, rt Route) bool {
	return rt.Kind == RouteBlob && (r.Method == http.MethodGet || r.Method == http.MethodHead)
}

// isBlobDelete reports whether r is a well-formed blob DELETE (herr is
// parseRoute's error).
func isBlobDelete(r *http.Request, rt Route, herr *httpError) bool {
	return rt.Kind == RouteBlob && r.Method == http.MethodDelete && herr == nil
}

// observe serves r with serve, under a request ID, and writes its
// access-log line and metrics once it is done, also when serve aborts the
// response.
func (h *Handler) observe(w http.ResponseWriter, r *http.Request, kind RouteKind, serve http.HandlerFunc) {
	start := time.Now()
	st := &reqState{id: requestID(r.Header.Get("X-Request-Id"))}
	w.Header().Set("X-Request-Id", st.id)
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, st))
	rec := &recorder{ResponseWriter: w}
	defer func() {
		attrs := []slog.Attr{
			slog.String("request_id", st.id),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rec.statusOr200()),
			slog.Int64("bytes", rec.bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
		}
		if st.upstream != nil {
			attrs = append(attrs, slog.String("upstream", st.upstream.String()))
		}
		level := slog.LevelInfo
		p := recover()
		if p != nil {
			level = slog.LevelWarn
			attrs = append(attrs, slog.Bool("aborted", true))
		}
		h.log.LogAttrs(r.Context(), level, "request", attrs...)
		h.metrics.request(kind, r.Method, rec.statusOr200(), p != nil)
		if st.blobFrom != "" {
			h.metrics.blobServed(st.blobFrom, rec.bytes)
		}
		if p != nil {
			panic(p) // http.ErrAbortHandler: let the server drop the connection
		}
	}()
	serve(rec, r)
}

// requestID keeps a client's X-Request-Id if it is short and printable,
// and makes a new one otherwise.
func requestID(in string) string {
	if in != "" && len(in) <= 128 && strings.IndexFunc(in, func(c rune) bool { return c <= ' ' || c > '~' }) < 0 {
		return in
	}
	return rand.Text()
}

// upstreamFor resolves the request's upstream from ?ns= or the default.
func (h *Handler) upstreamFor(r *http.Request) (*url.URL, *httpError) {
	st := stateOf(r)
	ns := r.URL.Query().Get("ns")
	u, err := h.upstreams.resolve(ns)
	if err != nil {
		return nil, newError(http.StatusBadGateway, CodeUnavailable, err.Error(), nil)
	}
	st.upstream, st.ns = u, ns
	return u, nil
}

// servePassthrough reverse-proxies everything that is not a blob read.
func (h *Handler) servePassthrough(w http.ResponseWriter, r *http.Request) {
	if _, herr := h.upstreamFor(r); herr != nil {
		herr.write(w)
		return
	}
	h.rp.ServeHTTP(w, r)
}

// rewrite points the outbound request at the chosen upstream.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In)
	pr.SetURL(st.upstream)
	pr.Out.URL.RawQuery = withoutNS(pr.Out.URL.RawQuery)
	if h.cfg.TrustForwardedHeaders {
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v, ok := pr.In.Header[k]; ok {
				pr.Out.Header[k] = v
			}
		}
		host, proto := pr.Out.Header.Get("X-Forwarded-Host"), pr.Out.Header.Get("X-Forwarded-Proto")
		pr.SetXForwarded() // appends the client to X-Forwarded-For
		if host != "" {
			pr.Out.Header.Set("X-Forwarded-Host", host)
		}
		if proto != "" {
			pr.Out.Header.Set("X-Forwarded-Proto", proto)
		}
	} else {
		pr.SetXForwarded()
	}
	pr.Out.Header.Set("X-Request-Id", st.id)
}

// withoutNS removes every "ns" parameter from a raw query, leaving the
// others exactly as the client encoded them.
func withoutNS(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, "&")
	kept := parts[:0]
	for _, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); err == nil && uk == "ns" {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, "&")
}

// forgetOnDelete wraps w so that, when the handler writing to it accepts
// the blob DELETE rt names (any 2xx), the blob's authorizations at the
// request's upstream are forgotten before the status goes out. A blob
// deleted at the upstream must stop being served here too: the node's
// copy stays in its cache, so its positive authorizations in that
// repository are dropped and the next read asks the upstream, which
// answers 404. A request without a usable upstream is left alone.
func (h *Handler) forgetOnDelete(w http.ResponseWriter, r *http.Request, rt Route) http.ResponseWriter {
	up, err := h.upstreams.resolve(r.URL.Query().Get("ns"))
	if err != nil {
		return w
	}
	return &deleteWriter{ResponseWriter: w, forget: func() {
		h.auth.Forget(up.String(), rt.Name, rt.Digest)
	}}
}

// deleteWriter calls forget when a 2xx status is written, before it is.
type deleteWriter struct {
	http.ResponseWriter
	forget func()
	done   bool // a final status has been written
}

func (d *deleteWriter) WriteHeader(code int) {
	if !d.done && code >= 200 {
		d.done = true
		if code < 300 {
			d.forget()
		}
	}
	d.ResponseWriter.WriteHeader(code)
}

func (d *deleteWriter) Write(p []byte) (int, error) {
	if !d.done {
		d.WriteHeader(http.StatusOK)
	}
	return d.ResponseWriter.Write(p)
}

func (d *deleteWriter) Flush() {
	if !d.done {
		d.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(d.ResponseWriter).Flush()
}

func (d *deleteWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// modifyResponse keeps the upstream choice on follow-up requests: when the
// origin's Location (an upload session) points back at this proxy — it
// honours X-Forwarded-Host — and the request chose its upstream with ?ns=,
// the same ns is added to the Location.
func (h *Handler) modifyResponse(resp *http.Response) error {
	in := resp.Request
	if in == nil {
		return nil
	}
	st := stateOf(in)
	loc := resp.Header.Get("Location")
	if loc == "" || st.ns == "" {
		return nil
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil // not ours to fix; pass it on unchanged
	}
	fwdHost := in.Header.Get("X-Forwarded-Host")
	if (u.Host != "" && !strings.EqualFold(u.Host, fwdHost)) || !strings.HasPrefix(u.Path, "/v2/") {
		return nil
	}
	q := u.Query()
	if q.Has("ns") {
		return nil
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += "ns=" + url.QueryEscape(st.ns)
	resp.Header.Set("Location", u.String())
	return nil
}

// proxyError answers a failed upstream round trip with 502, which makes
// containerd try its next host.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r)
	h.log.LogAttrs(r.Context(), slog.LevelWarn, "upstream request failed",
		slog.String("request_id", st.id), slog.String("upstream", st.upstream.String()),
		slog.String("path", r.URL.Path), slog.Any("error", err))
	newError(http.StatusBadGateway, CodeUnavailable, "upstream request failed", nil).write(w)
}

// recorder records the status and body size for the access log. It
// unwraps for http.ResponseController (flushes, deadlines).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) statusOr200() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
