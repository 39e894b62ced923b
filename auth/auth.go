// Package auth decides whether a client may read a blob. It asks the
// origin registry — a HEAD of the blob carrying the client's own
// Authorization — and reuses a yes for a while, per credential, upstream,
// repository and digest. One Authorizer serves every part of a process
// that hands out bytes: the registry proxy, the p2p engine, the seeder's
// gRPC service and the containerd resolver, so that a blob cached for one
// client is never handed to a client the origin would refuse.
//
// Content addressing is not permission. An upstream that is not trusted (a
// registry a client named that the operator did not configure) can answer
// yes to any HEAD, so its yes counts only when it also served those very
// bytes to Eagle and they verified; Config.Vouch is asked for that proof.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

	"github.com/eagle-p2p/eagle/blob"
)

// Defaults applied by New to zero-valued Config fields.
const (
	// DefaultTTL is how long a yes from an origin is reused for the same
	// credential, upstream, repository and digest.
	DefaultTTL = 60 * time.Second
	// DefaultCacheSize is the number of yes answers kept at most.
	DefaultCacheSize = 4096
	// DefaultTimeout bounds one check at the origin.
	DefaultTimeout = 30 * time.Second
	// DefaultStaleTTL is how long the origin's last yes keeps counting
	// while the origin cannot be asked: an hour of an origin outage, or a
	// network partition, during which nodes keep serving what they hold
	// to the clients the origin last let read it. A credential revoked
	// meanwhile keeps reading those blobs that long; a refusal from an
	// origin that answers always counts at once.
	DefaultStaleTTL = time.Hour
)

// Errors of Authorize besides an origin's refusal (a *blob.OriginError).
var (
	// ErrUnavailable reports that the origin could not be asked: it did
	// not answer, or answered with an error of its own (5xx). The client
	// should try elsewhere; nothing about the blob was learned.
	ErrUnavailable = errors.New("auth: origin could not be asked")
	// ErrUntrusted reports a blob at an upstream that is not trusted and
	// that nothing vouched for: that upstream never served these bytes to
	// Eagle, so its yes proves nothing.
	ErrUntrusted = errors.New("auth: upstream is not trusted for this blob")
	// ErrClosed reports a check started after Close.
	ErrClosed = errors.New("auth: authorizer closed")
)

// Config configures an Authorizer. The zero value is usable: every
// upstream trusted, default timings.
type Config struct {
	// Transport carries the checks to the origins. Default: a clone of
	// http.DefaultTransport, whose idle connections Close releases.
	// Redirects are never followed: a redirect (to blob storage) means
	// the origin accepted the credential.
	Transport http.RoundTripper
	// TTL is how long a yes is reused. Zero means DefaultTTL; negative
	// disables the cache (every read asks the origin). A no is never
	// cached.
	TTL time.Duration
	// CacheSize bounds the number of cached yes answers. Zero means
	// DefaultCacheSize.
	CacheSize int
	// Timeout bounds one check at the origin. Zero means DefaultTimeout.
	Timeout time.Duration
	// StaleTTL is how long after the origin's last yes a check that finds
	// the origin unreachable (ErrUnavailable: a network error or a 5xx)
	// still says yes. Zero means DefaultStaleTTL; negative: never past
	// TTL. The entries count against CacheSize.
	StaleTTL time.Duration
	// Logger receives a warning each time a stale yes is used, and when
	// the origin takes more than 2 s to answer a check. Nil:
	// discarded.
	Logger *slog.Logger
	// Trusted reports whether an upstream (a base URL,
	// "scheme://host[:port]") is one the operator configured, whose answers
	// about who may read a blob are believed whoever served the bytes.
	// Nil trusts every upstream.
	Trusted func(upstream string) bool
	// Vouch is asked, after the origin said yes, for a blob at an upstream
	// that Trusted refuses: it must confirm that this very upstream served
	// the blob's bytes to Eagle and that they verified (on a node: a
	// seeder that fetched them from there). Nil refuses such blobs with
	// ErrUntrusted.
	Vouch func(ctx context.Context, ref blob.Ref) error
}

// Authorizer checks with origins whether clients may read blobs. It is
// safe for concurrent use. Create it with New and stop it with Close.
type Authorizer struct {
	cfg    Config
	client *http.Client
	ownsRT bool
	cache  *lru.Cache[string, time.Time] // key → time of the origin's last yes
	group  singleflight.Group
	// epoch counts Forget calls. A check caches its answer only if no
	// Forget happened while it ran, and requests join only checks started
	// in their own epoch: neither can bring back a forgotten answer.
	epoch atomic.Uint64

	// base is the parent of every check's context; Close cancels it.
	base   context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // running checks
}

// New returns an Authorizer for cfg.
func New(cfg Config) (*Authorizer, error) {
	if cfg.CacheSize < 0 {
		return nil, fmt.Errorf("auth: cache size %d is negative", cfg.CacheSize)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("auth: timeout %s is negative", cfg.Timeout)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.StaleTTL == 0 {
		cfg.StaleTTL = DefaultStaleTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cache, err := lru.New[string, time.Time](cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("auth: cache: %w", err)
	}
	a := &Authorizer{cfg: cfg, cache: cache}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DisableCompression = true
		rt, a.ownsRT = t, true
	}
	a.client = &http.Client{
		Transport: rt,
		// A redirect (to blob storage) means the origin accepted the
		// credential; following it would test the storage, not the
		// registry's access control.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	a.base, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// key is the cache and singleflight key of one check. The credential is
// hashed so that no secret is kept in memory longer than a request.
func key(ref blob.Ref) string {
	sum := sha256.Sum256([]byte(ref.Authorization))
	return hex.EncodeToString(sum[:]) + "\x00" + ref.Upstream + "\x00" + ref.Repository + "\x00" + string(ref.Digest)
}

// Authorize returns nil when the origin lets ref.Authorization read the
// blob (and, for an upstream that is not trusted, Vouch confirmed it).
// Otherwise it returns the origin's refusal as a *blob.OriginError, or an
// error wrapping ErrUnavailable, ErrUntrusted, ErrClosed or Vouch's error.
// Error texts name no origin answer beyond its status: callers may show
// them to clients.
//
// The check runs detached from ctx, so that a client that goes away does
// not fail the others waiting for the same answer; ctx bounds only the
// wait.
func (a *Authorizer) Authorize(ctx context.Context, ref blob.Ref) error {
	k := key(ref)
	lastYes, known := a.cache.Get(k)
	if known && time.Since(lastYes) < a.cfg.TTL {
		return nil
	}
	epoch := a.epoch.Load()
	ch := a.group.DoChan(k+"\x00"+strconv.FormatUint(epoch, 10), func() (any, error) {
		err := a.check(ref)
		var oe *blob.OriginError
		switch {
		case err == nil && (a.cfg.TTL > 0 || a.cfg.StaleTTL > 0):
			a.mu.Lock()
			if a.epoch.Load() == epoch {
				a.cache.Add(k, time.Now())
			}
			a.mu.Unlock()
		case errors.As(err, &oe):
			// A no from an origin that answers ends the old yes too: a
			// later outage must not bring it back.
			a.cache.Remove(k)
		}
		return nil, err
	})
	select {
	case <-ctx.Done():
		return fmt.Errorf("auth: waiting for the origin's answer: %w", ctx.Err())
	case res := <-ch:
		if errors.Is(res.Err, ErrUnavailable) && known && time.Since(lastYes) < a.cfg.StaleTTL {
			// Forget may have dropped it meanwhile.
			if t, ok := a.cache.Peek(k); ok && t.Equal(lastYes) {
				a.cfg.Logger.WarnContext(ctx, "origin unreachable: reading on its last yes",
					"upstream", ref.Upstream, "repository", ref.Repository, "digest", string(ref.Digest),
					"age", time.Since(lastYes).Round(time.Second), "error", res.Err)
				return nil
			}
		}
		return res.Err
	}
}

// Forget drops the cached answers, for every credential, about the blob
// dgst in repository at upstream: after a delete, the next read asks the
// origin again.
func (a *Authorizer) Forget(upstream, repository string, dgst digest.Digest) {
	suffix := "\x00" + upstream + "\x00" + repository + "\x00" + string(dgst)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.epoch.Add(1)
	for _, k := range a.cache.Keys() {
		if strings.HasSuffix(k, suffix) {
			a.cache.Remove(k)
		}
	}
}

// slowAnswer is how long the origin may take to answer a check before the
// wait is logged as a warning.
const slowAnswer = 2 * time.Second

// check asks the origin, then Vouch for an upstream that is not trusted.
func (a *Authorizer) check(ref blob.Ref) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.wg.Add(1)
	a.mu.Unlock()
	defer a.wg.Done()

	ctx, cancel := context.WithTimeout(a.base, a.cfg.Timeout)
	defer cancel()
	start := time.Now()
	err := a.head(ctx, ref)
	if took := time.Since(start); took > slowAnswer {
		// Every pull of the blob waits for this answer.
		a.cfg.Logger.Warn("origin slow to answer whether a client may read a blob",
			"upstream", ref.Upstream, "repository", ref.Repository, "digest", string(ref.Digest),
			"took", took.Round(time.Millisecond), "error", err)
	}
	if err != nil {
		return err
	}
	if a.cfg.Trusted == nil || a.cfg.Trusted(ref.Upstream) {
		return nil
	}
	if a.cfg.Vouch == nil {
		return ErrUntrusted
	}
	if err := a.cfg.Vouch(ctx, ref); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrUntrusted, ctx.Err())
		}
		return err
	}
	return nil
}

// head HEADs the blob at the origin with the client's credentials.
func (a *Authorizer) head(ctx context.Context, ref blob.Ref) error {
	u, err := url.Parse(ref.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: upstream %q is not an http(s) base URL", ErrUnavailable, ref.Upstream)
	}
	u = &url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/v2/" + ref.Repository + "/blobs/" + string(ref.Digest)}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if ref.Authorization != "" {
		req.Header.Set("Authorization", ref.Authorization)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		// The network error stays out of the message: it would tell a
		// client which hosts and ports answer behind this one.
		return fmt.Errorf("%w: %s did not answer", ErrUnavailable, u.Host)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch refusal := blob.Refusal(resp); {
	case resp.StatusCode >= 200 && resp.StatusCode < 400:
		return nil
	case refusal != nil:
		return refusal
	default:
		return fmt.Errorf("%w: %s answered %d", ErrUnavailable, u.Host, resp.StatusCode)
	}
}

// Close cancels running checks, waits for them to end and releases idle
// connections of a transport New made.
func (a *Authorizer) Close() error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
	if a.ownsRT {
		a.client.Transport.(*http.Transport).CloseIdleConnections()
	}
	return nil
}
