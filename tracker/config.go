package tracker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by Config.WithDefaults to fields left at their zero value.
const (
	// DefaultInterval is the announce interval told to clients. Eagle's
	// swarms are short-lived (one image pull), so it is seconds, not the
	// 30 minutes common on public trackers.
	DefaultInterval = 10 * time.Second
	// DefaultMinInterval is the minimum re-announce interval told to clients.
	DefaultMinInterval = 5 * time.Second
	// DefaultSeedInterval is the announce interval told to peers that hold
	// the whole blob of a swarm nobody downloads. Every node announces
	// every blob it caches, so at the downloaders' interval a fleet of
	// 1,000 nodes caching 200 blobs each would send 20,000 announces a
	// second; at 5 minutes it sends under 700, plus those of the swarms
	// being downloaded.
	DefaultSeedInterval = 5 * time.Minute
	// DefaultMaxNumWant is the most peers one announce response carries.
	DefaultMaxNumWant = 50
	// DefaultNumWant is the number of peers handed out when the client does
	// not send numwant (it is capped at MaxNumWant).
	DefaultNumWant = 50
	// DefaultMaxSwarms is the most swarms a store holds. A swarm is one
	// blob that some node announced within the peer TTL: a platform with
	// tens of thousands of layers has at most that many at once, usually far
	// fewer, so 100,000 leaves room while a flood of made-up info hashes
	// stops at under 48 MB of MemoryStore (see MemoryStore).
	DefaultMaxSwarms = 100_000
	// DefaultMaxPeers is the most peers a store holds over all swarms: a
	// few thousand nodes each announcing a few hundred blobs at once
	// (5,000 × 200). The MemoryStore needs under 300 MB for this many.
	DefaultMaxPeers = 1_000_000
	// DefaultMaxPeersPerSwarm is the most peers in one swarm: every node of
	// a cluster of a few thousand pulling the same layer at once (a
	// DaemonSet rollout) fits with room to spare, while one blob cannot take
	// more than a fiftieth of MaxPeers.
	DefaultMaxPeersPerSwarm = 20_000
	// peerTTLIntervals is how many announce intervals a peer may stay silent
	// before it expires, when PeerTTL is not set.
	peerTTLIntervals = 3
	// seedTTLIntervals is how many seed intervals a complete peer may stay
	// silent before it expires, when SeedPeerTTL is not set: a failed
	// announce is retried within seconds, so two leave room for one lost,
	// while a seed that died silently is not handed out for long.
	seedTTLIntervals = 2
)

// ErrInvalidConfig reports a Config that Validate rejected, or that New
// cannot build a Server from.
var ErrInvalidConfig = errors.New("tracker: invalid config")

// Names of the peer stores Config.Store selects.
const (
	// StoreMemory keeps peers in the tracker's memory (MemoryStore): one
	// tracker, whose peers are lost, and re-announced within an interval,
	// when it restarts. The default.
	StoreMemory = "memory"
	// StoreRedis keeps peers in Redis (package tracker/redisstore), so that
	// several trackers share them and a restart loses nothing.
	StoreRedis = "redis"
)

// Defaults of RedisConfig, applied by RedisConfig.WithDefaults.
const (
	// DefaultRedisKeyPrefix starts the name of every key a Redis store
	// writes, so that several clusters can share one Redis.
	DefaultRedisKeyPrefix = "eagle:tracker:"
	// DefaultRedisDialTimeout bounds connecting to Redis.
	DefaultRedisDialTimeout = 2 * time.Second
	// DefaultRedisTimeout bounds one Redis command, round trip included. A
	// tracker must answer fast or fail: a client waiting on an announce
	// waits for its peers.
	DefaultRedisTimeout = 500 * time.Millisecond
)

// RedisConfig is how a tracker reaches the Redis that holds its peers
// (Config.Store "redis"; package tracker/redisstore builds the store from
// it). It lives in package tracker, not in redisstore, so that Config can
// hold it without tracker importing redisstore. Redis 6.2 or later, one
// server or a primary (not Redis Cluster: the limits are counted over all
// swarms in one place).
type RedisConfig struct {
	// Addr is the Redis server, host:port. Required.
	Addr string `yaml:"addr"`
	// Username and Password authenticate to Redis (AUTH; Username for
	// Redis 6 ACL users). Default none.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DB is the Redis database number. Default 0.
	DB int `yaml:"db"`
	// KeyPrefix starts the name of every key the store writes. Trackers
	// that share a prefix share their peers, and must share their
	// peer_ttl and limits too; give each cluster its own prefix to share
	// one Redis. Default "eagle:tracker:".
	KeyPrefix string `yaml:"key_prefix"`
	// TLS connects to Redis over TLS, verifying its certificate against
	// the system's roots. Default false.
	TLS bool `yaml:"tls"`
	// DialTimeout bounds connecting to Redis. Default 2s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Timeout bounds one command, round trip included; an announce costs
	// one. A request to a slow or unreachable Redis fails after it (HTTP
	// 500) instead of hanging the client. Default 500ms.
	Timeout time.Duration `yaml:"timeout"`
}

// WithDefaults returns a copy of c with every zero field that has a
// default set to it.
func (c RedisConfig) WithDefaults() RedisConfig {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultRedisKeyPrefix
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultRedisDialTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultRedisTimeout
	}
	return c
}

// Validate reports every problem in c as one error, naming each key as
// it appears under tracker: in the binary's YAML (redis.addr, ...).
func (c RedisConfig) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("redis.addr is required (host:port) when store is redis"))
	} else if host, port, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("redis.addr %q: want host:port: %w", c.Addr, err))
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || host == "" {
		errs = append(errs, fmt.Errorf("redis.addr %q: want host:port with a port from 1 to 65535", c.Addr))
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("redis.db %d: must not be negative", c.DB))
	}
	if c.Username != "" && c.Password == "" {
		errs = append(errs, errors.New("redis.username: set redis.password too"))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("redis.dial_timeout %v: must be positive (0 means the default)", c.DialTimeout))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("redis.timeout %v: must be positive (0 means the default)", c.Timeout))
	}
	return errors.Join(errs...)
}

// Config configures a Server. The zero value of every field means "use the
// default"; the defaults are documented on each field, and WithDefaults
// applies them (New calls it). The zero Config is a complete tracker:
// New(Config{}, nil) keeps its peers in memory.
type Config struct {
	// Interval is the announce interval told to clients, sent in whole
	// seconds (truncated). It must be at least one second. Default 10s.
	Interval time.Duration `yaml:"interval"`
	// MinInterval is the "min interval" told to clients: they should not
	// re-announce sooner. At least one second, at most Interval. Default 5s.
	MinInterval time.Duration `yaml:"min_interval"`
	// PeerTTL is how long a peer that stops announcing is still handed out.
	// It must be longer than Interval. Default 3 × Interval. New uses it for
	// the MemoryStore it creates when given no store; a store passed to New
	// keeps its own TTL, so build it from StoreConfig.
	PeerTTL time.Duration `yaml:"peer_ttl"`
	// SeedInterval is the announce interval told to peers that announce
	// the whole blob (left=0) of a swarm with no downloader: they need no
	// peers, and will be found by the ones that come, so they only have to
	// stay in the store. (While a swarm has downloaders its complete peers
	// are told Interval, to learn of them.) It keeps the tracker's load
	// proportional to downloads, not to what the nodes cache. At least
	// Interval. Default 5m (DefaultSeedInterval).
	SeedInterval time.Duration `yaml:"seed_interval"`
	// SeedPeerTTL is how long a complete peer that stops announcing is
	// still handed out: a seed that died without a "stopped" stays in
	// peer lists this long. It must exceed SeedInterval and be at least
	// PeerTTL. Default 2 × SeedInterval.
	SeedPeerTTL time.Duration `yaml:"seed_peer_ttl"`
	// MaxNumWant caps the number of peers in one response; a client's
	// numwant is honoured below it. Default 50.
	MaxNumWant int `yaml:"max_num_want"`
	// NumWant is the number of peers handed out when the client does not send
	// numwant, capped at MaxNumWant. Default 50.
	NumWant int `yaml:"num_want"`
	// Policy orders the peers handed out: RandomPolicy,
	// CompletenessPolicy, a TopologyPolicy or the embedder's own. Default
	// CompletenessPolicy{}. (The eagle binary reads a policy name from its
	// YAML and passes the value.)
	Policy Policy `yaml:"-"`
	// Locations gives a location (Peer.Location) to the peers that
	// announce none, by their address: the rule with the longest prefix
	// containing it wins, and a peer no rule covers has none (unknown).
	// The server applies it to the announcing peer before storing it, and
	// to the candidates it passes to the Policy, so that entries stored
	// before a rule was added get it too. A location the peer announces
	// itself always wins. Default none.
	Locations []LocationRule `yaml:"locations"`
	// MaxSwarms caps the swarms (blobs) the tracker keeps, so that
	// announces of made-up info hashes cannot grow it without bound: an
	// announce that would start one more is refused with "tracker full"
	// (HTTP 503) until swarms expire. New uses it, MaxPeers and
	// MaxPeersPerSwarm for the MemoryStore it creates when given no store
	// (see StoreConfig); a store passed to New keeps its own limits. The
	// MemoryStore needs up to 200 bytes per swarm besides its peers and
	// 280 bytes per peer, so the defaults bound it under 300 MB of heap.
	// Default 100,000; 0 means the default, negative is invalid.
	MaxSwarms int `yaml:"max_swarms"`
	// MaxPeers caps the peers over all swarms (a node in two swarms counts
	// twice); a new peer beyond it is refused like a new swarm beyond
	// MaxSwarms, while known peers keep re-announcing. Default 1,000,000;
	// 0 means the default, negative is invalid.
	MaxPeers int `yaml:"max_peers"`
	// MaxPeersPerSwarm caps the peers of one swarm, so that one blob cannot
	// take all of MaxPeers. Default 20,000; 0 means the default, negative
	// is invalid.
	MaxPeersPerSwarm int `yaml:"max_peers_per_swarm"`
	// TrustClientIP makes the server record the address a client sends in
	// the "ip" parameter instead of the address the request came from. Only
	// enable it behind a proxy that sets the parameter or on a network where
	// every client is trusted: otherwise any client can point a swarm at an
	// arbitrary host, and claim the address another node's entry is bound
	// to (see ErrPeerConflict). Default false.
	TrustClientIP bool `yaml:"trust_client_ip"`
	// Store names the PeerStore: "memory" (MemoryStore, in the tracker's
	// memory: one replica) or "redis" (package tracker/redisstore, built
	// from Redis: several replicas sharing their peers, and restarts that
	// lose nothing). New creates only the memory store; with "redis" the
	// caller builds the store and passes it to New. Default "memory".
	Store string `yaml:"store"`
	// Redis is how to reach Redis when Store is "redis"; unused otherwise.
	Redis RedisConfig `yaml:"redis"`
	// Metrics is where the Server registers its Prometheus metrics
	// (eagle_tracker_*); Close unregisters them. Nil: no metrics.
	Metrics prometheus.Registerer `yaml:"-"`
	// Logger receives the Server's logs: a warning for each refused
	// announce, at most one a second for "tracker full", and the store's
	// errors. Nil discards them.
	Logger *slog.Logger `yaml:"-"`
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.MinInterval == 0 {
		c.MinInterval = min(DefaultMinInterval, c.Interval)
	}
	if c.PeerTTL == 0 {
		c.PeerTTL = peerTTLIntervals * c.Interval
	}
	if c.SeedInterval == 0 {
		c.SeedInterval = max(DefaultSeedInterval, c.Interval)
	}
	if c.SeedPeerTTL == 0 {
		c.SeedPeerTTL = max(seedTTLIntervals*c.SeedInterval, c.PeerTTL)
	}
	if c.MaxNumWant == 0 {
		c.MaxNumWant = DefaultMaxNumWant
	}
	if c.NumWant == 0 {
		c.NumWant = min(DefaultNumWant, c.MaxNumWant)
	}
	if c.Policy == nil {
		c.Policy = CompletenessPolicy{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxSwarms == 0 {
		c.MaxSwarms = DefaultMaxSwarms
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	if c.MaxPeersPerSwarm == 0 {
		c.MaxPeersPerSwarm = DefaultMaxPeersPerSwarm
	}
	return c
}

// StoreConfig returns the peer and seed TTLs and limits of c, defaults applied: what
// the PeerStore of a Server built from c should be built with. New does so
// for the MemoryStore it creates when given none.
func (c Config) StoreConfig() StoreConfig {
	c = c.WithDefaults()
	return StoreConfig{
		PeerTTL:          c.PeerTTL,
		SeedTTL:          c.SeedPeerTTL,
		MaxSwarms:        c.MaxSwarms,
		MaxPeers:         c.MaxPeers,
		MaxPeersPerSwarm: c.MaxPeersPerSwarm,
	}
}

// Validate reports every problem in c (after defaults are applied) as one
// error wrapping ErrInvalidConfig, or nil if a Server can be built from it.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.Interval < time.Second {
		errs = append(errs, fmt.Errorf("interval %v: must be at least 1s", c.Interval))
	}
	if c.MinInterval < time.Second {
		errs = append(errs, fmt.Errorf("min_interval %v: must be at least 1s", c.MinInterval))
	}
	if c.MinInterval > c.Interval {
		errs = append(errs, fmt.Errorf("min_interval %v: must not exceed interval %v", c.MinInterval, c.Interval))
	}
	if c.PeerTTL <= c.Interval {
		errs = append(errs, fmt.Errorf("peer_ttl %v: must exceed interval %v, or peers expire between announces", c.PeerTTL, c.Interval))
	}
	if c.SeedInterval < c.Interval {
		errs = append(errs, fmt.Errorf("seed_interval %v: must be at least interval %v", c.SeedInterval, c.Interval))
	}
	if c.SeedPeerTTL <= c.SeedInterval {
		errs = append(errs, fmt.Errorf("seed_peer_ttl %v: must exceed seed_interval %v, or seeds expire between announces", c.SeedPeerTTL, c.SeedInterval))
	}
	if c.SeedPeerTTL < c.PeerTTL {
		errs = append(errs, fmt.Errorf("seed_peer_ttl %v: must be at least peer_ttl %v", c.SeedPeerTTL, c.PeerTTL))
	}
	if c.MaxNumWant < 0 {
		errs = append(errs, fmt.Errorf("max_num_want %d: must be positive", c.MaxNumWant))
	}
	if c.NumWant < 0 {
		errs = append(errs, fmt.Errorf("num_want %d: must be positive", c.NumWant))
	}
	if c.NumWant > c.MaxNumWant {
		errs = append(errs, fmt.Errorf("num_want %d: must not exceed max_num_want %d", c.NumWant, c.MaxNumWant))
	}
	for _, f := range []struct {
		key string
		v   int
	}{{"max_swarms", c.MaxSwarms}, {"max_peers", c.MaxPeers}, {"max_peers_per_swarm", c.MaxPeersPerSwarm}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d: must be positive (0 means the default)", f.key, f.v))
		}
	}
	errs = append(errs, validateLocations(c.Locations)...)
	switch c.Store {
	case "", StoreMemory:
	case StoreRedis:
		if err := c.Redis.Validate(); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("store %q: must be %s or %s", c.Store, StoreMemory, StoreRedis))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}
