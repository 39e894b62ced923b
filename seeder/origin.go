package seeder

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/netguard"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
)

// userAgent identifies the seeder to origins.
const userAgent = "eagle-seeder"

// Errors of the origin fetch; toStatus maps them to gRPC codes.
var (
	// errOriginNotFound is the origin's 404.
	errOriginNotFound = errors.New("origin has no such blob")
	// errOriginUnavailable is a network error, a 5xx, an unexpected status,
	// a stalled body or a refused redirect: the origin may answer later, or
	// another seeder may reach it. It is wrapped only around a short reason
	// that callers may see; the details are logged.
	errOriginUnavailable = errors.New("origin unavailable")
	// errEmptyBlob is a zero-length blob, which has no torrent.
	errEmptyBlob = errors.New("blob is empty and cannot be distributed as a torrent")
	// errOriginStalled is the cause of a fetch cut by OriginIdleTimeout.
	errOriginStalled = errors.New("origin sent nothing for too long")
)

// newGuard is the SSRF fence of cfg: allowed upstreams, redirect hosts and
// the environment's proxies are reached at any address, every other host
// only at public ones.
func newGuard(cfg Config) (*netguard.Guard, error) {
	listed := append(slices.Clone(cfg.AllowedUpstreams), cfg.RedirectHosts...)
	for _, v := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
		if u, err := url.Parse(os.Getenv(v)); err == nil && u.Host != "" {
			listed = append(listed, u.Host)
		}
	}
	hosts, err := netguard.ParseHosts(listed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &netguard.Guard{Listed: hosts}, nil
}

// originRoots is the system's roots plus the bundle at path (none: nil,
// the system's roots).
func originRoots(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: origin_ca: %w", ErrInvalidConfig, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: origin_ca: %s holds no PEM certificate", ErrInvalidConfig, path)
	}
	return pool, nil
}

// newOriginTransport is http.DefaultTransport with the connect and header
// timeouts bounded by timeout, dialling through guard and trusting roots
// (nil: the system's). The body has no deadline; fromOrigin cuts it when
// it stalls.
func newOriginTransport(timeout time.Duration, guard *netguard.Guard, roots *x509.CertPool) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if roots != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	t.DialContext = guard.DialContext(&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second})
	t.TLSHandshakeTimeout = timeout
	t.ResponseHeaderTimeout = timeout
	t.ExpectContinueTimeout = time.Second
	// Blobs are already compressed; asking for gzip would only make the
	// transport decompress them into bytes that no longer match the digest.
	t.DisableCompression = true
	return t
}

// slowStart is how long after its first caller asked an origin fetch may
// start before the delay is logged as a warning: the authorization check,
// a look at the store (re-hashing a stored copy that lost its metainfo)
// and the wait for a fetch slot come first.
const slowStart = 2 * time.Second

// acquire takes a fetch slot for caller: one of its own (at most
// MaxFetchesPerCaller), then one of the server's. The returned func gives
// both back.
func (s *Server) acquire(ctx context.Context, caller string) (release func(), err error) {
	s.mu.Lock()
	cs := s.callers[caller]
	if cs == nil {
		cs = &callerSlots{sem: semaphore.NewWeighted(int64(s.cfg.MaxFetchesPerCaller))}
		s.callers[caller] = cs
	}
	cs.refs++
	s.mu.Unlock()
	drop := func() {
		s.mu.Lock()
		if cs.refs--; cs.refs == 0 {
			delete(s.callers, caller)
		}
		s.mu.Unlock()
	}
	if err := cs.sem.Acquire(ctx, 1); err != nil {
		drop()
		return nil, err
	}
	if err := s.fetchSlots.Acquire(ctx, 1); err != nil {
		cs.sem.Release(1)
		drop()
		return nil, err
	}
	return func() {
		s.fetchSlots.Release(1)
		cs.sem.Release(1)
		drop()
	}, nil
}

// callerSlots are one caller's fetch slots, kept while it has fetches
// running or waiting.
type callerSlots struct {
	sem  *semaphore.Weighted
	refs int // guarded by Server.mu
}

// fromOrigin fetches r's blob from its origin into the store and returns
// its metainfo. The body streams into the store and the piece hasher in
// one pass; nothing is committed unless it matches the digest. Cache space
// is reserved as bytes arrive, never from what the origin declares.
func (s *Server) fromOrigin(ctx context.Context, r blobRequest, caller string, t *tap) (entry, error) {
	slotAsked := time.Now()
	release, err := s.acquire(ctx, caller)
	if err != nil {
		return entry{}, err
	}
	defer release()
	if !r.asked.IsZero() {
		if late := time.Since(r.asked); late > slowStart {
			// Every caller of the blob waits for this fetch.
			s.log.WarnContext(ctx, "origin fetch started late",
				"digest", r.digest, "upstream", r.upstream.Host, "after", late.Round(time.Millisecond),
				"slot_wait", time.Since(slotAsked).Round(time.Millisecond))
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.blobURL(), nil)
	if err != nil {
		return entry{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	req.Header.Set("User-Agent", userAgent)
	if r.authorization != "" {
		// net/http drops it when a redirect leaves the host (S3, a CDN):
		// a presigned URL must not see the registry credentials.
		req.Header.Set("Authorization", r.authorization)
	}
	start := time.Now()
	s.originFetches.Add(1)
	resp, err := s.http.Do(req)
	if err != nil {
		if ctx.Err() != nil && context.Cause(ctx) == ctx.Err() {
			return entry{}, ctx.Err()
		}
		s.log.WarnContext(ctx, "origin fetch failed", "upstream", r.upstream.Host, "digest", r.digest, "error", err)
		if errors.Is(err, netguard.ErrBlocked) {
			return entry{}, fmt.Errorf("%w: origin redirected to a host that is not allowed", errOriginUnavailable)
		}
		return entry{}, fmt.Errorf("%w: origin did not answer", errOriginUnavailable)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return entry{}, s.statusError(ctx, r, resp)
	}

	size := resp.ContentLength
	if size == 0 {
		return entry{}, errEmptyBlob
	}
	var w io.Writer
	sw, err := s.store.Create(ctx, r.digest)
	if err != nil {
		return entry{}, fmt.Errorf("store %s: %w", r.digest, err)
	}
	defer sw.Cancel()
	w = sw
	if c, ok := s.store.(storage.Cache); ok {
		if l, ok := s.store.(interface{ Limit() int64 }); ok && size > l.Limit() {
			// Refused before a byte is reserved or evicted for it.
			return entry{}, fmt.Errorf("%w: %s declares %d bytes, the cache holds %d", storage.ErrTooLarge, r.digest, size, l.Limit())
		}
		rw := &reservingWriter{ctx: ctx, w: sw, c: c, dgst: r.digest}
		defer c.Release(r.digest)
		w = rw
	}

	// The idle timer starts with the headers: a body that sends nothing
	// for OriginIdleTimeout is cut, whatever its declared length.
	idle := time.AfterFunc(s.cfg.OriginIdleTimeout, func() { cancel(errOriginStalled) })
	defer idle.Stop()
	var body io.Reader = &idleReader{r: resp.Body, t: idle, d: s.cfg.OriginIdleTimeout}
	if s.originLimit != nil {
		body = &limitedReader{ctx: ctx, r: body, l: s.originLimit}
	}
	var ih *p2p.InfoHasher
	var n int64
	if size > 0 {
		// With the size known up front the pieces are hashed as the
		// bytes go by, beside the store's digest; otherwise they are
		// hashed from the store after.
		ih = p2p.NewInfoHasher(r.digest, size)
		t.begin(size, ih.PieceLength())
		n, err = copyBoth(w, &tapWriter{ih: ih, t: t}, body)
	} else {
		n, err = io.Copy(w, body)
	}
	s.originBytes.Add(n)
	if err != nil {
		switch {
		case errors.Is(context.Cause(ctx), errOriginStalled):
			s.log.WarnContext(ctx, "origin stalled; fetch cut", "upstream", r.upstream.Host, "digest", r.digest,
				"bytes", n, "idle_timeout", s.cfg.OriginIdleTimeout)
			return entry{}, fmt.Errorf("%w: origin stalled", errOriginUnavailable)
		case ctx.Err() != nil:
			return entry{}, ctx.Err()
		case errors.Is(err, storage.ErrTooLarge), errors.Is(err, storage.ErrFull):
			return entry{}, fmt.Errorf("store %s: %w", r.digest, err)
		}
		s.log.WarnContext(ctx, "origin body failed", "upstream", r.upstream.Host, "digest", r.digest, "bytes", n, "error", err)
		return entry{}, fmt.Errorf("%w: origin cut the blob short", errOriginUnavailable)
	}
	info, err := sw.Commit(ctx)
	if err != nil {
		if errors.Is(err, storage.ErrDigestMismatch) {
			// The real digest and size stay in the log: telling the
			// caller would turn the seeder into a hashing oracle for
			// whatever the upstream names.
			s.log.WarnContext(ctx, "origin sent bytes that do not match the digest",
				"upstream", r.upstream.Host, "digest", r.digest, "error", err)
		}
		return entry{}, fmt.Errorf("commit %s from %s: %w", r.digest, r.upstream.Host, err)
	}
	s.served(r.digest, r.upstream.Host)
	s.log.InfoContext(ctx, "fetched blob from origin",
		"digest", r.digest, "upstream", r.upstream.Host, "repository", r.repository,
		"bytes", info.Size, "duration", time.Since(start))
	if ih == nil {
		return s.fromStore(ctx, r.digest)
	}
	mi, err := ih.MetaInfo()
	if err != nil {
		return entry{}, err
	}
	return entry{metaInfo: mi, size: info.Size}, nil
}

// reservingWriter reserves cache space for the bytes written through it,
// as they arrive, so that an origin that declares a huge blob and sends
// little evicts nothing for what it never sent.
type reservingWriter struct {
	ctx      context.Context
	w        io.Writer
	c        storage.Cache
	dgst     digest.Digest
	reserved int64
}

func (rw *reservingWriter) Write(p []byte) (int, error) {
	if need := rw.reserved + int64(len(p)); len(p) > 0 {
		if err := rw.c.Reserve(rw.ctx, rw.dgst, need); err != nil {
			return 0, err
		}
		rw.reserved = need
	}
	return rw.w.Write(p)
}

// idleReader pushes t back by d whenever bytes arrive.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if n > 0 {
		ir.t.Reset(ir.d)
	}
	return n, err
}

// fromStore rebuilds the metainfo of a blob already in the store (after a
// restart or a cache eviction), re-verifying its digest on the way: a blob
// that rotted on disk is deleted and reported as ErrDigestMismatch so that
// it is fetched again.
func (s *Server) fromStore(ctx context.Context, dgst digest.Digest) (entry, error) {
	b, err := s.store.Open(ctx, dgst)
	if err != nil {
		return entry{}, fmt.Errorf("open %s: %w", dgst, err)
	}
	defer b.Close()
	if b.Size() == 0 {
		return entry{}, errEmptyBlob
	}
	// The metainfo's SHA-256 states (a sha256 digest) come from a hash of
	// the whole blob, which checks the digest too; for another digest a
	// verifier hashes it beside.
	ih := p2p.NewInfoHasher(dgst, b.Size())
	src := &ctxReader{ctx: ctx, r: storage.NewReader(b, 0)}
	verify := ih.Verify
	if ih.ChecksDigest() {
		_, err = io.CopyBuffer(ih, src, make([]byte, copyBufSize))
	} else {
		var v *storage.Verifier
		if v, err = storage.NewVerifier(dgst); err != nil {
			return entry{}, err
		}
		verify = v.Verify
		_, err = copyBoth(v, ih, src)
	}
	if err != nil {
		return entry{}, fmt.Errorf("read %s from store: %w", dgst, err)
	}
	if err := verify(); err != nil {
		s.log.ErrorContext(ctx, "stored blob is corrupt; deleting it", "digest", dgst, "error", err)
		if derr := s.store.Delete(ctx, dgst); derr != nil && !errors.Is(derr, storage.ErrNotFound) {
			return entry{}, fmt.Errorf("delete corrupt %s: %w (after %w)", dgst, derr, err)
		}
		return entry{}, err
	}
	mi, err := ih.MetaInfo()
	if err != nil {
		return entry{}, err
	}
	s.storeRebuilds.Add(1)
	return entry{metaInfo: mi, size: b.Size()}, nil
}

// statusError turns a non-200 origin response into errOriginNotFound, a
// *blob.OriginError or errOriginUnavailable. The body is not read into the
// error: it is the origin's (or whatever answered in its name), not the
// caller's to see.
func (s *Server) statusError(ctx context.Context, r blobRequest, resp *http.Response) error {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch refusal := blob.Refusal(resp); {
	case resp.StatusCode == http.StatusNotFound:
		return errOriginNotFound
	case refusal != nil:
		return refusal
	default:
		s.log.WarnContext(ctx, "origin answered with an error", "upstream", r.upstream.Host,
			"digest", r.digest, "status", resp.StatusCode, "from", resp.Request.URL.Host)
		return fmt.Errorf("%w: origin answered %d", errOriginUnavailable, resp.StatusCode)
	}
}

// limitedReader paces reads with a token bucket shared by all origin
// fetches.
type limitedReader struct {
	ctx context.Context
	r   io.Reader
	l   *rate.Limiter
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	if b := lr.l.Burst(); len(p) > b {
		p = p[:b]
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		if werr := lr.l.WaitN(lr.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// ctxReader stops a long read from the store when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
