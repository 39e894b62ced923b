package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/eagle-p2p/eagle/p2p"
)

// authorizer asks the origin whether a client may read a blob, with the
// client's own Authorization header, so that a blob cached on this node for
// one client is never handed to a client the origin would refuse.
//
// Positive answers are cached per (sha256 of the credential, upstream,
// repository, digest) for ttl. The cache is golang-lru's plain LRU with the
// expiry checked on lookup: the expirable variant (v2.0.7) starts a
// goroutine that can never be stopped.
type authorizer struct {
	client  *http.Client
	ttl     time.Duration // <= 0: no cache
	timeout time.Duration
	cache   *lru.Cache[string, time.Time] // key → expiry
	group   singleflight.Group
	// epoch counts forget calls. A check caches its answer only if no
	// forget happened while it ran, and requests join only checks started
	// in their own epoch: neither can bring back a forgotten answer.
	epoch atomic.Uint64

	// base is the parent of every check's context; Close cancels it.
	base   context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // running checks
}

// errAuthorizerClosed is returned by checks started after close.
var errAuthorizerClosed = errors.New("proxy: closed")

func newAuthorizer(rt http.RoundTripper, ttl time.Duration, size int, timeout time.Duration) (*authorizer, error) {
	cache, err := lru.New[string, time.Time](size)
	if err != nil {
		return nil, fmt.Errorf("proxy: auth cache: %w", err)
	}
	base, cancel := context.WithCancel(context.Background())
	return &authorizer{
		client: &http.Client{
			Transport: rt,
			// A redirect (to blob storage) means the origin accepted the
			// credential; following it would test the storage, not the
			// registry's access control.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		ttl:     ttl,
		timeout: timeout,
		cache:   cache,
		base:    base,
		cancel:  cancel,
	}, nil
}

// authKey is the cache and singleflight key of one check. The credential
// is hashed so that no secret is kept in memory longer than a request.
func authKey(ref p2p.BlobRef) string {
	sum := sha256.Sum256([]byte(ref.Authorization))
	return hex.EncodeToString(sum[:]) + "\x00" + ref.Upstream + "\x00" + ref.Repository + "\x00" + string(ref.Digest)
}

// authorize returns nil when the origin lets ref.Authorization read the
// blob, or the *httpError to answer the client with.
func (a *authorizer) authorize(ctx context.Context, ref p2p.BlobRef) *httpError {
	key := authKey(ref)
	if a.ttl > 0 {
		if exp, ok := a.cache.Get(key); ok {
			if time.Now().Before(exp) {
				return nil
			}
			a.cache.Remove(key)
		}
	}
	// The check runs detached from this request's context, so that a
	// client that goes away does not fail the others joined to it.
	epoch := a.epoch.Load()
	ch := a.group.DoChan(key+"\x00"+strconv.FormatUint(epoch, 10), func() (any, error) {
		herr, err := a.check(ref)
		if err == nil && herr == nil && a.ttl > 0 {
			a.mu.Lock()
			if a.epoch.Load() == epoch {
				a.cache.Add(key, time.Now().Add(a.ttl))
			}
			a.mu.Unlock()
		}
		return herr, err
	})
	select {
	case <-ctx.Done():
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "request canceled while authorizing", nil)
	case res := <-ch:
		if res.Err != nil {
			return newError(http.StatusBadGateway, CodeUnavailable,
				"cannot authorize against origin: "+res.Err.Error(), nil)
		}
		herr, _ := res.Val.(*httpError)
		return herr
	}
}

// forget drops the cached authorizations, for every credential, of the
// blob dgst in repository repo at upstream.
func (a *authorizer) forget(upstream, repo string, dgst digest.Digest) {
	suffix := "\x00" + upstream + "\x00" + repo + "\x00" + string(dgst)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.epoch.Add(1)
	for _, k := range a.cache.Keys() {
		if strings.HasSuffix(k, suffix) {
			a.cache.Remove(k)
		}
	}
}

// check HEADs the blob at the origin. It returns a non-nil *httpError for
// a refusal and a non-nil error when the origin could not be asked.
func (a *authorizer) check(ref p2p.BlobRef) (*httpError, error) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, errAuthorizerClosed
	}
	a.wg.Add(1)
	a.mu.Unlock()
	defer a.wg.Done()

	ctx, cancel := context.WithTimeout(a.base, a.timeout)
	defer cancel()
	u, err := url.Parse(ref.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", ref.Upstream, err)
	}
	u.Path = "/v2/" + ref.Repository + "/blobs/" + string(ref.Digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("building origin request: %w", err)
	}
	if ref.Authorization != "" {
		req.Header.Set("Authorization", ref.Authorization)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("HEAD %s: %w", u.Redacted(), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 400:
		return nil, nil
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden,
		resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusTooManyRequests:
		herr := newError(resp.StatusCode, codeForStatus(resp.StatusCode),
			fmt.Sprintf("origin refused access to blob: %s", http.StatusText(resp.StatusCode)),
			map[string]string{"repository": ref.Repository, "digest": string(ref.Digest)})
		herr.wwwAuthenticate = resp.Header.Get("WWW-Authenticate")
		herr.retryAfter = resp.Header.Get("Retry-After")
		return herr, nil
	default:
		return nil, fmt.Errorf("HEAD %s: origin answered %d %s", u.Redacted(), resp.StatusCode, http.StatusText(resp.StatusCode))
	}
}

// close cancels running checks and waits for them to end.
func (a *authorizer) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
}
