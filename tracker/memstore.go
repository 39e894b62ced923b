package tracker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// DefaultPeerTTL is the TTL NewMemoryStore uses when given none: three
// default announce intervals.
const DefaultPeerTTL = peerTTLIntervals * DefaultInterval

// memShards is the number of independently locked parts of a MemoryStore.
// Info hashes are SHA-1 output, so their first byte spreads swarms evenly.
const memShards = 256

// MemoryStore is a PeerStore held in process memory: the default for a single
// tracker. Swarms are spread over independently locked shards. Expired peers
// are dropped whenever their swarm is touched, so Peers and Counts are exact,
// and a janitor goroutine, stopped by Close, reclaims swarms nobody asks about.
type MemoryStore struct {
	ttl    time.Duration
	shards [memShards]memShard

	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

type memShard struct {
	mu     sync.Mutex
	swarms map[InfoHash]*memSwarm // nil once the store is closed
	peers  int                    // over all swarms, for Stats
}

// memSwarm keeps its peers twice: in a slice, for O(k) random sampling, and
// in a list ordered by LastSeen (oldest first), for O(1) expiry per peer.
type memSwarm struct {
	byID       map[PeerID]*memPeer
	all        []*memPeer
	oldest     *memPeer
	newest     *memPeer
	complete   int
	downloaded int
	touched    time.Time // last announce
}

type memPeer struct {
	Peer
	pos   int // index in memSwarm.all
	older *memPeer
	newer *memPeer
}

var _ StatsStore = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore in which a peer expires ttl
// after its last announce; ttl <= 0 means DefaultPeerTTL. The store starts a
// janitor goroutine: call Close to stop it.
func NewMemoryStore(ttl time.Duration) *MemoryStore {
	if ttl <= 0 {
		ttl = DefaultPeerTTL
	}
	s := &MemoryStore{
		ttl:  ttl,
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].swarms = make(map[InfoHash]*memSwarm)
	}
	go s.janitor(max(ttl/2, 10*time.Millisecond))
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
	cutoff := now.Add(-s.ttl)
	n := len(sw.all)
	sw.expire(cutoff)
	sh.peers -= n - len(sw.all)
	if len(sw.all) == 0 && !sw.touched.After(cutoff) {
		delete(sh.swarms, ih)
		return nil
	}
	return sw
}

// Announce implements PeerStore.
func (s *MemoryStore) Announce(ctx context.Context, ih InfoHash, p Peer) error {
	if !p.valid() {
		return fmt.Errorf("%w: %s left %d", ErrInvalidPeer, p.Addr, p.Left)
	}
	sh, now, err := s.lock(ctx, ih)
	if err != nil {
		return err
	}
	defer sh.mu.Unlock()
	sw := s.live(sh, ih, now)
	if sw == nil {
		sw = &memSwarm{byID: make(map[PeerID]*memPeer)}
		sh.swarms[ih] = sw
	}
	p.LastSeen = now
	sw.touched = now
	mp := sw.byID[p.ID]
	if mp == nil {
		mp = &memPeer{pos: len(sw.all)}
		sw.all = append(sw.all, mp)
		sw.byID[p.ID] = mp
		sh.peers++
	} else {
		sw.unlink(mp)
		if mp.Complete() {
			sw.complete--
		} else if p.Complete() {
			sw.downloaded++
		}
	}
	mp.Peer = p
	if p.Complete() {
		sw.complete++
	}
	sw.pushNewest(mp)
	return nil
}

// Remove implements PeerStore.
func (s *MemoryStore) Remove(ctx context.Context, ih InfoHash, id PeerID) error {
	sh, now, err := s.lock(ctx, ih)
	if err != nil {
		return err
	}
	defer sh.mu.Unlock()
	sw := s.live(sh, ih, now)
	if sw == nil {
		return nil
	}
	if mp := sw.byID[id]; mp != nil {
		sw.remove(mp)
		sh.peers--
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
// touched or swept (the janitor sweeps every TTL/2). It locks each shard
// once, briefly, and does not scan the swarms.
func (s *MemoryStore) Stats(ctx context.Context) (StoreStats, error) {
	if err := ctx.Err(); err != nil {
		return StoreStats{}, fmt.Errorf("tracker: memory store: %w", err)
	}
	var st StoreStats
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		closed := sh.swarms == nil
		st.Swarms += len(sh.swarms)
		st.Peers += sh.peers
		sh.mu.Unlock()
		if closed {
			return StoreStats{}, ErrStoreClosed
		}
	}
	return st, nil
}

// Close stops the janitor and drops every swarm. It is idempotent.
func (s *MemoryStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			sh.swarms = nil
			sh.peers = 0
			sh.mu.Unlock()
		}
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

// expire removes the peers last seen at or before cutoff.
func (sw *memSwarm) expire(cutoff time.Time) {
	for sw.oldest != nil && !sw.oldest.LastSeen.After(cutoff) {
		sw.remove(sw.oldest)
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
	delete(sw.byID, mp.ID)
}

// unlink takes mp out of the expiry list.
func (sw *memSwarm) unlink(mp *memPeer) {
	if mp.older != nil {
		mp.older.newer = mp.newer
	} else {
		sw.oldest = mp.newer
	}
	if mp.newer != nil {
		mp.newer.older = mp.older
	} else {
		sw.newest = mp.older
	}
	mp.older, mp.newer = nil, nil
}

// pushNewest appends mp to the expiry list as the most recently seen peer.
func (sw *memSwarm) pushNewest(mp *memPeer) {
	mp.older = sw.newest
	if sw.newest != nil {
		sw.newest.newer = mp
	} else {
		sw.oldest = mp
	}
	sw.newest = mp
}
