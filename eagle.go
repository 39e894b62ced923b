package eagle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/proxy"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
	"github.com/eagle-p2p/eagle/storage/lru"
)

// Config configures a Node. The zero value is not usable: DataDir,
// Seeders (or MetaInfo), P2P.Trackers and TLS (or TLS.Insecure) are
// required. Validate applies the defaults.
type Config struct {
	// DataDir holds the node's blob cache (DataDir/blobs, unless Store is
	// set) and its partial downloads and metainfo (DataDir/p2p). Required.
	DataDir string `yaml:"data_dir"`
	// Seeders are the gRPC addresses (host:port, or a DNS name standing
	// for every address it resolves to) of the seeders. Required unless
	// MetaInfo is set.
	Seeders []string `yaml:"seeders"`
	// MetaInfo, when set, is where the node gets metainfo instead of
	// seeders over gRPC: a seeder in this process (*seeder.Seeder, or
	// *seeder.Server), which answers directly, authorizing every call
	// with the caller's credentials as over gRPC. Seeders must then be
	// empty: the node asks that seeder for every blob, so it should be
	// the cluster's only seeder, or blobs other nodes ask other seeders
	// for may be fetched from the origin more than once. A MetaInfo that
	// is also a p2p.PeerSource gives the seeder's peer address with each
	// answer, so the node reaches the seeder's copy without a tracker.
	MetaInfo p2p.MetaInfoSource `yaml:"-"`
	// Store is where the node keeps blobs: any storage.Store. It stays the
	// caller's: close it after the Node. Nil: the filesystem store at
	// DataDir/blobs, which the Node owns and closes. Either way the node
	// keeps it within CacheSize.
	Store storage.Store `yaml:"-"`
	// CacheSize bounds the bytes of blobs the node keeps (in its store, plus
	// downloads in progress); the least recently used blobs not in use are
	// evicted, before a download starts, to stay within it. A blob larger
	// than the whole cache is refused (the runtime then pulls it from the
	// origin). Default 100GiB.
	CacheSize storage.Size `yaml:"cache_size"`
	// P2P configures the peer. Its DataDir defaults to DataDir/p2p.
	P2P p2p.Config `yaml:"p2p"`
	// Proxy configures the registry endpoint the runtime talks to.
	Proxy proxy.Config `yaml:"proxy"`
	// TLS is the node's cluster membership: mutual TLS with certificates
	// from the cluster CA on its internal planes (the seeders' gRPC, the
	// peer wire, the trackers). Required: the three files, or an explicit
	// Insecure. P2P.TLS defaults to it.
	TLS mtls.Config `yaml:"tls"`
	// Logger receives the node's logs. Nil discards them (the eagle
	// binary passes a JSON logger).
	Logger *slog.Logger `yaml:"-"`
	// Metrics is where the node's proxy and engine register their
	// Prometheus metrics (eagle_proxy_*, eagle_p2p_*), unless P2P.Metrics
	// or Proxy.Metrics name another registerer. Nil: no metrics.
	Metrics prometheus.Registerer `yaml:"-"`
}

// DefaultCacheSize is a node's cache size when Config.CacheSize is zero.
const DefaultCacheSize = 100 << 30

// ErrInvalidConfig reports a Config that Validate rejected; NewNode's
// errors about its Config wrap it (or the sentinel of the part the key
// belongs to: proxy.ErrInvalidConfig, p2p.ErrInvalidConfig).
var ErrInvalidConfig = errors.New("eagle: invalid config")

// WithDefaults returns a copy of c with its defaults applied, the one
// place they are: CacheSize, a Logger that discards, and what the parts
// take from the node unless set on them: P2P.DataDir (DataDir/p2p),
// P2P.TLS (TLS), the parts' Loggers and Metrics, and P2P.SkipAuthorization
// when Proxy.AuthorizeBlobs is false (the proxy's key is the switch, by
// name). NewNode applies it.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.P2P.DataDir == "" && c.DataDir != "" {
		c.P2P.DataDir = filepath.Join(c.DataDir, "p2p")
	}
	if c.TLS.Logger == nil {
		c.TLS.Logger = c.Logger
	}
	if c.P2P.TLS == (mtls.Config{}) {
		c.P2P.TLS = c.TLS
	}
	if c.P2P.Logger == nil {
		c.P2P.Logger = c.Logger
	}
	if c.Proxy.Logger == nil {
		c.Proxy.Logger = c.Logger
	}
	if c.P2P.Metrics == nil {
		c.P2P.Metrics = c.Metrics
	}
	if c.Proxy.Metrics == nil {
		c.Proxy.Metrics = c.Metrics
	}
	if !c.Proxy.AuthorizeBlobsEnabled() {
		c.P2P.SkipAuthorization = true
	}
	return c
}

// Validate reports the first problem of c, defaults applied, naming its
// key. It changes nothing.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.DataDir == "" {
		return fmt.Errorf("%w: data_dir is required", ErrInvalidConfig)
	}
	switch {
	case len(c.Seeders) == 0 && c.MetaInfo == nil:
		return fmt.Errorf("%w: seeders: at least one seeder address is required (or, in code, a MetaInfo source)", ErrInvalidConfig)
	case len(c.Seeders) > 0 && c.MetaInfo != nil:
		return fmt.Errorf("%w: seeders and MetaInfo are both set: give the node one metainfo source", ErrInvalidConfig)
	}
	if c.CacheSize < 0 {
		return fmt.Errorf("%w: cache_size %d is negative", ErrInvalidConfig, c.CacheSize)
	}
	if err := c.Proxy.Validate(); err != nil {
		return fmt.Errorf("eagle: %w", err)
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := c.P2P.Validate(); err != nil {
		return fmt.Errorf("eagle: %w", err)
	}
	return nil
}

// Node is one Eagle node: a registry proxy in front of a p2p engine. It is
// an http.Handler; serve it where the container runtime expects a registry
// mirror.
type Node struct {
	// Engine is the node's peer, for callers that fetch blobs directly.
	// Its Fetch and Stat ask the node's Authorizer first, as the proxy
	// does.
	Engine  *p2p.Engine
	handler *proxy.Handler
	seeders *seeder.Client   // nil when Config.MetaInfo is set
	auth    *auth.Authorizer // nil when blobs are not authorized
	// ownStore is the store NewNode made (nil when Config.Store was given).
	ownStore io.Closer
}

// NewNode is NewNodeContext with context.Background(): building the node
// is not cancelled.
func NewNode(cfg Config) (*Node, error) {
	return NewNodeContext(context.Background(), cfg)
}

// NewNodeContext starts a node. ctx bounds building it (indexing the blobs
// the store already holds, which may take a while on a large store), not
// the node's life, which lasts until Close.
//
// Its proxy and engine share one Authorizer: a blob read is checked at
// the origin with the client's credentials, once per auth_cache_ttl, and
// a blob at an upstream the proxy has not configured (allow_any_upstream)
// is served only when a seeder vouches that this very upstream served its
// bytes to Eagle.
func NewNodeContext(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	n := &Node{}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	store := cfg.Store
	if store == nil {
		fs, err := filesystem.New(filepath.Join(cfg.DataDir, "blobs"))
		if err != nil {
			return nil, fmt.Errorf("eagle: %w", err)
		}
		n.ownStore, store = fs, fs
	}
	cache, err := lru.New(ctx, store, cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("eagle: %w", err)
	}
	src := cfg.MetaInfo
	if src == nil {
		creds, err := mtls.Load(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("eagle: %w", err)
		}
		n.seeders, err = seeder.NewClient(seeder.ClientConfig{Seeders: cfg.Seeders, Credentials: creds, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("eagle: %w", err)
		}
		src = n.seeders
	}
	if !cfg.P2P.SkipAuthorization && cfg.P2P.Authorizer == nil {
		trusted, err := cfg.Proxy.Trusted()
		if err != nil {
			return nil, fmt.Errorf("eagle: proxy: %w", err)
		}
		n.auth, err = auth.New(auth.Config{
			Transport: cfg.Proxy.Transport,
			TTL:       cfg.Proxy.AuthCacheTTL,
			CacheSize: cfg.Proxy.AuthCacheSize,
			Timeout:   cfg.Proxy.AuthTimeout,
			StaleTTL:  cfg.Proxy.StaleAuthTTL,
			Trusted:   trusted,
			Logger:    cfg.Logger,
			Vouch: func(ctx context.Context, ref blob.Ref) error {
				_, err := src.MetaInfo(ctx, ref)
				return err
			},
		})
		if err != nil {
			return nil, fmt.Errorf("eagle: %w", err)
		}
		cfg.P2P.Authorizer = n.auth
		if cfg.Proxy.Authorizer == nil {
			cfg.Proxy.Authorizer = n.auth
		}
	}
	n.Engine, err = p2p.New(cfg.P2P, cache, src)
	if err != nil {
		return nil, fmt.Errorf("eagle: %w", err)
	}
	n.handler, err = proxy.New(cfg.Proxy, n.Engine)
	if err != nil {
		return nil, fmt.Errorf("eagle: %w", err)
	}
	return n, nil
}

// ServeHTTP serves the registry v2 API.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) { n.handler.ServeHTTP(w, r) }

// Middleware mounts the node in front of an embedder's own handler, a
// registry gateway's router say: blob GETs and HEADs are the node's,
// authorized at the origin and served from its cache or the swarm;
// everything else (manifests, uploads, the gateway's own routes) goes to
// next unchanged. See proxy.Handler.Middleware. Close the node after the
// server serving the returned handler has shut down.
func (n *Node) Middleware(next http.Handler) http.Handler { return n.handler.Middleware(next) }

// Close stops the node and releases everything it holds.
func (n *Node) Close() error {
	var errs []error
	if n.handler != nil {
		errs = append(errs, n.handler.Close())
	}
	if n.Engine != nil {
		errs = append(errs, n.Engine.Close())
	}
	if n.auth != nil {
		errs = append(errs, n.auth.Close())
	}
	if n.seeders != nil {
		errs = append(errs, n.seeders.Close())
	}
	if n.ownStore != nil {
		errs = append(errs, n.ownStore.Close())
	}
	return errors.Join(errs...)
}
