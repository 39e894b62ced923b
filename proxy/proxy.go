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
	"github.com/gorilla/mux"
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
// with any http.Server, and Close it after the server has shut down.
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
	router  *mux.Router
	metrics *handlerMetrics
}

// New builds a Handler that serves blobs from src and proxies the rest of
// the API to the upstreams in cfg. A nil logger means slog.Default().
func New(cfg Config, src BlobSource, logger *slog.Logger) (*Handler, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: nil BlobSource", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	ups, err := cfg.upstreams()
	if err != nil {
		return nil, err
	}
	if cfg.AuthCacheTTL == 0 {
		cfg.AuthCacheTTL = DefaultAuthCacheTTL
	}
	if cfg.AuthCacheSize == 0 {
		cfg.AuthCacheSize = DefaultAuthCacheSize
	}
	if cfg.AuthTimeout == 0 {
		cfg.AuthTimeout = DefaultAuthTimeout
	}
	if cfg.FirstByteTimeout == 0 {
		cfg.FirstByteTimeout = DefaultFirstByteTimeout
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.Fallback == "" {
		cfg.Fallback = FallbackNone
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

	r := mux.NewRouter()
	// Paths are relayed as the client sent them: no cleaning, no redirects.
	r.SkipClean(true)
	// The name is checked against the reference grammar in the handler, so
	// that a bad one gets NAME_INVALID rather than falling through to the
	// upstream. A digest has no '/', so the last "/blobs/" splits the path
	// and upload paths (/blobs/uploads/...) never match.
	r.Path("/v2/{name:.+}/blobs/{digest:[^/]*}").
		Methods(http.MethodGet, http.MethodHead).
		HandlerFunc(h.serveBlob)
	r.Path("/v2/{name:.+}/blobs/{digest:[^/]*}").
		Methods(http.MethodDelete).
		HandlerFunc(h.serveBlobDelete)
	r.PathPrefix("/").HandlerFunc(h.servePassthrough)
	// Whatever else a client sends (a path without a leading '/', say) is
	// the upstream's to answer too.
	r.NotFoundHandler = http.HandlerFunc(h.servePassthrough)
	h.router = r
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
	// deleted is the blob a DELETE passed to the upstream names; when
	// the upstream accepts it, its authorizations are forgotten.
	deleted *blob.Ref
	// blobFrom is the source label of the blob the body carries, if any.
	blobFrom string
}

func stateOf(r *http.Request) *reqState {
	if s, ok := r.Context().Value(ctxKey{}).(*reqState); ok {
		return s
	}
	return &reqState{}
}

// ServeHTTP routes the request and writes one access-log line for it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
		h.metrics.request(r, rec.statusOr200(), p != nil)
		if st.blobFrom != "" {
			h.metrics.blobServed(st.blobFrom, rec.bytes)
		}
		if p != nil {
			panic(p) // http.ErrAbortHandler: let the server drop the connection
		}
	}()
	h.router.ServeHTTP(rec, r)
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

// serveBlobDelete passes a blob DELETE to the upstream. A blob deleted
// there must stop being served here too: the node's copy stays in its
// cache, so the positive authorizations for the blob in that repository
// are forgotten when the upstream accepts the delete, and the next read
// asks the upstream, which answers 404.
func (h *Handler) serveBlobDelete(w http.ResponseWriter, r *http.Request) {
	vars := mux.Vars(r)
	name, nerr := parseName(vars["name"])
	dgst, derr := parseDigest(vars["digest"])
	if nerr == nil && derr == nil {
		stateOf(r).deleted = &blob.Ref{Repository: name, Digest: dgst}
	}
	// Malformed names and digests are the upstream's to refuse.
	h.servePassthrough(w, r)
}

// modifyResponse keeps the upstream choice on follow-up requests: when the
// origin's Location (an upload session) points back at this proxy — it
// honours X-Forwarded-Host — and the request chose its upstream with ?ns=,
// the same ns is added to the Location. It also forgets the authorizations
// of a blob the upstream has just deleted (see serveBlobDelete).
func (h *Handler) modifyResponse(resp *http.Response) error {
	in := resp.Request
	if in == nil {
		return nil
	}
	st := stateOf(in)
	if st.deleted != nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Before the client hears of the delete, so that its next read
		// asks the origin again.
		h.auth.Forget(st.upstream.String(), st.deleted.Repository, st.deleted.Digest)
	}
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
