package seeder

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/internal/netguard"
	"github.com/eagle-p2p/eagle/p2p"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero values of Config fields.
const (
	DefaultOriginTimeout        = 30 * time.Second
	DefaultOriginIdleTimeout    = 30 * time.Second
	DefaultMaxConcurrentFetches = 16
	DefaultMetaInfoCacheSize    = 10000
	DefaultAuthCacheTTL         = auth.DefaultTTL
	DefaultAuthTimeout          = auth.DefaultTimeout
	// DefaultStreamFanout is Config.StreamFanout's default: cut-through
	// to the first caller of each origin fetch.
	DefaultStreamFanout = 1
)

// ErrInvalidConfig reports a Config that Validate rejected.
var ErrInvalidConfig = errors.New("seeder: invalid config")

// Config configures a Server. AllowedUpstreams (or an explicit
// AllowAnyUpstream) is required; every other zero field means its
// default. The example binaries load it from YAML.
type Config struct {
	// AllowedUpstreams lists the origin registries the seeder may fetch
	// from, as "host" (any port) or "host:port", compared case-insensitively
	// with the host of a request's upstream URL. They are trusted: their
	// answer to whether a client may read a blob counts whoever served the
	// blob's bytes, and they are reached whatever their address. Required
	// unless AllowAnyUpstream is set.
	AllowedUpstreams []string `yaml:"allowed_upstreams"`

	// AllowAnyUpstream lets clients name registries beyond
	// AllowedUpstreams. Those are not trusted: they are reached only at
	// public addresses (or RedirectHosts), and a blob is handed out for one
	// only after this seeder fetched the blob's bytes from it and they
	// verified — a registry that answers yes to every HEAD proves nothing.
	// Default false.
	AllowAnyUpstream bool `yaml:"allow_any_upstream"`

	// RedirectHosts lists the hosts an origin may redirect blob GETs to
	// (its storage or CDN) even at a non-public address: "host",
	// "host:port", "*.example.com". A redirect to any other host is
	// followed only when the host's address is public — never to loopback,
	// private, link-local or metadata addresses. Hosts of the HTTP(S)_PROXY
	// environment variables are reachable too.
	RedirectHosts []string `yaml:"redirect_hosts"`

	// OriginCA is the path of a PEM bundle of certificate authorities
	// trusted for origins (and their storage) beyond the system's: a
	// registry with a private CA. Empty: the system's roots only.
	OriginCA string `yaml:"origin_ca"`

	// OriginTimeout bounds connecting to an origin (TCP and TLS) and waiting
	// for its response headers. It does not bound reading the body: a large
	// blob may take as long as it takes (see OriginIdleTimeout). Default 30s.
	OriginTimeout time.Duration `yaml:"origin_timeout"`

	// OriginIdleTimeout cuts an origin body that sends nothing for this
	// long. Default 30s.
	OriginIdleTimeout time.Duration `yaml:"origin_idle_timeout"`

	// MaxConcurrentFetches caps how many blobs are fetched from origins at
	// once; further cold requests wait (they do not fail). Default 16.
	MaxConcurrentFetches int `yaml:"max_concurrent_fetches"`

	// MaxFetchesPerCaller caps the origin fetches one caller (a cluster
	// member by its certificate's name, or an address without mutual TLS)
	// can have started and not finished, so that one caller's slow origins
	// cannot hold every fetch slot. Its further cold requests wait. Joining
	// a fetch someone else started does not count. Default half of
	// MaxConcurrentFetches (at least 1).
	MaxFetchesPerCaller int `yaml:"max_fetches_per_caller"`

	// AuthCacheTTL is how long the origin's yes to "may this client read
	// this blob" is reused for the same credential, upstream, repository
	// and digest. Zero means 60s; negative asks the origin every time.
	AuthCacheTTL time.Duration `yaml:"auth_cache_ttl"`

	// AuthTimeout bounds one such check at the origin. Default 30s.
	AuthTimeout time.Duration `yaml:"auth_timeout"`

	// StaleAuthTTL is how long a caller whose access the origin confirmed
	// keeps getting that blob's metainfo while the origin cannot be
	// reached (a refusal always counts). Zero means 1h; negative: never
	// past AuthCacheTTL. See SECURITY.md.
	StaleAuthTTL time.Duration `yaml:"stale_auth_ttl"`

	// MetaInfoCacheSize is how many blobs' metainfo is kept in memory (LRU).
	// A metainfo is about 20 bytes per piece, at most ~20 KiB for blobs up to
	// 1 GiB (up to 80 KiB for 64 GiB blobs). A miss costs re-reading the blob
	// from the store, not an origin fetch. Default 10000.
	MetaInfoCacheSize int `yaml:"metainfo_cache_size"`

	// OriginLimit caps the bytes per second the seeder reads from origins,
	// over all fetches together ("200MiB/s", "1Gbit/s"). It is separate
	// from the peer-wire limits. Default 0: unlimited.
	OriginLimit p2p.Rate `yaml:"origin_limit"`

	// StreamFanout is cut-through: how many agents one origin fetch
	// streams to as its bytes arrive (StreamBlob), the first that ask
	// before the first byte. They serve the blob to their runtimes at the
	// origin's pace instead of waiting for the whole fetch; everyone else
	// waits for the metainfo and takes the blob from the swarm (or, with
	// StreamRelay, from the agent before it). Each stream is paced by the
	// seeder's upload limit and holds up to 32 MiB queued: raise the
	// fan-out only as far as the seeder's uplink carries that many times
	// an origin fetch. Zero means DefaultStreamFanout (1); negative turns
	// cut-through off (a cold pull waits for the whole origin fetch).
	StreamFanout int `yaml:"stream_fanout"`

	// StreamRelay chains the agents that ask for a cold blob after the
	// streamed ones: each gets the piece hashes here and the bytes from
	// the agent before it, which relays them as it verifies them (see
	// StreamBlob), instead of waiting for the whole fetch. A wave of
	// agents then gets a cold blob at about the origin's pace. Default
	// false: an agent in the chain that loses its link stalls those
	// behind it until they fall back to a swarm that starts cold, which
	// the failover tests showed to cost more than their bounds.
	StreamRelay bool `yaml:"stream_relay"`

	// Metrics is where the Server registers its Prometheus metrics
	// (eagle_seeder_*); Close unregisters them. Nil: no metrics.
	Metrics prometheus.Registerer `yaml:"-"`

	// Logger receives the Server's logs: each origin fetch, refusals and
	// failures at warn. Nil discards them.
	Logger *slog.Logger `yaml:"-"`

	// PeerAddr returns the address of the seeder's peer-wire (BitTorrent)
	// listener, the one its Seeding engine seeds from: with a *p2p.Engine,
	// its Addr method. Every answer carries it (see
	// GetMetaInfoResponse.peers), so an agent can reach the seeder's copy
	// without a tracker. A listener on all interfaces (":6881", "[::]:6881")
	// is advertised to each caller at the local IP address that caller
	// reached the gRPC service at, with the listener's port: the composer
	// need not know the pod's IP. Nil, or an address that is not an IP with
	// a non-zero port: answers carry no peers. It is called once per answer
	// and must be cheap.
	PeerAddr func() net.Addr `yaml:"-"`
}

// Validate reports every invalid field, naming its YAML key, in an error
// wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	if len(c.AllowedUpstreams) == 0 && !c.AllowAnyUpstream {
		errs = append(errs, errors.New("allowed_upstreams is empty: list the origin registries the seeder may fetch from, or set allow_any_upstream: true"))
	}
	for i, h := range c.AllowedUpstreams {
		if err := validateAllowedHost(h); err != nil {
			errs = append(errs, fmt.Errorf("allowed_upstreams[%d] %q: %w", i, h, err))
		}
	}
	if _, err := netguard.ParseHosts(c.RedirectHosts); err != nil {
		errs = append(errs, fmt.Errorf("redirect_hosts%w", err))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"origin_timeout", c.OriginTimeout}, {"origin_idle_timeout", c.OriginIdleTimeout}, {"auth_timeout", c.AuthTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.key, d.v))
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"max_concurrent_fetches", c.MaxConcurrentFetches}, {"max_fetches_per_caller", c.MaxFetchesPerCaller}, {"metainfo_cache_size", c.MetaInfoCacheSize}} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d is negative", n.key, n.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// WithDefaults returns a copy of c with every zero field that has a
// default set to it (see the fields); NewServer applies it.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.OriginTimeout == 0 {
		c.OriginTimeout = DefaultOriginTimeout
	}
	if c.OriginIdleTimeout == 0 {
		c.OriginIdleTimeout = DefaultOriginIdleTimeout
	}
	if c.MaxConcurrentFetches == 0 {
		c.MaxConcurrentFetches = DefaultMaxConcurrentFetches
	}
	if c.MaxFetchesPerCaller == 0 {
		c.MaxFetchesPerCaller = max(1, c.MaxConcurrentFetches/2)
	}
	if c.AuthCacheTTL == 0 {
		c.AuthCacheTTL = DefaultAuthCacheTTL
	}
	if c.AuthTimeout == 0 {
		c.AuthTimeout = DefaultAuthTimeout
	}
	if c.MetaInfoCacheSize == 0 {
		c.MetaInfoCacheSize = DefaultMetaInfoCacheSize
	}
	if c.StreamFanout == 0 {
		c.StreamFanout = DefaultStreamFanout
	}
	return c
}

// validateAllowedHost checks an AllowedUpstreams entry: a host name or IP
// literal with an optional port, and nothing else (no scheme, no path).
func validateAllowedHost(h string) error {
	if h == "" {
		return errors.New("empty")
	}
	if strings.ContainsAny(h, "/?#@ ") {
		return errors.New(`want "host" or "host:port", without scheme or path`)
	}
	host := h
	if strings.HasPrefix(h, "[") || strings.Count(h, ":") == 1 {
		hp, port, err := net.SplitHostPort(h)
		if err != nil {
			return err
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("bad port %q", port)
		}
		host = hp
	}
	if host == "" {
		return errors.New("empty host")
	}
	return nil
}

// allowed reports whether the upstream host (as in url.URL.Host) matches one
// of the allowed entries.
func allowed(list []string, host, hostname string) bool {
	for _, a := range list {
		if strings.EqualFold(a, host) || strings.EqualFold(a, hostname) {
			return true
		}
	}
	return false
}
