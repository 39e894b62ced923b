package eagle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/proxy"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
	"github.com/eagle-p2p/eagle/storage/lru"
)

// Config configures a Node. The zero value is not usable: DataDir,
// Trackers and Seeders are required.
type Config struct {
	// DataDir holds the node's blob cache (DataDir/blobs) and its partial
	// downloads and metainfo (DataDir/p2p). Required.
	DataDir string `yaml:"data_dir"`
	// Seeders are the gRPC addresses (host:port) of the seeders. Required.
	Seeders []string `yaml:"seeders"`
	// CacheSize bounds the bytes of blobs the node keeps (DataDir/blobs plus
	// downloads in progress); the least recently used blobs not in use are
	// evicted, before a download starts, to stay within it. A blob larger
	// than the whole cache is refused (the runtime then pulls it from the
	// origin). Default 100GiB.
	CacheSize storage.Size `yaml:"cache_size"`
	// P2P configures the peer. Its DataDir defaults to DataDir/p2p.
	P2P p2p.Config `yaml:"p2p"`
	// Proxy configures the registry endpoint the runtime talks to.
	Proxy proxy.Config `yaml:"proxy"`
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// Metrics is where the node's proxy and engine register their
	// Prometheus metrics (eagle_proxy_*, eagle_p2p_*), unless P2P.Metrics
	// or Proxy.Metrics name another registerer. Nil: no metrics.
	Metrics prometheus.Registerer `yaml:"-"`
}

// DefaultCacheSize is a node's cache size when Config.CacheSize is zero.
const DefaultCacheSize = 100 << 30

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("eagle: data_dir is required")
	}
	if len(c.Seeders) == 0 {
		return errors.New("eagle: seeders: at least one seeder address is required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.CacheSize < 0 {
		return fmt.Errorf("eagle: cache_size %d is negative", c.CacheSize)
	}
	if c.P2P.DataDir == "" {
		c.P2P.DataDir = filepath.Join(c.DataDir, "p2p")
	}
	if c.P2P.Logger == nil {
		c.P2P.Logger = c.Logger
	}
	if c.P2P.Metrics == nil {
		c.P2P.Metrics = c.Metrics
	}
	if c.Proxy.Metrics == nil {
		c.Proxy.Metrics = c.Metrics
	}
	if err := c.P2P.Validate(); err != nil {
		return fmt.Errorf("eagle: p2p: %w", err)
	}
	if err := c.Proxy.Validate(); err != nil {
		return fmt.Errorf("eagle: proxy: %w", err)
	}
	return nil
}

// Node is one Eagle node: a registry proxy in front of a p2p engine. It is
// an http.Handler; serve it where the container runtime expects a registry
// mirror.
type Node struct {
	// Engine is the node's peer, for callers that fetch blobs directly.
	Engine  *p2p.Engine
	handler *proxy.Handler
	seeders *seeder.Client
	store   *filesystem.Store
}

// NewNode starts a node. Close stops it.
func NewNode(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	store, err := filesystem.New(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		return nil, fmt.Errorf("eagle: %w", err)
	}
	cache, err := lru.New(context.Background(), store, cfg.CacheSize)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("eagle: %w", err)
	}
	seeders, err := seeder.NewClient(cfg.Seeders, seeder.WithLogger(cfg.Logger))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("eagle: %w", err)
	}
	engine, err := p2p.New(cfg.P2P, cache, seeders)
	if err != nil {
		seeders.Close()
		store.Close()
		return nil, fmt.Errorf("eagle: %w", err)
	}
	handler, err := proxy.New(cfg.Proxy, engine, cfg.Logger)
	if err != nil {
		engine.Close()
		seeders.Close()
		store.Close()
		return nil, fmt.Errorf("eagle: %w", err)
	}
	return &Node{Engine: engine, handler: handler, seeders: seeders, store: store}, nil
}

// ServeHTTP serves the registry v2 API.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) { n.handler.ServeHTTP(w, r) }

// Close stops the node and releases everything it holds.
func (n *Node) Close() error {
	return errors.Join(n.handler.Close(), n.Engine.Close(), n.seeders.Close(), n.store.Close())
}
