package tracker

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Defaults of TopologyConfig, applied by TopologyConfig.WithDefaults.
const (
	// DefaultTopologyRemote is how many border peers each location has in
	// a swarm, and how many remote peers each of them is handed: two, so
	// that one slow or dead border peer does not hold up its location.
	DefaultTopologyRemote = 2
	// MaxTopologyRemote bounds TopologyConfig.Remote: the shares a
	// location's imports are cut into (see BorderJudge), which Eagle's
	// nodes accept up to this many.
	MaxTopologyRemote = 64
	// DefaultTopologyLoadHalfLife is how fast a peer's load (its recent
	// handouts) decays: about one announce interval.
	DefaultTopologyLoadHalfLife = 10 * time.Second
	// DefaultTopologySample is the sample of the swarm TopologyPolicy asks
	// the Server for: every member of a swarm of up to a thousand peers.
	DefaultTopologySample = 1000
	// DefaultTopologyMaxTracked caps the peers whose load is tracked
	// (about 200 bytes each).
	DefaultTopologyMaxTracked = 1 << 16
)

// TopologyConfig configures a TopologyPolicy. Zero fields take their
// defaults; in the eagle binary's YAML it is tracker.topology.
type TopologyConfig struct {
	// Remote is how many members of a location are its border peers in a
	// swarm, and how many remote peers each border peer is handed.
	// Default 2 (DefaultTopologyRemote).
	Remote int `yaml:"remote"`
	// LoadHalfLife is the half-life of a peer's load: a handout counts one
	// now, a half after LoadHalfLife, a quarter after twice that. Default
	// 10s (DefaultTopologyLoadHalfLife).
	LoadHalfLife time.Duration `yaml:"load_half_life"`
	// Sample is how many of the swarm's peers the Server passes to Order
	// (see SampleSizer), at least its own default of twice the numwant.
	// A location's members are judged by who is in it, so it should hold
	// a whole swarm; a larger one costs the store more per announce.
	// Default 1000 (DefaultTopologySample).
	Sample int `yaml:"sample"`
	// MaxTracked caps the peers (ID and address) whose load the policy
	// keeps; past it the least recently handed out are forgotten. Default
	// 65536 (DefaultTopologyMaxTracked).
	MaxTracked int `yaml:"max_tracked"`
}

// WithDefaults returns a copy of c with every zero or negative field set
// to its default.
func (c TopologyConfig) WithDefaults() TopologyConfig {
	if c.Remote <= 0 {
		c.Remote = DefaultTopologyRemote
	}
	if c.LoadHalfLife <= 0 {
		c.LoadHalfLife = DefaultTopologyLoadHalfLife
	}
	if c.Sample <= 0 {
		c.Sample = DefaultTopologySample
	}
	if c.MaxTracked <= 0 {
		c.MaxTracked = DefaultTopologyMaxTracked
	}
	return c
}

// Validate reports every problem in c as one error wrapping
// ErrInvalidConfig, naming each key as it appears under tracker: in the
// eagle binary's YAML (topology.remote, ...). Zero means the default;
// negative values are invalid.
func (c TopologyConfig) Validate() error {
	var errs []error
	for _, f := range []struct {
		key string
		v   int64
		s   string
	}{
		{"topology.remote", int64(c.Remote), fmt.Sprint(c.Remote)},
		{"topology.load_half_life", int64(c.LoadHalfLife), c.LoadHalfLife.String()},
		{"topology.sample", int64(c.Sample), fmt.Sprint(c.Sample)},
		{"topology.max_tracked", int64(c.MaxTracked), fmt.Sprint(c.MaxTracked)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be positive (0 means the default)", f.key, f.s))
		}
	}
	if c.Remote > MaxTopologyRemote {
		errs = append(errs, fmt.Errorf("topology.remote %d: at most %d", c.Remote, MaxTopologyRemote))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// TopologyPolicy hands out peers by where they sit in the network
// (Peer.Location), how much of the blob they hold and how loaded they
// are, so that each location takes a blob across its border about once
// and no location is left without a way in. It is safe for concurrent
// use, and keeps no state that tracker replicas must share: what it
// decides follows from the swarm and the asker, except for the load,
// which only breaks ties.
//
// # Terms
//
// A location is a label of "/"-separated segments, widest first, such as
// region/zone/rack (see ValidLocation). The affinity of two locations is
// the number of leading segments they share, 0 if either is unknown:
// eu/a/r1 and eu/a/r2 have 2, eu/a and eu/b 1, eu/a and us/a 0.
//
// The asker's local group is the candidates whose location is exactly the
// asker's. Everyone else is remote, seeders included: seeders sit in one
// place, and every location should pull through its own border rather
// than each of its members pulling from the seeders. (A location that is
// a prefix of another, eu/a beside eu/a/r1, is a different group: groups
// must be the same whichever member asks.)
//
// The load of a peer is how often it was handed out recently: each
// handout (HandoutRecorder, the Server reports what it handed out) adds
// one to a counter that halves every LoadHalfLife. It is kept per peer ID
// and address, across swarms, since a node's upload is shared by all its
// blobs, for up to MaxTracked peers; it is local to each tracker replica.
//
// # The order
//
// An asker with no location is handed peers exactly as by
// CompletenessPolicy, so that a fleet where only some nodes have a
// location keeps working.
//
// Otherwise the asker is handed its local group, ordered by completeness
// (seeders first, then fewest bytes left, since those hold the most
// pieces), then by load (the least handed out first, so that the first
// peers of every list are not always the same ones), then at random.
//
// Remote peers are handed only to the location's border peers: in each
// swarm, the Remote members of the location with the highest rendezvous
// hash of (info hash, peer ID), FNV-1a over the 40 bytes and a 64-bit
// finaliser. An asker is a border peer if fewer than Remote of the local
// group members in its sample rank above it; one alone in its location
// always is. Rendezvous hashing makes the choice stable from announce to
// announce and the same on every tracker replica, without shared state,
// and spreads the border duty of a location's many swarms over its
// members. The other members are handed local peers only: they get the
// blob from the border peers and from each other, so that the location
// takes it across its border about once (each border peer imports its
// share of the pieces, see Border), not once per member.
//
// A border peer is handed remote peers placed right after its first
// local peer, so that cutting the list to any numwant above 2·Remote keeps
// them all. They are the remote peers that hold pieces the local group
// lacks: up to Remote complete ones (seeders, or finished members of other
// locations; they qualify unless the group holds a complete peer), and up
// to Remote partial ones with fewer bytes left than the most complete
// member of the local group (the asker included). Both kinds are upstream
// (UpstreamMarker): the border peer takes pieces from them and gives none
// back over those connections, so that a location does not import back
// what it exports. Partial ones let a location take pieces from another
// that is still downloading instead of waiting for the seeders' uplink,
// which would otherwise carry every location's copy. Every border peer
// takes both kinds: each takes only its share of the pieces from them
// (see Border), so two do not fetch the same pieces across the border
// (a seeder's pieces are not split by share: it super-seeds, offering
// each piece to about one peer anyway).
// Among each kind it prefers the nearest (highest
// affinity: same region, other zone before another region), then the
// location with the least export load, then the least loaded peer, then
// the most complete, then any. A location's export load is how often its
// members were recently picked for other locations' border peers (one
// per pick, halving every LoadHalfLife, across swarms): a location's own
// border link carries what it exports, so that once one location feeds
// another, a third takes from elsewhere (often the one being fed, which
// then passes on what it got) rather than through the same link. The
// peer load then spreads borders over the nodes of a location.
// The no-starvation rule: a late or empty location, whose members hold
// nothing while others hold everything, thus always has Remote border
// peers pulling complete remote peers into it. When no remote peer
// qualifies and the local group holds no complete peer (the blob is
// spread over locations that each lack some of it, for example after its
// seeders left), border peers are handed the nearest remote peers that
// hold anything at all (fewer bytes left than the emptiest peer in the
// sample), ordered the same way, so that locations can still trade
// pieces; at a swarm's start, when nobody holds anything, none are. When
// the local group holds a complete peer, nobody in it is handed remote
// peers: it has all it needs inside.
//
// # Samples and limits
//
// The Server passes a sample of up to Sample peers of the swarm (the
// whole swarm below that). In a larger swarm an asker may miss members
// of its location that rank above it and count itself a border peer:
// sampling can only add border peers, never remove the Remote true ones,
// so a location may cross its border more often than Remote times but is
// never starved. A dead member stays in its group, and may hold a border
// place, until its entry expires (the store's TTL); the agents' own
// fallback to the seeders covers that time.
type TopologyPolicy struct {
	remote   int
	sample   int
	halfLife float64 // seconds
	now      func() time.Time

	mu   sync.Mutex
	load *simplelru.LRU[loadKey, loadEntry]
	// exports is each location's export load: how often its members were
	// recently picked as remote peers for another location's border
	// peers (see Order).
	exports *simplelru.LRU[string, loadEntry]
}

var (
	_ SampleSizer     = (*TopologyPolicy)(nil)
	_ HandoutRecorder = (*TopologyPolicy)(nil)
)

// loadKey identifies a peer for its load.
type loadKey struct {
	id   PeerID
	addr [18]byte // IP (16 bytes, IPv4 mapped) and port
}

func keyOf(p Peer) loadKey {
	k := loadKey{id: p.ID}
	ip := p.Addr.Addr().As16()
	copy(k.addr[:16], ip[:])
	k.addr[16], k.addr[17] = byte(p.Addr.Port()>>8), byte(p.Addr.Port())
	return k
}

// loadEntry is a load as of a time: v handouts, decayed to at.
type loadEntry struct {
	v  float64
	at int64 // Unix nanoseconds
}

// NewTopologyPolicy returns a TopologyPolicy with cfg (zero or negative
// fields take their defaults; see TopologyConfig). It starts no goroutine
// and needs no Close: loads decay when they are read, and the least
// recently handed out peers are forgotten past cfg.MaxTracked.
func NewTopologyPolicy(cfg TopologyConfig) *TopologyPolicy {
	cfg = cfg.WithDefaults()
	load, err := simplelru.NewLRU[loadKey, loadEntry](cfg.MaxTracked, nil)
	if err != nil {
		panic(err) // only for a size <= 0, which WithDefaults rules out
	}
	exports, err := simplelru.NewLRU[string, loadEntry](cfg.MaxTracked, nil)
	if err != nil {
		panic(err)
	}
	return &TopologyPolicy{
		remote:   cfg.Remote,
		sample:   cfg.Sample,
		halfLife: cfg.LoadHalfLife.Seconds(),
		now:      time.Now,
		load:     load,
		exports:  exports,
	}
}

// SampleSize implements SampleSizer: TopologyConfig.Sample.
func (p *TopologyPolicy) SampleSize(numWant int) int { return p.sample }

// RecordHandout implements HandoutRecorder: every peer handed out adds
// one to its load, whatever the swarm.
func (p *TopologyPolicy) RecordHandout(_ InfoHash, handed []Peer) {
	now := p.now().UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range handed {
		k := keyOf(h)
		e, _ := p.load.Peek(k)
		p.load.Add(k, loadEntry{v: p.decayed(e, now) + 1, at: now})
	}
}

// decayed returns e's load at now.
func (p *TopologyPolicy) decayed(e loadEntry, now int64) float64 {
	if e.v == 0 || now <= e.at {
		return e.v
	}
	return e.v * math.Exp2(-float64(now-e.at)/1e9/p.halfLife)
}

// topoKey is what Order sorts, one per candidate.
type topoKey struct {
	left int64
	load float64
	// export is the export load of the candidate's location.
	export float64
	tie    uint64 // random
	aff    int    // affinity with the asker
	idx    int    // index in candidates
}

// topoScratch is Order's reusable memory.
type topoScratch struct {
	keys  []topoKey
	order []int
}

var topoPool = sync.Pool{New: func() any { return new(topoScratch) }}

// Order implements Policy; see TopologyPolicy for the order.
func (p *TopologyPolicy) Order(ih InfoHash, requester Peer, candidates []Peer) []Peer {
	candidates = withoutRequester(requester, candidates)
	if requester.Location == "" {
		return CompletenessPolicy{}.Order(ih, requester, candidates)
	}
	sc := topoPool.Get().(*topoScratch)
	defer topoPool.Put(sc)
	keys := sc.keys[:0]
	for i, c := range candidates {
		keys = append(keys, topoKey{left: c.Left, tie: rand.Uint64(), aff: affinity(requester.Location, c.Location), idx: i})
	}
	p.loads(candidates, keys)

	// The local group first in keys, then the remote peers.
	nLocal := 0
	minLeft := requester.Left // of the local group, the asker included
	myScore := rendezvous(ih, requester.ID)
	above := 0 // local members ranking above the asker
	for i, k := range keys {
		c := &candidates[k.idx]
		if c.Location != requester.Location {
			continue
		}
		minLeft = min(minLeft, c.Left)
		if ranksAbove(ih, c.ID, requester.ID, myScore) {
			above++
		}
		keys[i], keys[nLocal] = keys[nLocal], keys[i]
		nLocal++
	}
	local, remote := keys[:nLocal], keys[nLocal:]
	slices.SortFunc(local, func(a, b topoKey) int {
		return cmp.Or(cmp.Compare(a.left, b.left), cmp.Compare(a.load, b.load), cmp.Compare(a.tie, b.tie))
	})

	var picked []topoKey
	if above < p.remote && minLeft > 0 {
		// A border peer of a group with no complete member: up to Remote
		// complete remote peers and up to Remote partial ones that hold
		// more than the group (its upstream peers), or failing both, the
		// remote peers that hold anything at all.
		class := func(k topoKey) int {
			switch {
			case k.left == 0:
				return 0
			case k.left < minLeft:
				return 1
			}
			return 2
		}
		// Complete ones nearest first; partial ones nearest first, then
		// the least handed out, so that the borders of several locations
		// spread over the nodes that hold the blob.
		p.exportLoads(candidates, remote)
		slices.SortFunc(remote, func(a, b topoKey) int {
			return cmp.Or(cmp.Compare(class(a), class(b)), cmp.Compare(b.aff, a.aff), cmp.Compare(a.export, b.export),
				cmp.Compare(a.load, b.load), cmp.Compare(a.left, b.left), cmp.Compare(a.tie, b.tie))
		})
		complete, more := 0, 0
		for _, k := range remote {
			switch class(k) {
			case 0:
				complete++
			case 1:
				more++
			}
		}
		nc, nm := min(complete, p.remote), min(more, p.remote)
		if nc < complete && nm > 0 {
			// Bring the nm partial ones next to the nc complete ones.
			rotateLeft(remote[nc:complete+nm], complete-nc)
		}
		n := nc + nm
		if complete+more == 0 {
			// Nothing remote holds more: trade with those that hold
			// anything at all (fewer bytes left than the emptiest peer).
			// At a swarm's start nobody does, and joining locations
			// then would only let them import from each other later.
			emptiest := requester.Left
			for _, k := range keys {
				emptiest = max(emptiest, k.left)
			}
			slices.SortStableFunc(remote, func(a, b topoKey) int {
				return cmp.Compare(min(emptiest-a.left, 1), min(emptiest-b.left, 1)) * -1
			})
			n = min(p.remote, len(remote))
			for n > 0 && remote[n-1].left >= emptiest {
				n--
			}
		}
		picked = remote[:n]
		if complete+more > 0 {
			p.recordExports(candidates, picked)
		}
	}

	// order: the first local peer, the picked remote ones, the other
	// local ones; then the dropped remote ones, which are cut off.
	order := sc.order[:0]
	kept := len(local) + len(picked)
	if len(local) > 0 {
		order = append(order, local[0].idx)
	}
	for _, k := range picked {
		order = append(order, k.idx)
	}
	for _, k := range local[min(1, len(local)):] {
		order = append(order, k.idx)
	}
	for _, k := range remote[len(picked):] {
		order = append(order, k.idx)
	}
	permuteTo(candidates, order)
	sc.keys, sc.order = keys, order
	return candidates[:kept]
}

// Border implements BorderJudge: requester is a border peer when fewer
// than Remote members of its location rank above it by rendezvous hash
// (see TopologyPolicy); its share is how many do, of as many shares as
// the location has border peers.
func (p *TopologyPolicy) Border(ih InfoHash, requester Peer, candidates []Peer) (share, shares int) {
	if requester.Location == "" {
		return -1, 0
	}
	myScore := rendezvous(ih, requester.ID)
	above, members := 0, 1
	for _, c := range candidates {
		if c.Location != requester.Location || c.ID == requester.ID {
			continue
		}
		members++
		if ranksAbove(ih, c.ID, requester.ID, myScore) {
			above++
		}
	}
	if above >= p.remote {
		return -1, 0
	}
	return above, min(p.remote, members)
}

// ranksAbove reports whether the member id ranks above the one whose ID is
// me and whose rendezvous score is myScore.
func ranksAbove(ih InfoHash, id, me PeerID, myScore uint64) bool {
	s := rendezvous(ih, id)
	return s > myScore || s == myScore && string(id[:]) > string(me[:])
}

// rotateLeft rotates s left by k places.
func rotateLeft[T any](s []T, k int) {
	slices.Reverse(s[:k])
	slices.Reverse(s[k:])
	slices.Reverse(s)
}

// Upstream implements UpstreamMarker: the partial remote peers handed to
// a border peer because they hold more than its location's most complete
// member (see TopologyPolicy), and the complete remote ones. A location
// then takes pieces from them and gives none back over those
// connections, so that a border peer joined to a partial peer elsewhere
// does not open its own location to that one's imports. Peers handed for
// trading (no remote peer holds more) are not upstream: locations that
// each lack part of a blob must give as well as take.
func (p *TopologyPolicy) Upstream(dst []Peer, requester Peer, handed []Peer) []Peer {
	if requester.Location == "" {
		return dst
	}
	minLeft := requester.Left
	for _, c := range handed {
		if c.Location == requester.Location {
			minLeft = min(minLeft, c.Left)
		}
	}
	for _, c := range handed {
		if c.Location != requester.Location && c.Left < minLeft {
			dst = append(dst, c)
		}
	}
	return dst
}

// loads sets keys' load from the table, one lock for all of them.
func (p *TopologyPolicy) loads(candidates []Peer, keys []topoKey) {
	now := p.now().UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.load.Len() == 0 {
		return
	}
	for i := range keys {
		if e, ok := p.load.Peek(keyOf(candidates[keys[i].idx])); ok {
			keys[i].load = p.decayed(e, now)
		}
	}
}

// exportLoads sets the export load of the remote candidates in keys.
func (p *TopologyPolicy) exportLoads(candidates []Peer, keys []topoKey) {
	now := p.now().UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exports.Len() == 0 {
		return
	}
	for i := range keys {
		if e, ok := p.exports.Peek(candidates[keys[i].idx].Location); ok {
			keys[i].export = p.decayed(e, now)
		}
	}
}

// recordExports adds one to the export load of each picked peer's
// location.
func (p *TopologyPolicy) recordExports(candidates []Peer, picked []topoKey) {
	if len(picked) == 0 {
		return
	}
	now := p.now().UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range picked {
		loc := candidates[k.idx].Location
		e, _ := p.exports.Peek(loc)
		p.exports.Add(loc, loadEntry{v: p.decayed(e, now) + 1, at: now})
	}
}

// rendezvous is the rendezvous hash of the peer id in the swarm ih:
// 64-bit FNV-1a over ih and id, then the SplitMix64 finaliser, since
// FNV's high bits mix poorly over inputs that differ at the end. It is
// part of what tracker replicas must agree on: do not change it.
func rendezvous(ih InfoHash, id PeerID) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, b := range ih {
		h = (h ^ uint64(b)) * prime
	}
	for _, b := range id {
		h = (h ^ uint64(b)) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// permuteTo rearranges ps in place so that the new ps[i] is the old
// ps[order[i]]; order must be a permutation of ps's indices. It marks
// order as it goes.
func permuteTo(ps []Peer, order []int) {
	for start := range order {
		if order[start] < 0 {
			continue
		}
		saved := ps[start]
		for j := start; ; {
			src := order[j]
			order[j] = -1
			if src == start {
				ps[j] = saved
				break
			}
			ps[j] = ps[src]
			j = src
		}
	}
}
