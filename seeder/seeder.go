package seeder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
	"github.com/eagle-p2p/eagle/storage/lru"
)

// DefaultCacheSize is a Seeder's cache size when SeederConfig.CacheSize is
// zero: 100 GiB.
const DefaultCacheSize storage.Size = 100 << 30

// stopGrace bounds how long Close waits for the gRPC connections Serve
// accepted to finish their calls (which the closed service answers at
// once) before it cuts them.
const stopGrace = 5 * time.Second

// SeederConfig configures a whole seeder: its store, its peer and its
// metainfo service. DataDir and TLS (the files, or an explicit Insecure)
// are required, and so is what Config requires (Service.AllowedUpstreams);
// every other zero field takes its default, applied by Validate, which New
// calls. Its YAML keys are those of the "eagle seeder" binary.
type SeederConfig struct {
	// DataDir holds the seeder's blobs (DataDir/blobs, unless Store is
	// set) and its torrent state (DataDir/p2p, unless P2P.DataDir is set).
	// Required.
	DataDir string `yaml:"data_dir"`

	// CacheSize bounds the bytes of blobs the seeder keeps; the least
	// recently used are evicted to make room before an origin fetch.
	// Default DefaultCacheSize (100GiB).
	CacheSize storage.Size `yaml:"cache_size"`

	// Store is where blobs are kept: any storage.Store (a distribution/v3
	// driver through storage/driver, say). It stays the caller's: close
	// it after the Seeder. Nil: the filesystem store at DataDir/blobs,
	// which the Seeder owns and closes.
	Store storage.Store `yaml:"-"`

	// P2P configures the seeder's peer. Whatever it says, the peer runs
	// in the seeder role and serves its blobs without asking an
	// Authorizer (SkipAuthorization): nothing outside the process reads
	// through it but the peer wire, and the metainfo service authorizes
	// every caller before it hands out a blob's metainfo. Its DataDir
	// defaults to DataDir/p2p, its TLS to TLS, its Logger to Logger and its
	// Metrics to Metrics.
	P2P p2p.Config `yaml:"p2p"`

	// Service configures the metainfo service. Its PeerAddr defaults to
	// the peer's listen address (p2p.Engine.Addr) and its Metrics to
	// Metrics.
	Service Config `yaml:"seeder"`

	// TLS is the seeder's cluster membership: mutual TLS with a
	// certificate from the cluster CA on the gRPC service (Serve), the peer
	// wire and the tracker announces. Required: the three files, or an
	// explicit Insecure. Its Logger defaults to Logger.
	TLS mtls.Config `yaml:"tls"`

	// Logger receives the seeder's logs. Nil discards them.
	Logger *slog.Logger `yaml:"-"`

	// Metrics is where the service and the peer register their
	// Prometheus metrics (eagle_seeder_*, eagle_p2p_*), unless
	// Service.Metrics or P2P.Metrics name another registerer. Nil: no
	// metrics.
	Metrics prometheus.Registerer `yaml:"-"`
}

// WithDefaults returns a copy of c with its defaults applied, the one
// place they are (see the fields): CacheSize, a Logger that discards, and
// what the parts take from the seeder: P2P's DataDir, TLS, Logger,
// Metrics, its seeder role and SkipAuthorization, and Service's Logger
// and Metrics. New applies it.
func (c SeederConfig) WithDefaults() SeederConfig {
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TLS.Logger == nil {
		c.TLS.Logger = c.Logger
	}
	if c.Service.Metrics == nil {
		c.Service.Metrics = c.Metrics
	}
	if c.Service.Logger == nil {
		c.Service.Logger = c.Logger
	}
	p := &c.P2P
	if p.DataDir == "" && c.DataDir != "" {
		p.DataDir = filepath.Join(c.DataDir, "p2p")
	}
	if p.TLS == (mtls.Config{}) {
		p.TLS = c.TLS
	}
	if p.Logger == nil {
		p.Logger = c.Logger
	}
	if p.Metrics == nil {
		p.Metrics = c.Metrics
	}
	p.Role = p2p.RoleSeeder
	p.SkipAuthorization = true
	return c
}

// Validate reports the first problem of c, defaults applied, naming its
// YAML key, in an error wrapping ErrInvalidConfig (mtls.ErrInvalidConfig
// for TLS). It changes nothing.
func (c SeederConfig) Validate() error {
	c = c.WithDefaults()
	if c.DataDir == "" {
		return fmt.Errorf("%w: data_dir is required", ErrInvalidConfig)
	}
	if c.CacheSize < 0 {
		return fmt.Errorf("%w: cache_size %d is negative", ErrInvalidConfig, c.CacheSize)
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if err := c.Service.Validate(); err != nil {
		return err
	}
	if err := c.P2P.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Seeder is a whole seeder in one process: its store (behind an LRU
// cache of SeederConfig.CacheSize), its peer seeding what it fetched, and
// the metainfo service. Build it with New and stop it with Close.
//
// Remote agents reach it over gRPC: Serve it on a listener of its own, or
// Register it on a gRPC server the program already runs. A node in the
// same process reaches it directly: a Seeder is a p2p.PeerSource (see
// MetaInfo), which eagle.Config.MetaInfo takes.
type Seeder struct {
	// Server is the metainfo service.
	Server *Server
	// Engine is the seeder's peer.
	Engine *p2p.Engine

	// ownStore is the store New made (nil when SeederConfig.Store was
	// given); grpc is the server Serve serves on.
	ownStore io.Closer
	grpc     *grpc.Server

	closeOnce sync.Once
	closeErr  error
}

// New builds and starts a seeder from cfg (see SeederConfig for the
// defaults it applies). ctx bounds building it (indexing the blobs the
// store already holds, which may take a while on a large store), not the
// Seeder's life, which lasts until Close.
func New(ctx context.Context, cfg SeederConfig) (_ *Seeder, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	s := &Seeder{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	store := cfg.Store
	if store == nil {
		fs, err := filesystem.New(filepath.Join(cfg.DataDir, "blobs"))
		if err != nil {
			return nil, fmt.Errorf("seeder: %w", err)
		}
		s.ownStore, store = fs, fs
	}
	cache, err := lru.New(ctx, store, cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("seeder: cache_size: %w", err)
	}
	creds, err := mtls.Load(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("seeder: %w", err)
	}
	if s.Engine, err = p2p.New(cfg.P2P, cache, nil); err != nil {
		return nil, fmt.Errorf("seeder: %w", err)
	}
	if cfg.Service.PeerAddr == nil {
		cfg.Service.PeerAddr = s.Engine.Addr
	}
	if s.Server, err = NewServer(cfg.Service, cache, s.Engine); err != nil {
		return nil, err
	}
	opts := ServerOptions()
	if creds != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(creds.ServerConfig())))
	}
	s.grpc = grpc.NewServer(opts...)
	s.Server.Register(s.grpc)
	s.Server.RegisterHealth(s.grpc)
	return s, nil
}

// Register registers the metainfo service (only) on g, a gRPC server the
// program runs itself, for remote agents. Give that server ServerOptions
// and cluster members' credentials, and stop it after Close; see
// Server.RegisterHealth for the health service.
func (s *Seeder) Register(g grpc.ServiceRegistrar) { s.Server.Register(g) }

// Serve serves the metainfo service and the standard gRPC health service
// (see Server.RegisterHealth) on lis, to cluster members only (mutual TLS
// with the credentials of SeederConfig.TLS; plaintext when it is
// Insecure), with ServerOptions, until Close. It returns nil once Close
// stopped it, or the error that did. It may serve several listeners at
// once; after Close it returns grpc.ErrServerStopped at once.
func (s *Seeder) Serve(lis net.Listener) error { return s.grpc.Serve(lis) }

// MetaInfo implements p2p.MetaInfoSource in-process: see Server.MetaInfo.
func (s *Seeder) MetaInfo(ctx context.Context, ref blob.Ref) ([]byte, error) {
	return s.Server.MetaInfo(ctx, ref)
}

// MetaInfoWithPeers implements p2p.PeerSource in-process: see
// Server.MetaInfoWithPeers.
func (s *Seeder) MetaInfoWithPeers(ctx context.Context, ref blob.Ref) ([]byte, string, []netip.AddrPort, error) {
	return s.Server.MetaInfoWithPeers(ctx, ref)
}

// Close stops the seeder and releases everything New built, in order: the
// metainfo service (calls still waiting get codes.Unavailable, the health
// service says NOT_SERVING), then what Serve serves (a graceful stop,
// cut short after a few seconds), the peer, and the store New made. A
// gRPC server passed to Register is the caller's to stop. Close is
// idempotent.
func (s *Seeder) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.Server != nil {
			errs = append(errs, s.Server.Close())
		}
		if s.grpc != nil {
			stopGracefully(s.grpc, stopGrace)
		}
		if s.Engine != nil {
			errs = append(errs, s.Engine.Close())
		}
		if s.ownStore != nil {
			errs = append(errs, s.ownStore.Close())
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("seeder: close: %w", err)
		}
	})
	return s.closeErr
}

// stopGracefully stops g gracefully, and at once when that takes longer
// than grace (a client that never acknowledges the server's GOAWAY).
func stopGracefully(g *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.GracefulStop()
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		g.Stop()
		<-done
	}
}
