package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/eagle-p2p/eagle/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by New to zero-valued Config fields.
const (
	// DefaultAuthCacheTTL is how long a positive authorization answer from
	// an origin is reused for the same credential, repository and digest.
	DefaultAuthCacheTTL = 60 * time.Second
	// DefaultAuthCacheSize is the number of positive authorization answers
	// kept at most.
	DefaultAuthCacheSize = 4096
	// DefaultAuthTimeout bounds one authorization request to the origin.
	DefaultAuthTimeout = 30 * time.Second
	// DefaultFirstByteTimeout is how long a blob GET may wait for its first
	// verified byte once the node's download has started. A healthy swarm
	// delivers one in well under a second: a peer list from the tracker,
	// a TLS connection, one piece at the node's link rate; 5 s leaves room
	// for several tracker rounds and a slow link, and is short against
	// the minutes a runtime waits before it gives up on a mirror that
	// sends nothing.
	DefaultFirstByteTimeout = 5 * time.Second
	// DefaultStallTimeout is how long a blob stream may go without a byte
	// before it is cut, so that the runtime retries elsewhere.
	DefaultStallTimeout = 15 * time.Second
	// DefaultStaleAuthTTL is how long, while the origin cannot be reached,
	// a client keeps reading the blobs the origin last confirmed for it.
	DefaultStaleAuthTTL = auth.DefaultStaleTTL
)

// Fallback modes.
const (
	// FallbackNone answers 503 when the swarm cannot serve a blob, so that
	// the runtime falls back to its next host (usually the origin).
	FallbackNone = "none"
	// FallbackOrigin makes the node fetch the blob from the origin itself
	// (streamed, verified, cached) when the swarm cannot serve it.
	FallbackOrigin = "origin"
)

// dockerHubURL is where every Docker Hub alias points.
const dockerHubURL = "https://registry-1.docker.io"

// dockerHubAliases are the host names that all mean Docker Hub's registry.
var dockerHubAliases = map[string]bool{
	"docker.io":            true,
	"index.docker.io":      true,
	"registry-1.docker.io": true,
}

// anchoredDomain matches a registry host with an optional port, using the
// distribution reference grammar (which also admits bracketed IPv6).
var anchoredDomain = regexp.MustCompile(`^(?:` + reference.DomainRegexp.String() + `)$`)

// ErrInvalidConfig reports a Config that Validate rejected.
var ErrInvalidConfig = errors.New("proxy: invalid config")

// Config configures a Handler. The zero value is not usable: at least one
// upstream (DefaultUpstream, Upstreams or AllowAnyUpstream) is required,
// for Handler.Middleware too. There the requests handed to the embedder's
// handler never reach an upstream, but every blob read names one: the
// BlobSource fetches the blob from it and the authorization asks it.
type Config struct {
	// DefaultUpstream is the base URL of the registry used when a request
	// carries no ?ns= parameter (skopeo, docker, a plain client), e.g.
	// "http://127.0.0.1:5000". A value without a scheme means https.
	// "docker.io", "index.docker.io" and "registry-1.docker.io" all mean
	// https://registry-1.docker.io. Empty: requests without ?ns= get 502.
	DefaultUpstream string `yaml:"default_upstream"`

	// Upstreams are further registry base URLs. containerd, with this proxy
	// configured as a mirror in hosts.toml, names the registry it wants in
	// ?ns=<host[:port]>; the upstream whose host matches is used.
	// DefaultUpstream is matched the same way.
	Upstreams []string `yaml:"upstreams"`

	// AllowAnyUpstream makes a ?ns= host that matches no configured
	// upstream mean https://<ns>. Default false: an unknown ns gets 502,
	// and containerd then falls back to its next host (usually the origin).
	// Turning it on lets any client make this proxy contact any host.
	AllowAnyUpstream bool `yaml:"allow_any_upstream"`

	// AuthorizeBlobs makes the proxy check, before serving a blob, that the
	// origin lets the requesting client read it (a HEAD with the client's
	// own Authorization header). nil means true. Turn it off only when every
	// client may read every blob this node could cache, or when the
	// BlobSource asks the same check itself before it hands out anything
	// (as eagle.Node's Engine does), so that a read is not checked twice.
	AuthorizeBlobs *bool `yaml:"authorize_blobs"`

	// Authorizer decides whether a client may read a blob. Nil: New builds
	// an *auth.Authorizer from AuthCacheTTL, AuthCacheSize and AuthTimeout
	// over Transport that trusts the configured upstreams, so that a blob
	// at an upstream only AllowAnyUpstream admits is refused (a registry
	// the operator did not configure proves nothing by answering yes).
	// eagle.Node passes one that asks a seeder to vouch for those. Share
	// one Authorizer between the proxy and the engine serving it, so that
	// a read is checked at the origin once.
	Authorizer Authorizer `yaml:"-"`

	// AuthCacheTTL is how long a positive authorization answer is reused.
	// Zero means DefaultAuthCacheTTL; negative disables the cache.
	AuthCacheTTL time.Duration `yaml:"auth_cache_ttl"`

	// AuthCacheSize bounds the number of cached authorization answers.
	// Zero means DefaultAuthCacheSize.
	AuthCacheSize int `yaml:"auth_cache_size"`

	// AuthTimeout bounds one authorization request to the origin.
	// Zero means DefaultAuthTimeout.
	AuthTimeout time.Duration `yaml:"auth_timeout"`

	// StaleAuthTTL is how long a client whose access the origin confirmed
	// keeps reading that blob while the origin cannot be reached (a
	// network error or a 5xx; a refusal always counts). Zero means
	// DefaultStaleAuthTTL; negative: never past AuthCacheTTL. See
	// SECURITY.md for the trade-off.
	StaleAuthTTL time.Duration `yaml:"stale_auth_ttl"`

	// FirstByteTimeout bounds the wait for a blob GET's first verified
	// byte, counted from when the node's download started (a cold blob
	// first waits for a seeder to fetch it from the origin, bounded by
	// the seeder's own timeouts). Past it the client gets 503 before any
	// status line, and a runtime falls back to its next host. Zero means
	// DefaultFirstByteTimeout; negative: no limit.
	FirstByteTimeout time.Duration `yaml:"first_byte_timeout"`

	// StallTimeout cuts a blob stream that sends nothing for this long
	// mid-way. Zero means DefaultStallTimeout; negative: no limit.
	StallTimeout time.Duration `yaml:"stall_timeout"`

	// Fallback says what the node does when the swarm cannot serve a blob
	// (no seeder reachable, no verified byte within FirstByteTimeout):
	// "none" (the default) answers 503, "origin" fetches it from the
	// origin itself, streamed, verified and cached, as the runtime would.
	// A Range request is answered 503 either way.
	Fallback string `yaml:"fallback"`

	// TrustForwardedHeaders keeps the client's X-Forwarded-For/-Host/-Proto
	// headers (appending to X-Forwarded-For) instead of replacing them.
	// Turn it on only behind a load balancer that sets them. Default false.
	TrustForwardedHeaders bool `yaml:"trust_forwarded_headers"`

	// Transport carries requests to the upstreams. Default: a clone of
	// http.DefaultTransport with transparent compression turned off, whose
	// idle connections Handler.Close releases.
	Transport http.RoundTripper `yaml:"-"`

	// Metrics is where the Handler registers its Prometheus metrics
	// (eagle_proxy_*); Close unregisters them. Nil: no metrics.
	Metrics prometheus.Registerer `yaml:"-"`
	// Logger receives the Handler's logs: one line per request (info),
	// and a warning for every decision a client would want explained (a
	// 503 for want of a byte, a fallback, an origin that cannot be
	// asked). Nil discards them.
	Logger *slog.Logger `yaml:"-"`
}

// WithDefaults returns a copy of c with every zero field that has a
// default set to it; New applies it. Validate does not need it: a zero
// field is valid.
func (c Config) WithDefaults() Config {
	if c.AuthCacheTTL == 0 {
		c.AuthCacheTTL = DefaultAuthCacheTTL
	}
	if c.AuthCacheSize == 0 {
		c.AuthCacheSize = DefaultAuthCacheSize
	}
	if c.AuthTimeout == 0 {
		c.AuthTimeout = DefaultAuthTimeout
	}
	if c.FirstByteTimeout == 0 {
		c.FirstByteTimeout = DefaultFirstByteTimeout
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.Fallback == "" {
		c.Fallback = FallbackNone
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// AuthorizeBlobsEnabled reports the effective AuthorizeBlobs setting.
func (c Config) AuthorizeBlobsEnabled() bool {
	return c.AuthorizeBlobs == nil || *c.AuthorizeBlobs
}

// Validate reports whether the Config is usable. It does not apply
// defaults; New does. It requires an upstream whichever way the Handler
// is served (see Config).
func (c Config) Validate() error {
	if c.DefaultUpstream == "" && len(c.Upstreams) == 0 && !c.AllowAnyUpstream {
		return fmt.Errorf("%w: no upstream: set default_upstream, upstreams or allow_any_upstream", ErrInvalidConfig)
	}
	if _, err := c.upstreams(); err != nil {
		return err
	}
	if c.AuthCacheSize < 0 {
		return fmt.Errorf("%w: auth_cache_size %d is negative", ErrInvalidConfig, c.AuthCacheSize)
	}
	if c.AuthTimeout < 0 {
		return fmt.Errorf("%w: auth_timeout %s is negative", ErrInvalidConfig, c.AuthTimeout)
	}
	switch c.Fallback {
	case "", FallbackNone, FallbackOrigin:
	default:
		return fmt.Errorf("%w: fallback %q: want %q or %q", ErrInvalidConfig, c.Fallback, FallbackNone, FallbackOrigin)
	}
	return nil
}

// upstreamSet is the parsed upstream configuration.
type upstreamSet struct {
	def    *url.URL            // nil when no DefaultUpstream
	byHost map[string]*url.URL // lower-case host[:port] → base URL
	any    bool
}

// trusted reports whether upstream (a base URL) is one of the configured
// upstreams, as opposed to one only AllowAnyUpstream admits.
func (s *upstreamSet) trusted(upstream string) bool {
	u, err := url.Parse(upstream)
	if err != nil {
		return false
	}
	c, ok := s.byHost[strings.ToLower(u.Host)]
	return ok && c.Scheme == u.Scheme
}

// Trusted returns a func that reports whether an upstream base URL is one
// the Config names (DefaultUpstream or Upstreams), for an Authorizer's
// Config.Trusted: upstreams only AllowAnyUpstream admits are not.
func (c Config) Trusted() (func(upstream string) bool, error) {
	s, err := c.upstreams()
	if err != nil {
		return nil, err
	}
	return s.trusted, nil
}

// upstreams parses DefaultUpstream and Upstreams.
func (c Config) upstreams() (*upstreamSet, error) {
	s := &upstreamSet{byHost: make(map[string]*url.URL), any: c.AllowAnyUpstream}
	add := func(field, raw string) (*url.URL, error) {
		u, err := parseUpstream(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, field, err)
		}
		if prev, ok := s.byHost[u.Host]; ok && prev.Scheme != u.Scheme {
			return nil, fmt.Errorf("%w: %s: host %s is configured as both %s and %s",
				ErrInvalidConfig, field, u.Host, prev, u)
		}
		s.byHost[u.Host] = u
		return u, nil
	}
	if c.DefaultUpstream != "" {
		u, err := add("default_upstream", c.DefaultUpstream)
		if err != nil {
			return nil, err
		}
		s.def = u
	}
	for i, raw := range c.Upstreams {
		if _, err := add(fmt.Sprintf("upstreams[%d]", i), raw); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// parseUpstream turns a configured upstream into a base URL with only a
// scheme and a lower-case host.
func parseUpstream(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("empty upstream")
	}
	if dockerHubAliases[strings.ToLower(raw)] {
		return url.Parse(dockerHubURL)
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream %q: scheme must be http or https", raw)
	}
	if u.Host == "" || !anchoredDomain.MatchString(u.Host) {
		return nil, fmt.Errorf("upstream %q: invalid host", raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("upstream %q: only scheme://host[:port] is allowed", raw)
	}
	host := strings.ToLower(u.Host)
	if dockerHubAliases[host] {
		return url.Parse(dockerHubURL)
	}
	return &url.URL{Scheme: u.Scheme, Host: host}, nil
}

// errUnknownUpstream reports an ?ns= host that is not configured.
var errUnknownUpstream = errors.New("upstream not configured")

// resolve picks the upstream for a request's ?ns= value ("" when absent).
func (s *upstreamSet) resolve(ns string) (*url.URL, error) {
	if ns == "" {
		if s.def == nil {
			return nil, fmt.Errorf("%w: request has no ns parameter and no default upstream is set", errUnknownUpstream)
		}
		return s.def, nil
	}
	if len(ns) > 255 || !anchoredDomain.MatchString(ns) {
		return nil, fmt.Errorf("%w: malformed ns %q", errUnknownUpstream, truncate(ns, 64))
	}
	host := strings.ToLower(ns)
	if dockerHubAliases[host] {
		host = "registry-1.docker.io"
	}
	if u, ok := s.byHost[host]; ok {
		return u, nil
	}
	if s.any {
		return &url.URL{Scheme: "https", Host: host}, nil
	}
	return nil, fmt.Errorf("%w: %q", errUnknownUpstream, ns)
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
