package seeder

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/time/rate"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
)

// userAgent identifies the seeder to origins.
const userAgent = "eagle-seeder"

// maxErrorBody is how much of an origin's error body is kept for the client.
const maxErrorBody = 1024

// Errors of the origin fetch; toStatus maps them to gRPC codes.
var (
	// errOriginNotFound is the origin's 404.
	errOriginNotFound = errors.New("origin has no such blob")
	// errOriginUnavailable is a network error, a 5xx or an unexpected
	// status: the origin may answer later, or another seeder may reach it.
	errOriginUnavailable = errors.New("origin unavailable")
	// errEmptyBlob is a zero-length blob, which has no torrent.
	errEmptyBlob = errors.New("blob is empty and cannot be distributed as a torrent")
)

// originRefusal is an origin's 4xx other than 404: the client's credentials
// do not let it read the blob, or it is being rate limited.
type originRefusal struct {
	status  int
	wwwAuth string
	body    string
}

func (e *originRefusal) Error() string {
	return fmt.Sprintf("origin refused: %d %s: %s", e.status, http.StatusText(e.status), e.body)
}

// newOriginTransport is http.DefaultTransport with the connect and header
// timeouts bounded by timeout. The body has no deadline.
func newOriginTransport(timeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = timeout
	t.ResponseHeaderTimeout = timeout
	t.ExpectContinueTimeout = time.Second
	// Blobs are already compressed; asking for gzip would only make the
	// transport decompress them into bytes that no longer match the digest.
	t.DisableCompression = true
	return t
}

// fromOrigin fetches r's blob from its origin into the store and returns
// its metainfo. The body streams into the store and the piece hasher in
// one pass; nothing is committed unless it matches the digest.
func (s *Server) fromOrigin(ctx context.Context, r blobRequest) (entry, error) {
	if err := s.fetchSlots.Acquire(ctx, 1); err != nil {
		return entry{}, err
	}
	defer s.fetchSlots.Release(1)

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
		if ctx.Err() != nil {
			return entry{}, ctx.Err()
		}
		return entry{}, fmt.Errorf("%w: %w", errOriginUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return entry{}, statusError(resp)
	}

	size := resp.ContentLength
	if c, ok := s.store.(storage.Cache); ok && size > 0 {
		// Make room before the bytes arrive; the commit turns the
		// reservation into the blob's own accounting.
		if err := c.Reserve(ctx, r.digest, size); err != nil {
			return entry{}, fmt.Errorf("store %s: %w", r.digest, err)
		}
		defer c.Release(r.digest)
	}
	w, err := s.store.Create(ctx, r.digest)
	if err != nil {
		return entry{}, fmt.Errorf("store %s: %w", r.digest, err)
	}
	defer w.Cancel()

	if size == 0 {
		return entry{}, errEmptyBlob
	}
	var body io.Reader = resp.Body
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
		n, err = copyBoth(w, ih, body)
	} else {
		n, err = io.Copy(w, body)
	}
	s.originBytes.Add(n)
	if err != nil {
		if ctx.Err() != nil {
			return entry{}, ctx.Err()
		}
		return entry{}, fmt.Errorf("%w: reading %s after %d bytes: %w", errOriginUnavailable, r.digest, n, err)
	}
	info, err := w.Commit(ctx)
	if err != nil {
		return entry{}, fmt.Errorf("commit %s from %s: %w", r.digest, r.upstream.Host, err)
	}
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
	v, err := storage.NewVerifier(dgst)
	if err != nil {
		return entry{}, err
	}
	ih := p2p.NewInfoHasher(dgst, b.Size())
	if _, err := copyBoth(v, ih, &ctxReader{ctx: ctx, r: storage.NewReader(b, 0)}); err != nil {
		return entry{}, fmt.Errorf("read %s from store: %w", dgst, err)
	}
	if err := v.Verify(); err != nil {
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

// statusError turns a non-200 origin response into errOriginNotFound, an
// *originRefusal or errOriginUnavailable.
func statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	text := strings.TrimSpace(strings.ToValidUTF8(string(body), string(utf8.RuneError)))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		// Only host and path: a redirect target's query may hold a signature.
		return fmt.Errorf("%w: %s%s", errOriginNotFound, resp.Request.URL.Host, resp.Request.URL.Path)
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return &originRefusal{status: resp.StatusCode, wwwAuth: resp.Header.Get("WWW-Authenticate"), body: text}
	default:
		return fmt.Errorf("%w: %s answered %s: %s", errOriginUnavailable, resp.Request.URL.Host, resp.Status, text)
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
