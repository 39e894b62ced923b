package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/eagle-p2p/eagle"
	"github.com/eagle-p2p/eagle/internal/serve"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/redisstore"
)

// trackerSection is the tracker: section of "eagle tracker"'s YAML:
// tracker.Config (with locations: [{cidr, location}], the locations of
// peers that announce none), with the handout policy by name and the
// topology policy's settings.
type trackerSection struct {
	tracker.Config `yaml:",inline"`
	// Policy names the peer handout policy (see policies). Default
	// "completeness".
	Policy string `yaml:"policy"`
	// Topology configures the "topology" policy (remote, load_half_life,
	// sample, max_tracked); unused by the others.
	Topology tracker.TopologyConfig `yaml:"topology"`
}

// policies build the handout policies by the names the YAML and
// --policy take, from the tracker section.
var policies = map[string]func(trackerSection) tracker.Policy{
	"completeness": func(trackerSection) tracker.Policy { return tracker.CompletenessPolicy{} },
	"random":       func(trackerSection) tracker.Policy { return tracker.RandomPolicy{} },
	"topology":     func(s trackerSection) tracker.Policy { return tracker.NewTopologyPolicy(s.Topology) },
}

// defaultPolicy is the name of tracker.Config's default policy.
const defaultPolicy = "completeness"

// config returns the tracker.Config the section describes, its policy
// built by name, or an error naming the key.
func (s trackerSection) config() (tracker.Config, error) {
	c := s.Config
	name := cmp.Or(s.Policy, defaultPolicy)
	build := policies[name]
	if build == nil {
		names := slices.Sorted(maps.Keys(policies))
		return c, fmt.Errorf("tracker.policy %q: want %s or %s", name, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
	}
	if err := s.Topology.Validate(); err != nil {
		return c, fmt.Errorf("tracker: %w", err)
	}
	c.Policy = build(s)
	return c, nil
}

// trackerConfig is the YAML of "eagle tracker".
type trackerConfig struct {
	// Listen is the HTTP listen address. Default ":7080".
	Listen string `yaml:"listen"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// Tracker configures the tracker.
	Tracker trackerSection `yaml:"tracker"`
	// TLS is the cluster membership: announces and scrapes are served
	// over TLS to members only; /metrics and the probes to anyone.
	TLS mtls.Config `yaml:"tls"`
}

func runTracker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := trackerConfig{Listen: ":7080", LogLevel: "info"}
	fs := flag.NewFlagSet("eagle tracker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file")
	listen := fs.String("listen", cfg.Listen, "HTTP listen address (/announce, /scrape)")
	interval := fs.Duration("interval", tracker.DefaultInterval, "announce interval told to peers")
	policy := fs.String("policy", defaultPolicy, "peer handout policy: random, completeness or topology (by peer location; see tracker.topology and tracker.locations in the YAML)")
	storeName := fs.String("store", tracker.StoreMemory, "peer store: memory (one tracker) or redis (replicas sharing one Redis)")
	redisAddr := fs.String("redis-addr", "", "Redis host:port, for --store redis")
	tf := addTLSFlags(fs)
	err := parseFlags(fs, args, path, &cfg, func(name string) {
		tf.apply(name, &cfg.TLS)
		switch name {
		case "listen":
			cfg.Listen = *listen
		case "interval":
			cfg.Tracker.Interval = *interval
		case "policy":
			cfg.Tracker.Policy = *policy
		case "store":
			cfg.Tracker.Store = *storeName
		case "redis-addr":
			cfg.Tracker.Redis.Addr = *redisAddr
		}
	})
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	tc, err := cfg.Tracker.config()
	if err != nil {
		return err
	}
	tc = tc.WithDefaults()
	log.Info("handout policy", "policy", cmp.Or(cfg.Tracker.Policy, defaultPolicy), "location_rules", len(tc.Locations))
	cfg.TLS.Logger = log
	creds, err := mtls.Load(cfg.TLS)
	if err != nil {
		return err
	}
	var store tracker.PeerStore
	if tc.Store == tracker.StoreRedis {
		// Redis may come up after the tracker (both restarted at once):
		// wait for it a while, saying so, before giving up.
		rc := tc.Redis.WithDefaults()
		deadline := time.Now().Add(30 * time.Second)
		for {
			rs, err := redisstore.New(ctx, rc, tc.StoreConfig())
			if err == nil {
				store = rs
				break
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				return err
			}
			log.Warn("redis not reachable, retrying", "addr", rc.Addr, "error", err.Error())
			select {
			case <-ctx.Done():
				return err
			case <-time.After(time.Second):
			}
		}
		log.Info("peer store", "store", tracker.StoreRedis, "addr", rc.Addr, "key_prefix", rc.KeyPrefix, "db", rc.DB, "redis_tls", rc.TLS)
	} else {
		store = tracker.NewMemoryStore(tc.StoreConfig())
		log.Info("peer store", "store", tracker.StoreMemory)
	}
	defer store.Close()
	reg := serve.NewRegistry()
	tc.Metrics, tc.Logger = reg, log
	h, err := tracker.New(tc, store)
	if err != nil {
		return err
	}
	defer h.Close()
	// Announces and scrapes for members; /metrics and the probes for
	// anyone (over TLS, with no client certificate).
	return serveHTTPS(ctx, cfg.Listen, "listen", opsHandler(ctx, creds.RequireMember(h), reg, log), creds, log)
}

// Validate reports whether cfg can start a tracker, naming the YAML key
// that stops it: the log level, the tracker section (with its defaults)
// and the tls keys. It does not read the certificates.
func (cfg *trackerConfig) Validate() error {
	if _, err := newLogger(io.Discard, cfg.LogLevel); err != nil {
		return err
	}
	tc, err := cfg.Tracker.config()
	if err != nil {
		return err
	}
	if err := tc.Validate(); err != nil {
		return fmt.Errorf("tracker: %w", err)
	}
	return cfg.TLS.Validate()
}

// seederConfig is the YAML of "eagle seeder".
type seederConfig struct {
	// Listen is the gRPC listen address. Default ":7070".
	Listen string `yaml:"listen"`
	// MetricsListen is the HTTP listen address of /metrics, /healthz and
	// /readyz. Default ":7071".
	MetricsListen string `yaml:"metrics_listen"`
	// DataDir holds the seeder's blobs (DataDir/blobs) and torrent state
	// (DataDir/p2p). Default "/var/lib/eagle/seeder".
	DataDir string `yaml:"data_dir"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// P2P configures the seeder's peer. Its data_dir defaults to DataDir/p2p;
	// its listen_addr to ":6881".
	P2P p2p.Config `yaml:"p2p"`
	// Seeder configures the metainfo service.
	Seeder seeder.Config `yaml:"seeder"`
	// Storage picks where blobs are kept: {driver, parameters}. Default the
	// filesystem store at DataDir/blobs (see storage.go).
	Storage storageConfig `yaml:"storage"`
	// CacheSize bounds the bytes of blobs the seeder keeps; the least
	// recently used are evicted to make room before an origin fetch.
	// Default 100GiB.
	CacheSize storage.Size `yaml:"cache_size"`
	// TLS is the cluster membership of the gRPC service, the peer wire and
	// the tracker announces.
	TLS mtls.Config `yaml:"tls"`
	// Preheat, when present, runs the preheat API (registry
	// notifications, Harbor webhooks, POST /preheat); see preheat.go.
	Preheat *preheatConfig `yaml:"preheat"`
}

func runSeeder(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := seederConfig{Listen: ":7070", MetricsListen: ":7071", DataDir: "/var/lib/eagle/seeder", LogLevel: "info", CacheSize: eagle.DefaultCacheSize}
	fs := flag.NewFlagSet("eagle seeder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file")
	listen := fs.String("listen", cfg.Listen, "gRPC listen address")
	metricsListen := fs.String("metrics-listen", cfg.MetricsListen, "HTTP listen address of /metrics, /healthz, /readyz")
	dataDir := fs.String("data-dir", cfg.DataDir, "state directory")
	peerListen := fs.String("peer-listen", ":6881", "peer-wire listen address")
	var trackers, allowed listFlag
	fs.Var(&trackers, "tracker", "tracker announce URL (repeatable, comma-separated)")
	fs.Var(&allowed, "allow-upstream", "origin host the seeder may fetch from (repeatable)")
	allowAny := fs.Bool("allow-any-upstream", false, "let clients name any public registry beyond --allow-upstream (untrusted: served only after this seeder fetched the blob from it)")
	tf := addTLSFlags(fs)
	err := parseFlags(fs, args, path, &cfg, func(name string) {
		tf.apply(name, &cfg.TLS)
		switch name {
		case "listen":
			cfg.Listen = *listen
		case "metrics-listen":
			cfg.MetricsListen = *metricsListen
		case "data-dir":
			cfg.DataDir = *dataDir
		case "peer-listen":
			cfg.P2P.ListenAddr = *peerListen
		case "tracker":
			cfg.P2P.Trackers = trackers
		case "allow-upstream":
			cfg.Seeder.AllowedUpstreams = allowed
		case "allow-any-upstream":
			cfg.Seeder.AllowAnyUpstream = *allowAny
		}
	})
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	cfg.P2P.Logger = log
	cfg.TLS.Logger = log
	if err := cfg.Validate(); err != nil {
		return err
	}
	reg := serve.NewRegistry()
	inner, err := openStore(ctx, cfg.Storage, cfg.DataDir)
	if err != nil {
		return err
	}
	if c, ok := inner.(io.Closer); ok {
		defer c.Close()
	}
	sd, err := seeder.New(ctx, seeder.SeederConfig{
		DataDir:   cfg.DataDir,
		CacheSize: cfg.CacheSize,
		Store:     inner,
		P2P:       cfg.P2P,
		Service:   cfg.Seeder,
		TLS:       cfg.TLS,
		Logger:    log,
		Metrics:   reg,
	})
	if err != nil {
		return withFlag(err)
	}
	// Closes the metainfo service (cancelling the calls still waiting on
	// origins, or the graceful stop would wait for their downloads), stops
	// the gRPC server, then the peer; before the store is closed.
	defer sd.Close()
	lis, err := listenOn(cfg.Listen, "listen")
	if err != nil {
		return err
	}
	stopOps, err := startOpsServer(ctx, cfg.MetricsListen, reg, log)
	if err != nil {
		lis.Close()
		return err
	}
	defer stopOps()
	if cfg.Preheat != nil {
		stopPreheat, err := startPreheat(cfg.Preheat, cfg.TLS, log)
		if err != nil {
			lis.Close()
			return err
		}
		defer stopPreheat()
	}
	log.Info("seeder listening", "grpc", lis.Addr().String(), "peer", sd.Engine.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- sd.Serve(lis) }()
	select {
	case <-ctx.Done():
		sd.Close()
		<-errc
		return nil
	case err := <-errc:
		return err
	}
}

// Validate reports whether cfg can start a seeder, naming the YAML key
// that stops it, and fills in what the seeder derives from the rest: its
// peer's data_dir, role and membership (the top-level tls keys). It does
// not read the certificates or open the storage.
func (cfg *seederConfig) Validate() error {
	if _, err := newLogger(io.Discard, cfg.LogLevel); err != nil {
		return err
	}
	if cfg.P2P.DataDir == "" {
		cfg.P2P.DataDir = filepath.Join(cfg.DataDir, "p2p")
	}
	cfg.P2P.Role = p2p.RoleSeeder
	// The gRPC service authorizes every read of the engine's blobs.
	cfg.P2P.SkipAuthorization = true
	cfg.P2P.TLS = cfg.TLS
	if err := cfg.TLS.Validate(); err != nil {
		return err
	}
	if err := cfg.Seeder.Validate(); err != nil {
		return err
	}
	if cfg.CacheSize <= 0 {
		return fmt.Errorf("cache_size %d must be positive", cfg.CacheSize)
	}
	if err := cfg.P2P.Validate(); err != nil {
		return err
	}
	if cfg.Preheat != nil {
		if cfg.Seeder.AllowAnyUpstream && len(cfg.Seeder.AllowedUpstreams) == 0 {
			return errors.New("preheat: needs seeder.allowed_upstreams: images are preheated only from registries listed there")
		}
		if err := cfg.Preheat.validate(cfg.Seeder.AllowedUpstreams); err != nil {
			return err
		}
	}
	return nil
}

// agentConfig is the YAML of "eagle agent".
type agentConfig struct {
	// Listen is the registry endpoint's listen address. Default
	// "127.0.0.1:5000": the runtime is on the same host, and the registry
	// API is nobody else's business.
	Listen string `yaml:"listen"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// Node configures the node (data_dir, seeders, p2p, proxy).
	Node eagle.Config `yaml:",inline"`
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := agentConfig{Listen: "127.0.0.1:5000", LogLevel: "info", Node: eagle.Config{DataDir: "/var/lib/eagle/agent"}}
	fs := flag.NewFlagSet("eagle agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file")
	listen := fs.String("listen", cfg.Listen, "registry endpoint listen address")
	dataDir := fs.String("data-dir", cfg.Node.DataDir, "state directory (blob cache)")
	peerListen := fs.String("peer-listen", ":6881", "peer-wire listen address")
	upstream := fs.String("upstream", "", "default upstream registry URL (used when the request has no ?ns=)")
	tf := addTLSFlags(fs)
	var trackers, seeders, upstreams listFlag
	fs.Var(&trackers, "tracker", "tracker announce URL (repeatable, comma-separated)")
	fs.Var(&seeders, "seeder", "seeder gRPC address host:port (repeatable, comma-separated)")
	fs.Var(&upstreams, "mirror", "further upstream registry URL this agent mirrors (repeatable)")
	location := fs.String("location", "", "this node's location, region/zone[/rack] (p2p.location)")
	fromNode := fs.String("location-from-node", "", "read the location from the labels of the Kubernetes node `NAME` (in a pod, with its service account)")
	locLabels := fs.String("location-labels", defaultLocationLabels, "node labels the location is made of, widest first (with -location-from-node)")
	hostsDir := fs.String("write-hosts-toml", "", "write containerd hosts.toml files under `DIR` naming this agent the mirror of --upstream and --mirror registries, then exit")
	err := parseFlags(fs, args, path, &cfg, func(name string) {
		tf.apply(name, &cfg.Node.TLS)
		switch name {
		case "listen":
			cfg.Listen = *listen
		case "data-dir":
			cfg.Node.DataDir = *dataDir
		case "peer-listen":
			cfg.Node.P2P.ListenAddr = *peerListen
		case "upstream":
			cfg.Node.Proxy.DefaultUpstream = *upstream
		case "tracker":
			cfg.Node.P2P.Trackers = trackers
		case "seeder":
			cfg.Node.Seeders = seeders
		case "mirror":
			cfg.Node.Proxy.Upstreams = upstreams
		case "location":
			cfg.Node.P2P.Location = *location
		}
	})
	if err != nil {
		return err
	}
	if *hostsDir != "" {
		return writeAgentHostsTOML(stdout, *hostsDir, cfg)
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	if *fromNode != "" {
		loc, err := nodeLocation(ctx, *fromNode, *locLabels, log.Warn)
		if err != nil {
			return fmt.Errorf("-location-from-node %s: %w", *fromNode, err)
		}
		cfg.Node.P2P.Location = loc
		log.Info("location from the node's labels", "node", *fromNode, "location", loc)
	}
	cfg.Node.Logger = log
	reg := serve.NewRegistry()
	cfg.Node.Metrics = reg
	node, err := eagle.NewNode(cfg.Node)
	if err != nil {
		return withFlag(err)
	}
	defer node.Close()
	log.Info("agent peer listening", "peer", node.Engine.Addr().String())
	return serveHTTP(ctx, cfg.Listen, "listen", opsHandler(ctx, node, reg, log), log)
}

// serveHTTP serves h on addr until ctx ends, then shuts down gracefully.
// key names the config key of addr, for a listen error.
func serveHTTP(ctx context.Context, addr, key string, h http.Handler, log *slog.Logger) error {
	return serveHTTPS(ctx, addr, key, h, nil, log)
}

// serveHTTPS is serveHTTP over TLS with creds' server configuration, which
// accepts clients without a certificate (handlers check membership where
// they need it); plaintext when creds is nil.
func serveHTTPS(ctx context.Context, addr, key string, h http.Handler, creds *mtls.Credentials, log *slog.Logger) error {
	lis, err := listenOn(addr, key)
	if err != nil {
		return err
	}
	if creds != nil {
		lis = tls.NewListener(lis, creds.ServerConfigOptionalClient())
	}
	log.Info("listening", "addr", lis.Addr().String(), "tls", creds != nil)
	return serve.Run(ctx, lis, h)
}

// listenOn listens on addr; its error names the config key it came from.
func listenOn(addr, key string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", key, addr, err)
	}
	return lis, nil
}

// withFlag adds to an error about the peer-wire listen address the flag
// that sets it.
func withFlag(err error) error {
	if errors.Is(err, p2p.ErrAddrInUse) {
		return fmt.Errorf("%w (flag --peer-listen)", err)
	}
	return err
}
