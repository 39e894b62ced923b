// Package redisstore is a tracker.PeerStore in Redis, so that several
// tracker replicas serve one cluster and a restarted tracker loses nothing.
//
// Every operation is one Lua script run atomically in Redis (EVALSHA): an
// announce, with its address binding check, its limits, the expiry of its
// swarm's stale peers, the swarm's counts and a sample of its peers for the
// answer, costs one round trip, and replicas cannot interleave inside it.
// The limits (max_swarms, max_peers, max_peers_per_swarm) are counted over
// everything the replicas sharing the key prefix store, and count live
// entries only, so expired ones never hold a place. Times are Redis's own,
// so the replicas' clocks do not matter.
//
// Every tracker sharing a key prefix must use the same peer and seed TTLs
// and limits. Peers keep their location (tracker.Peer.Location); entries
// written by trackers from before locations read back with none, but
// those trackers cannot read an entry with a location, so replicas that
// share a prefix are upgraded together.
// The store needs Redis 6.2 or later (HRANDFIELD), one server or a primary;
// Redis Cluster is not supported. Nothing needs persisting: peers
// re-announce every interval, so a Redis that restarts empty is whole again
// within one.
package redisstore

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eagle-p2p/eagle/tracker"
)

// Config is how the store reaches Redis: tracker.RedisConfig, the redis:
// section of a tracker's Config (package tracker holds the type so that
// its Config needs no import of this package).
type Config = tracker.RedisConfig

// keySlack is how much longer than the TTL a key lives in Redis after the
// last write to it: the scripts judge liveness by time themselves, so the
// key's own expiry only frees what no tracker will ask about again.
const keySlack = time.Second

// reclaimBatch bounds the entries one reclaim script removes, so that the
// janitor never blocks Redis for more than a millisecond or so.
const reclaimBatch = 1000

// Store is a tracker.PeerStore in Redis. It implements tracker.AnnounceStore
// (an announce in one round trip) and tracker.StatsStore. A janitor
// goroutine, stopped by Close, removes expired entries every half TTL.
type Store struct {
	client *redis.Client
	limits tracker.StoreConfig
	prefix string
	// timeout bounds one command; ttl is the peer TTL in µs, keyTTL the
	// keys' own expiry in ms, both as the scripts take them.
	timeout time.Duration
	ttl     string
	keyTTL  string
	// seedExtra is how much longer a complete peer's entry lasts (the seed
	// TTL less the peer TTL), in µs.
	seedExtra string
	swarms    string // key of the set of swarms
	peers     string // key of the set of every peer

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	stop      context.CancelFunc // stops the janitor, and a reclaim in progress
	done      chan struct{}      // closed when the janitor returned
}

var (
	_ tracker.AnnounceStore = (*Store)(nil)
	_ tracker.StatsStore    = (*Store)(nil)
)

// New connects to the Redis cfg names and returns a store with the TTL and
// limits of limits (zero fields take their defaults; see
// tracker.StoreConfig). It fails if cfg is invalid or Redis does not
// answer a PING within cfg's timeouts and ctx. Close closes the client and
// stops the janitor.
func New(ctx context.Context, cfg Config, limits tracker.StoreConfig) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tracker: redis store: %w", err)
	}
	cfg = cfg.WithDefaults()
	limits = limits.WithDefaults()
	opts := &redis.Options{
		Addr:     cfg.Addr,
		Username: cfg.Username,
		Password: cfg.Password,
		DB:       cfg.DB,
		// Each call carries a deadline of cfg.Timeout, which then bounds
		// the connection's reads and writes too.
		ContextTimeoutEnabled: true,
		DialTimeout:           cfg.DialTimeout,
		ReadTimeout:           cfg.Timeout,
		WriteTimeout:          cfg.Timeout,
		PoolTimeout:           cfg.Timeout,
		// No CLIENT SETINFO on every new connection: one round trip less,
		// and servers before 7.2 answer it with an error.
		DisableIdentity: true,
	}
	if cfg.TLS {
		host, _, _ := net.SplitHostPort(cfg.Addr) // Validate checked it
		opts.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	s := &Store{
		client:  redis.NewClient(opts),
		limits:  limits,
		prefix:  cfg.KeyPrefix,
		timeout: cfg.Timeout,
		ttl:     strconv.FormatInt(limits.PeerTTL.Microseconds(), 10),
		keyTTL:  strconv.FormatInt((limits.SeedTTL + keySlack).Milliseconds(), 10),

		seedExtra: strconv.FormatInt((limits.SeedTTL - limits.PeerTTL).Microseconds(), 10),
		swarms:    cfg.KeyPrefix + "swarms",
		peers:     cfg.KeyPrefix + "peers",
		done:      make(chan struct{}),
	}
	// The first call also loads the scripts, so that announces run them by
	// their hash from the start.
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout+cfg.Timeout)
	defer cancel()
	err := s.client.Ping(pctx).Err()
	for _, sc := range []*redis.Script{announceScript, removeScript, answerScript, statsScript, reclaimScript} {
		if err == nil {
			err = sc.Load(pctx, s.client).Err()
		}
	}
	if err != nil {
		s.client.Close()
		return nil, fmt.Errorf("tracker: redis store: %s: %w", cfg.Addr, err)
	}
	jctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.janitor(jctx, max(limits.PeerTTL/2, 10*time.Millisecond))
	return s, nil
}

// swarmKeys returns the keys of the swarm ih in the order the scripts take
// them, and ih in hex.
func (s *Store) swarmKeys(ih tracker.InfoHash) ([]string, string) {
	h := hex.EncodeToString(ih[:])
	base := s.prefix + "s:" + h
	return []string{base + ":p", base + ":t", base + ":m", s.swarms, s.peers}, h
}

// begin checks that the store is open and ctx live, and returns ctx bounded
// by the store's per-command timeout.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, tracker.ErrStoreClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("tracker: redis store: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	return ctx, cancel, nil
}

// run runs sc and returns its reply as an array.
func (s *Store) run(ctx context.Context, op string, sc *redis.Script, keys []string, args ...any) ([]any, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	v, err := sc.Run(ctx, s.client, keys, args...).Result()
	if err != nil {
		if errors.Is(err, redis.ErrClosed) {
			return nil, tracker.ErrStoreClosed
		}
		return nil, fmt.Errorf("tracker: redis store: %s: %w", op, err)
	}
	reply, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("tracker: redis store: %s: unexpected reply %T", op, v)
	}
	return reply, nil
}

// Announce implements tracker.PeerStore.
func (s *Store) Announce(ctx context.Context, ih tracker.InfoHash, p tracker.Peer) error {
	_, _, err := s.AnnouncePeers(ctx, ih, p, 0)
	return err
}

// AnnouncePeers implements tracker.AnnounceStore: the announce, the
// swarm's counts and a uniform sample of up to limit of its peers (the
// announcing one included) in one script, one round trip.
func (s *Store) AnnouncePeers(ctx context.Context, ih tracker.InfoHash, p tracker.Peer, limit int) ([]tracker.Peer, tracker.SwarmCounts, error) {
	ip := p.Addr.Addr().Unmap()
	if !ip.IsValid() || p.Addr.Port() == 0 || p.Left < 0 {
		return nil, tracker.SwarmCounts{}, fmt.Errorf("%w: %s left %d", tracker.ErrInvalidPeer, p.Addr, p.Left)
	}
	if err := tracker.ValidLocation(p.Location); err != nil {
		// A label with a space would break the entry's encoding.
		return nil, tracker.SwarmCounts{}, fmt.Errorf("%w: %w", tracker.ErrInvalidPeer, err)
	}
	keys, h := s.swarmKeys(ih)
	seeder := "0"
	if p.Complete() {
		seeder = "1"
	}
	reply, err := s.run(ctx, "announce", announceScript, keys,
		s.ttl, s.limits.MaxSwarms, s.limits.MaxPeers, s.limits.MaxPeersPerSwarm,
		h, p.ID[:], ip.WithZone("").String(),
		strconv.Itoa(int(p.Addr.Port()))+" "+strconv.FormatInt(p.Left, 10), seeder,
		max(limit, 0), s.keyTTL, s.seedExtra, p.Location)
	if err != nil {
		return nil, tracker.SwarmCounts{}, err
	}
	code, _ := replyInt(reply, 0)
	switch code {
	case codeOK:
		peers, counts, err := parseAnswer(reply[1:])
		if err != nil {
			return nil, tracker.SwarmCounts{}, fmt.Errorf("tracker: redis store: announce: %w", err)
		}
		return peers, counts, nil
	case codeConflict:
		bound, _ := replyString(reply, 1)
		return nil, tracker.SwarmCounts{}, fmt.Errorf("%w: peer %s of swarm %s announced from %s, registered from %s",
			tracker.ErrPeerConflict, p.ID, ih, ip, bound)
	case codeMaxSwarms:
		return nil, tracker.SwarmCounts{}, fmt.Errorf("%w: max_swarms %d swarms stored", tracker.ErrFull, s.limits.MaxSwarms)
	case codeMaxPeers:
		return nil, tracker.SwarmCounts{}, fmt.Errorf("%w: max_peers %d peers stored", tracker.ErrFull, s.limits.MaxPeers)
	case codeMaxPerSwarm:
		return nil, tracker.SwarmCounts{}, fmt.Errorf("%w: swarm %s holds max_peers_per_swarm %d peers", tracker.ErrFull, ih, s.limits.MaxPeersPerSwarm)
	}
	return nil, tracker.SwarmCounts{}, fmt.Errorf("tracker: redis store: announce: unexpected reply %v", reply)
}

// Remove implements tracker.PeerStore.
func (s *Store) Remove(ctx context.Context, ih tracker.InfoHash, id tracker.PeerID, from netip.Addr) error {
	keys, h := s.swarmKeys(ih)
	ip := "" // an invalid address matches no entry
	if from.IsValid() {
		ip = from.Unmap().WithZone("").String()
	}
	reply, err := s.run(ctx, "remove", removeScript, keys, s.ttl, h, id[:], ip)
	if err != nil {
		return err
	}
	if code, _ := replyInt(reply, 0); code == codeConflict {
		bound, _ := replyString(reply, 1)
		return fmt.Errorf("%w: stop of peer %s of swarm %s from %s, registered from %s",
			tracker.ErrPeerConflict, id, ih, from, bound)
	}
	return nil
}

// Peers implements tracker.PeerStore. The sample is Redis's HRANDFIELD
// with a positive count: distinct peers, uniformly chosen.
func (s *Store) Peers(ctx context.Context, ih tracker.InfoHash, limit int) ([]tracker.Peer, error) {
	if limit <= 0 {
		// Nothing to ask Redis; a closed store or a dead context still
		// says so.
		_, cancel, err := s.begin(ctx)
		if cancel != nil {
			cancel()
		}
		return nil, err
	}
	peers, _, err := s.answer(ctx, "peers", ih, limit)
	return peers, err
}

// Counts implements tracker.PeerStore.
func (s *Store) Counts(ctx context.Context, ih tracker.InfoHash) (tracker.SwarmCounts, error) {
	_, counts, err := s.answer(ctx, "counts", ih, 0)
	return counts, err
}

func (s *Store) answer(ctx context.Context, op string, ih tracker.InfoHash, limit int) ([]tracker.Peer, tracker.SwarmCounts, error) {
	keys, h := s.swarmKeys(ih)
	reply, err := s.run(ctx, op, answerScript, keys, s.ttl, h, limit)
	if err != nil || len(reply) == 0 {
		return nil, tracker.SwarmCounts{}, err
	}
	peers, counts, err := parseAnswer(reply[1:])
	if err != nil {
		return nil, tracker.SwarmCounts{}, fmt.Errorf("tracker: redis store: %s: %w", op, err)
	}
	return peers, counts, nil
}

// Stats implements tracker.StatsStore: the live swarms and peers of every
// tracker sharing the key prefix (two ZCOUNTs, one round trip), and the
// store's limits.
func (s *Store) Stats(ctx context.Context) (tracker.StoreStats, error) {
	reply, err := s.run(ctx, "stats", statsScript, []string{s.swarms, s.peers}, s.ttl)
	if err != nil {
		return tracker.StoreStats{}, err
	}
	swarms, ok1 := replyInt(reply, 0)
	peers, ok2 := replyInt(reply, 1)
	if !ok1 || !ok2 {
		return tracker.StoreStats{}, fmt.Errorf("tracker: redis store: stats: unexpected reply %v", reply)
	}
	return tracker.StoreStats{
		Swarms:           int(swarms),
		Peers:            int(peers),
		MaxSwarms:        s.limits.MaxSwarms,
		MaxPeers:         s.limits.MaxPeers,
		MaxPeersPerSwarm: s.limits.MaxPeersPerSwarm,
	}, nil
}

// Close stops the janitor and closes the Redis client. What the store
// wrote stays in Redis for the other trackers, and for this one's
// successor. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stop()
		<-s.done
		if err := s.client.Close(); err != nil {
			s.closeErr = fmt.Errorf("tracker: redis store: close: %w", err)
		}
	})
	return s.closeErr
}

// janitor removes expired entries every period: from swarms nobody
// announces to or asks about, which nothing else touches. Every replica
// runs one; the work is the same whoever does it.
func (s *Store) janitor(ctx context.Context, every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// A failure is retried at the next tick; the announces that
			// fail meanwhile are what tells the operator.
			_, _, _ = s.Reclaim(ctx)
		}
	}
}

// Reclaim removes every expired peer and every swarm without an announce
// for the TTL, in batches of a script each, and reports how many of each
// it removed. The janitor calls it every half TTL; expired entries never
// count against the limits anyway, so calling it only frees memory in
// Redis sooner.
func (s *Store) Reclaim(ctx context.Context) (peers, swarms int, err error) {
	for {
		reply, err := s.run(ctx, "reclaim", reclaimScript, []string{s.swarms, s.peers}, s.ttl, s.prefix, reclaimBatch)
		if err != nil {
			return peers, swarms, err
		}
		p, _ := replyInt(reply, 0)
		sw, _ := replyInt(reply, 1)
		peers += int(p)
		swarms += int(sw)
		if p < reclaimBatch && sw < reclaimBatch {
			return peers, swarms, nil
		}
	}
}

// parseAnswer reads {complete, downloaded, peers, {id1, value1, ...}}.
func parseAnswer(reply []any) ([]tracker.Peer, tracker.SwarmCounts, error) {
	complete, ok1 := replyInt(reply, 0)
	downloaded, ok2 := replyInt(reply, 1)
	n, ok3 := replyInt(reply, 2)
	var sample []any
	if len(reply) == 4 {
		sample, _ = reply[3].([]any)
	}
	if !ok1 || !ok2 || !ok3 || len(sample)%2 != 0 {
		return nil, tracker.SwarmCounts{}, fmt.Errorf("unexpected reply %v", reply)
	}
	counts := tracker.SwarmCounts{Complete: int(complete), Incomplete: int(n - complete), Downloaded: int(downloaded)}
	if len(sample) == 0 {
		return nil, counts, nil
	}
	peers := make([]tracker.Peer, 0, len(sample)/2)
	for i := 0; i < len(sample); i += 2 {
		id, _ := sample[i].(string)
		v, _ := sample[i+1].(string)
		p, err := parsePeer(id, v)
		if err != nil {
			return nil, tracker.SwarmCounts{}, err
		}
		peers = append(peers, p)
	}
	return peers, counts, nil
}

// parsePeer reads a peer's ID and its value, "<ip> <port> <left> <µs>",
// followed by " <location>" for a peer with one.
func parsePeer(id, v string) (tracker.Peer, error) {
	var p tracker.Peer
	if len(id) != len(p.ID) {
		return p, fmt.Errorf("peer ID of %d bytes", len(id))
	}
	copy(p.ID[:], id)
	f := strings.Fields(v)
	if len(f) != 4 && len(f) != 5 {
		return p, fmt.Errorf("peer %s: bad entry %q", p.ID, v)
	}
	if len(f) == 5 {
		if err := tracker.ValidLocation(f[4]); err != nil {
			return p, fmt.Errorf("peer %s: %w", p.ID, err)
		}
		p.Location = f[4]
	}
	ip, err := netip.ParseAddr(f[0])
	if err != nil {
		return p, fmt.Errorf("peer %s: %w", p.ID, err)
	}
	port, err := strconv.ParseUint(f[1], 10, 16)
	if err != nil {
		return p, fmt.Errorf("peer %s: port: %w", p.ID, err)
	}
	if p.Left, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return p, fmt.Errorf("peer %s: left: %w", p.ID, err)
	}
	us, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return p, fmt.Errorf("peer %s: last seen: %w", p.ID, err)
	}
	p.Addr = netip.AddrPortFrom(ip, uint16(port))
	p.LastSeen = time.UnixMicro(us)
	return p, nil
}

func replyInt(reply []any, i int) (int64, bool) {
	if i >= len(reply) {
		return 0, false
	}
	n, ok := reply[i].(int64)
	return n, ok
}

func replyString(reply []any, i int) (string, bool) {
	if i >= len(reply) {
		return "", false
	}
	s, ok := reply[i].(string)
	return s, ok
}
