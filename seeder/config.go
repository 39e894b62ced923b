package seeder

import (
	"errors"
	"fmt"
	"github.com/eagle-p2p/eagle/p2p"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero values of Config fields.
const (
	DefaultOriginTimeout        = 30 * time.Second
	DefaultMaxConcurrentFetches = 16
	DefaultMetaInfoCacheSize    = 10000
)

// Config configures a Server. The zero value is valid and means "all
// defaults"; the example binaries load it from YAML.
type Config struct {
	// AllowedUpstreams lists the origin registries the seeder may fetch
	// from, as "host" (any port) or "host:port", compared case-insensitively
	// with the host of a request's upstream URL. Empty allows any upstream:
	// then anyone who can reach the seeder's gRPC port can make it send HTTP
	// requests (carrying the Authorization value they choose) to any host it
	// can reach, including internal services, and fill its disk. Set it in
	// production.
	AllowedUpstreams []string `yaml:"allowed_upstreams"`

	// OriginTimeout bounds connecting to an origin (TCP and TLS) and waiting
	// for its response headers. It does not bound reading the body: a large
	// blob may take as long as it takes. Default 30s.
	OriginTimeout time.Duration `yaml:"origin_timeout"`

	// MaxConcurrentFetches caps how many blobs are fetched from origins at
	// once; further cold requests wait (they do not fail). Default 16.
	MaxConcurrentFetches int `yaml:"max_concurrent_fetches"`

	// MetaInfoCacheSize is how many blobs' metainfo is kept in memory (LRU).
	// A metainfo is about 20 bytes per piece, at most ~20 KiB for blobs up to
	// 1 GiB (up to 80 KiB for 64 GiB blobs). A miss costs re-reading the blob
	// from the store, not an origin fetch. Default 10000.
	MetaInfoCacheSize int `yaml:"metainfo_cache_size"`

	// OriginLimit caps the bytes per second the seeder reads from origins,
	// over all fetches together ("200MiB/s", "1Gbit/s"). It is separate
	// from the peer-wire limits. Default 0: unlimited.
	OriginLimit p2p.Rate `yaml:"origin_limit"`

	// Metrics is where the Server registers its Prometheus metrics
	// (eagle_seeder_*); Close unregisters them. Nil: no metrics.
	Metrics prometheus.Registerer `yaml:"-"`
}

// Validate reports the first invalid field. Zero values are valid (they
// select the defaults).
func (c Config) Validate() error {
	var errs []error
	for i, h := range c.AllowedUpstreams {
		if err := validateAllowedHost(h); err != nil {
			errs = append(errs, fmt.Errorf("allowed_upstreams[%d] %q: %w", i, h, err))
		}
	}
	if c.OriginTimeout < 0 {
		errs = append(errs, fmt.Errorf("origin_timeout %v is negative", c.OriginTimeout))
	}
	if c.MaxConcurrentFetches < 0 {
		errs = append(errs, fmt.Errorf("max_concurrent_fetches %d is negative", c.MaxConcurrentFetches))
	}
	if c.MetaInfoCacheSize < 0 {
		errs = append(errs, fmt.Errorf("metainfo_cache_size %d is negative", c.MetaInfoCacheSize))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("seeder: invalid config: %w", err)
	}
	return nil
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.OriginTimeout == 0 {
		c.OriginTimeout = DefaultOriginTimeout
	}
	if c.MaxConcurrentFetches == 0 {
		c.MaxConcurrentFetches = DefaultMaxConcurrentFetches
	}
	if c.MetaInfoCacheSize == 0 {
		c.MetaInfoCacheSize = DefaultMetaInfoCacheSize
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
// of the allowed entries. An empty list allows everything.
func allowed(list []string, host, hostname string) bool {
	if len(list) == 0 {
		return true
	}
	for _, a := range list {
		if strings.EqualFold(a, host) || strings.EqualFold(a, hostname) {
			return true
		}
	}
	return false
}
