package tracker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPeerTTL is the TTL NewMemoryStore uses when given none: three
// default announce intervals.
const DefaultPeerTTL = peerTTLIntervals * DefaultInterval

// memShards is the number of independently locked parts of a MemoryStore.
// Info hashes are SHA-1 output, so their first byte spreads swarms evenly.
const memShards = 256

// Heap a MemoryStore needs, at most, per swarm besides its peers and per
// peer (amd64, Go 1.26). Measured: a swarm of one peer takes 295 bytes in
// all; a peer of a larger swarm 140 to 260 bytes before Peer had a
// Location, 16 more with it (190 to 225 measured in swarms of 1,000 to
// 20,000), depending on where the swarm's index and slice are in their
// growth. A location label the store does not intern adds its length.
// TestMaliciousAnnounceFlood holds the store to these figures.
const (
	memSwarmBytes = 200
	memPeerBytes  = 280
)

// memSmallSwarm is the size up to which a swarm finds peers by scanning its
// slice instead of keeping an index by ID: most swarms are small, and a map
// would more than double what a one-peer swarm costs.
const memSmallSwarm = 8

// MemoryStore is a PeerStore held in process memory: the default for a single
// tracker. Swarms are spread over independently locked shards. Expired peers
// are dropped whenever their swarm is touched, so Peers and Counts are exact,
// and a janitor goroutine, stopped by Close, reclaims swarms nobody asks about.
//
// The store enforces the limits of its StoreConfig. Its heap stays under 200
// bytes per swarm plus 280 bytes per peer (amd64, Go 1.26; measured, a swarm
// of one peer takes 295 bytes in all), plus the bytes of its location label
// for a peer whose label is not among the first 64 each of the store's 256
// shards saw (the store shares one copy of each of those; a cluster has a
// few dozen labels, while every label of a flood of made-up ones costs its
// length, at most MaxLocationLen): at the default limits, 100,000 swarms
// and 1,000,000 peers, under 300 MB, and a flood of made-up info hashes, one
// peer each, under 48 MB. With the default GOGC the process may need up to
// twice its heap. When a store-wide limit is reached the store sweeps
// expired entries out of all swarms before refusing an announce (a sweep at
// most every tenth of the TTL, or every second if that is sooner), so a full
// store takes new swarms and peers as soon as old ones expire.
type MemoryStore struct {
	cfg    StoreConfig
	shards [memShards]memShard

	// swarms and peers count what all shards hold, for the limits and Stats.
	swarms atomic.Int64
	peers  atomic.Int64
	// reclaimEvery is the least time between two sweeps caused by a full
	// store; lastReclaim is when the last one started (Unix nanoseconds).
	reclaimEvery time.Duration
	lastReclaim  atomic.Int64

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

type memShard struct {
	mu     sync.Mutex
	swarms map[InfoHash]*memSwarm // nil once the store is closed
	// locs interns the shard's peer locations, so that the thousands of
	// peers of a location share one copy of its label.
	locs map[string]string
}

// memShardLocations caps the locations a shard interns: a cluster has a
// few dozen, and labels made up by a flood of announces must not grow the
// table (at the cap, 256 shards of made-up 255-byte labels hold about 5
// MB). Past the cap a location is stored as it came.
const memShardLocations = 64

// intern returns the shard's copy of loc, keeping loc as that copy if the
// table has room. sh must be locked.
func (sh *memShard) intern(loc string) string {
	if loc == "" {
		return ""
	}
	if l, ok := sh.locs[loc]; ok {
		return l
	}
	if len(sh.locs) < memShardLocations {
		if sh.locs == nil {
			sh.locs = make(map[string]string)
		}
		sh.locs[loc] = loc
	}
	return loc
}

// memSwarm keeps its peers twice: in a slice, for O(k) random sampling, and
// in two lists ordered by LastSeen (oldest first), one of incomplete and
// one of complete peers, each with its own TTL, for O(1) expiry per peer.
// Past memSmallSwarm peers it also indexes them by ID.
type memSwarm struct {
	byID       map[PeerID]*memPeer // nil while the swarm is small
	all        []*memPeer
	lists      [2]memList // [0] incomplete peers, [1] complete ones
	complete   int
	downloaded int
	touched    time.Time // last announce
}

// memList is an expiry list: peers ordered by LastSeen, oldest first.
type memList struct{ oldest, newest *memPeer }

type memPeer struct {
	Peer
	pos   int // index in memSwarm.all
	older *memPeer
	newer *memPeer
}

// list is the index in memSwarm.lists of the expiry list p belongs in.
func list(p Peer) int {
	if p.Complete() {
		return 1
	}
	return 0
}

var _ StatsStore = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore with cfg's TTL and limits
// (zero fields take their defaults; see StoreConfig). The store starts a
// janitor goroutine: call Close to stop it.
func NewMemoryStore(cfg StoreConfig) *MemoryStore {
	cfg = cfg.WithDefaults()
	s := &MemoryStore{
		cfg:          cfg,
		reclaimEvery: min(max(cfg.PeerTTL/10, 10*time.Millisecond), time.Second),
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].swarms = make(map[InfoHash]*memSwarm)
	}
	go s.janitor(max(cfg.PeerTTL/2, 10*time.Millisecond))
	return s
}

// lock checks ctx, locks the shard of ih and returns it with the time to use
// as "now". The time is read under the lock so that each swarm's expiry list
// stays ordered by LastSeen. The caller must unlock the shard.
func (s *MemoryStore) lock(ctx context.Context, ih InfoHash) (*memShard, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, fmt.Errorf("tracker: memory store: %w", err)
	}
	sh := &s.shards[ih[0]]
	sh.mu.Lock()
	if sh.swarms == nil {
		sh.mu.Unlock()
		return nil, time.Time{}, ErrStoreClosed
	}
	return sh, time.Now(), nil
}

// live returns the swarm ih with its expired peers dropped, or nil if there
// is none. A swarm is deleted once it has had no peer and no announce for the
// TTL; until then it keeps its Downloaded count. sh must be locked.
func (s *MemoryStore) live(sh *memShard, ih InfoHash, now time.Time) *memSwarm {
	sw := sh.swarms[ih]
	if sw == nil {
		return nil
	}
	cutoff := now.Add(-s.cfg.PeerTTL)
	n := len(sw.all)
	sw.expire(0, cutoff)
	sw.expire(1, now.Add(-s.cfg.SeedTTL))
	if gone := n - len(sw.all); gone > 0 {
		s.peers.Add(-int64(gone))
	}
	if len(sw.all) == 0 && !sw.touched.After(cutoff) {
		delete(sh.swarms, ih)
		s.swarms.Add(-1)
		return nil
	}
	return sw
}

// Announce implements PeerStore.
func (s *MemoryStore) Announce(ctx context.Context, ih InfoHash, p Peer) error {
	if !p.valid() {
		return fmt.Errorf("%w: %s left %d location %q", ErrInvalidPeer, p.Addr, p.Left, p.Location)
	}
	storeWide, err := s.announce(ctx, ih, p)
	if storeWide && s.reclaim() {
		// Expired peers in other swarms may have held the places.
		_, err = s.announce(ctx, ih, p)
	}
	return err
}

// announce does the work of Announce. storeWide reports an ErrFull caused
// by a limit over all swarms, which a sweep of expired entries may lift.
func (s *MemoryStore) announce(ctx context.Context, ih InfoHash, p Peer) (storeWide bool, err error) {
	sh, now, err := s.lock(ctx, ih)
	if err != nil {
		return false, err
	}
	defer sh.mu.Unlock()
	p.LastSeen = now
	p.Location = sh.intern(p.Location)
	sw := s.live(sh, ih, now)
	if sw != nil {
		if mp := sw.find(p.ID); mp != nil {
			if !sameIP(mp.Addr.Addr(), p.Addr.Addr()) {
				return false, fmt.Errorf("%w: peer %s of swarm %s announced from %s, registered from %s",
					ErrPeerConflict, p.ID, ih, p.Addr.Addr(), mp.Addr.Addr())
			}
			sw.unlink(mp)
			if mp.Complete() {
				sw.complete--
			} else if p.Complete() {
				sw.downloaded++
			}
			mp.Peer = p
			if p.Complete() {
				sw.complete++
			}
			sw.pushNewest(mp)
			sw.touched = now
			return false, nil
		}
		if len(sw.all) >= s.cfg.MaxPeersPerSwarm {
			return false, fmt.Errorf("%w: swarm %s holds max_peers_per_swarm %d peers", ErrFull, ih, s.cfg.MaxPeersPerSwarm)
		}
	}
	// A new peer, perhaps in a new swarm. The swarm's place is taken first:
	// a place taken and given back is then one only a new swarm wanted.
	if sw == nil && !reserve(&s.swarms, s.cfg.MaxSwarms) {
		return true, fmt.Errorf("%w: max_swarms %d swarms stored", ErrFull, s.cfg.MaxSwarms)
	}
	if !reserve(&s.peers, s.cfg.MaxPeers) {
		if sw == nil {
			s.swarms.Add(-1)
		}
		return true, fmt.Errorf("%w: max_peers %d peers stored", ErrFull, s.cfg.MaxPeers)
	}
	if sw == nil {
		sw = &memSwarm{}
		sh.swarms[ih] = sw
	}
	mp := &memPeer{Peer: p}
	sw.add(mp)
	if p.Complete() {
		sw.complete++
	}
	sw.pushNewest(mp)
	sw.touched = now
	return false, nil
}

// reserve takes one place in n under limit, reporting whether there was one.
func reserve(n *atomic.Int64, limit int) bool {
	if n.Load() >= int64(limit) {
		return false
	}
	if n.Add(1) > int64(limit) {
		n.Add(-1)
		return false
	}
	return true
}

// reclaim sweeps expired entries out of every shard, unless another reclaim
// started less than reclaimEvery ago: a flood against a full store must not
// turn every refused announce into a walk over the whole store. It reports
// whether it swept. The caller must hold no shard lock.
func (s *MemoryStore) reclaim() bool {
	now := time.Now().UnixNano()
	last := s.lastReclaim.Load()
	if now-last < int64(s.reclaimEvery) || !s.lastReclaim.CompareAndSwap(last, now) {
		return false
	}
	s.sweep()
	return true
}

// Remove implements PeerStore.
func (s *MemoryStore) Remove(ctx context.Context, ih InfoHash, id PeerID, from netip.Addr) error {
	sh, now, err := s.lock(ctx, ih)
	if err != nil {
		return err
	}
	defer sh.mu.Unlock()
	sw := s.live(sh, ih, now)
	if sw == nil {
		return nil
	}
	if mp := sw.find(id); mp != nil {
		if !sameIP(mp.Addr.Addr(), from) {
			return fmt.Errorf("%w: stop of peer %s of swarm %s from %s, registered from %s",
				ErrPeerConflict, id, ih, from, mp.Addr.Addr())
		}
		sw.remove(mp)
		s.peers.Add(-1)
	}
	return nil
}

// Peers implements PeerStore.
func (s *MemoryStore) Peers(ctx context.Context, ih InfoHash, limit int) ([]Peer, error) {
	sh, now, err := s.lock(ctx, ih)
	if err != nil {
		return nil, err
	}
	defer sh.mu.Unlock()
	sw := s.live(sh, ih, now)
	if sw == nil || limit <= 0 || len(sw.all) == 0 {
		return nil, nil
	}
	n := len(sw.all)
	if limit < n {
		// Partial Fisher-Yates over the swarm's own slice: a uniform sample
		// in O(limit), at the cost of reordering the slice.
		for i := range limit {
			j := i + rand.IntN(n-i)
			sw.all[i], sw.all[j] = sw.all[j], sw.all[i]
			sw.all[i].pos, sw.all[j].pos = i, j
		}
		n = limit
	}
	out := make([]Peer, n)
	for i, mp := range sw.all[:n] {
		out[i] = mp.Peer
	}
	return out, nil
}

// Counts implements PeerStore.
func (s *MemoryStore) Counts(ctx context.Context, ih InfoHash) (SwarmCounts, error) {
	sh, now, err := s.lock(ctx, ih)
	if err != nil {
		return SwarmCounts{}, err
	}
	defer sh.mu.Unlock()
	sw := s.live(sh, ih, now)
	if sw == nil {
		return SwarmCounts{}, nil
	}
	return SwarmCounts{
		Complete:   sw.complete,
		Incomplete: len(sw.all) - sw.complete,
		Downloaded: sw.downloaded,
	}, nil
}

// Stats implements StatsStore. It counts swarms and peers the store still
// holds, which includes peers that expired since their swarm was last
// touched or swept (the janitor sweeps every TTL/2), and reports the
// store's limits. It takes no lock.
func (s *MemoryStore) Stats(ctx context.Context) (StoreStats, error) {
	if err := ctx.Err(); err != nil {
		return StoreStats{}, fmt.Errorf("tracker: memory store: %w", err)
	}
	if s.closed.Load() {
		return StoreStats{}, ErrStoreClosed
	}
	return StoreStats{
		Swarms:           int(s.swarms.Load()),
		Peers:            int(s.peers.Load()),
		MaxSwarms:        s.cfg.MaxSwarms,
		MaxPeers:         s.cfg.MaxPeers,
		MaxPeersPerSwarm: s.cfg.MaxPeersPerSwarm,
	}, nil
}

// Close stops the janitor and drops every swarm. It is idempotent.
func (s *MemoryStore) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			sh.swarms = nil
			sh.locs = nil
			sh.mu.Unlock()
		}
		s.swarms.Store(0)
		s.peers.Store(0)
	})
	return nil
}

// janitor periodically expires peers in every swarm, so that swarms nobody
// announces to or asks about anymore do not hold memory forever.
func (s *MemoryStore) janitor(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep expires peers in every swarm of every shard, one shard at a time.
func (s *MemoryStore) sweep() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		now := time.Now()
		for ih := range sh.swarms {
			s.live(sh, ih, now)
		}
		sh.mu.Unlock()
	}
}

// find returns the peer id of the swarm, or nil.
func (sw *memSwarm) find(id PeerID) *memPeer {
	if sw.byID != nil {
		return sw.byID[id]
	}
	for _, mp := range sw.all {
		if mp.ID == id {
			return mp
		}
	}
	return nil
}

// add puts mp, not yet in the swarm, in the slice and the index. It does not
// link mp into the expiry list.
func (sw *memSwarm) add(mp *memPeer) {
	mp.pos = len(sw.all)
	sw.all = append(sw.all, mp)
	switch {
	case sw.byID != nil:
		sw.byID[mp.ID] = mp
	case len(sw.all) > memSmallSwarm:
		// The index stays once built, so that a swarm around the threshold
		// does not rebuild it again and again.
		sw.byID = make(map[PeerID]*memPeer, len(sw.all))
		for _, p := range sw.all {
			sw.byID[p.ID] = p
		}
	}
}

// expire removes the peers of list l last seen at or before cutoff.
func (sw *memSwarm) expire(l int, cutoff time.Time) {
	for o := sw.lists[l].oldest; o != nil && !o.LastSeen.After(cutoff); o = sw.lists[l].oldest {
		sw.remove(o)
	}
}

// remove deletes mp from every index of the swarm.
func (sw *memSwarm) remove(mp *memPeer) {
	sw.unlink(mp)
	if mp.Complete() {
		sw.complete--
	}
	last := sw.all[len(sw.all)-1]
	sw.all[mp.pos] = last
	last.pos = mp.pos
	sw.all[len(sw.all)-1] = nil
	sw.all = sw.all[:len(sw.all)-1]
	if sw.byID != nil {
		delete(sw.byID, mp.ID)
	}
}

// unlink takes mp out of its expiry list (the one its Peer says).
func (sw *memSwarm) unlink(mp *memPeer) {
	l := &sw.lists[list(mp.Peer)]
	if mp.older != nil {
		mp.older.newer = mp.newer
	} else {
		l.oldest = mp.newer
	}
	if mp.newer != nil {
		mp.newer.older = mp.older
	} else {
		l.newest = mp.older
	}
	mp.older, mp.newer = nil, nil
}

// pushNewest appends mp to its expiry list as the most recently seen peer.
func (sw *memSwarm) pushNewest(mp *memPeer) {
	l := &sw.lists[list(mp.Peer)]
	mp.older = l.newest
	if l.newest != nil {
		l.newest.newer = mp
	} else {
		l.oldest = mp
	}
	l.newest = mp
}
