package tracker

import (
	"errors"
	"fmt"
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
	// DefaultMaxNumWant is the most peers one announce response carries.
	DefaultMaxNumWant = 50
	// DefaultNumWant is the number of peers handed out when the client does
	// not send numwant (it is capped at MaxNumWant).
	DefaultNumWant = 50
	// DefaultPolicy is the name of the handout policy used when none is set.
	DefaultPolicy = PolicyCompleteness
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
)

// Config configures a Server. The zero value of every field means "use the
// default"; the defaults are documented on each field.
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
	// MaxNumWant caps the number of peers in one response; a client's
	// numwant is honoured below it. Default 50.
	MaxNumWant int `yaml:"max_num_want"`
	// NumWant is the number of peers handed out when the client does not send
	// numwant, capped at MaxNumWant. Default 50.
	NumWant int `yaml:"num_want"`
	// Policy names the peer handout policy (see NewPolicy): "random" or
	// "completeness", or any name added with RegisterPolicy.
	// Default "completeness".
	Policy string `yaml:"policy"`
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
	// Metrics is where the Server registers its Prometheus metrics
	// (eagle_tracker_*); Close unregisters them. Nil: no metrics.
	Metrics prometheus.Registerer `yaml:"-"`
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
	if c.MaxNumWant == 0 {
		c.MaxNumWant = DefaultMaxNumWant
	}
	if c.NumWant == 0 {
		c.NumWant = min(DefaultNumWant, c.MaxNumWant)
	}
	if c.Policy == "" {
		c.Policy = DefaultPolicy
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

// StoreConfig returns the peer TTL and limits of c, defaults applied: what
// the PeerStore of a Server built from c should be built with. New does so
// for the MemoryStore it creates when given none.
func (c Config) StoreConfig() StoreConfig {
	c = c.WithDefaults()
	return StoreConfig{
		PeerTTL:          c.PeerTTL,
		MaxSwarms:        c.MaxSwarms,
		MaxPeers:         c.MaxPeers,
		MaxPeersPerSwarm: c.MaxPeersPerSwarm,
	}
}

// Validate reports every problem in c (after defaults are applied) as one
// error, or nil if a Server can be built from it.
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
	if _, err := NewPolicy(c.Policy); err != nil {
		errs = append(errs, fmt.Errorf("policy: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tracker: invalid config: %w", err)
	}
	return nil
}
