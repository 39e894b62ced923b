package tracker

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync"
)

// Policy decides the order in which peers are handed to an announcing peer:
// the client connects to the first ones first, and the server keeps only the
// first numwant. Pass one in Config.Policy; the built-in ones are
// RandomPolicy, CompletenessPolicy (the default) and TopologyPolicy.
//
// A Policy may also implement SampleSizer, to see more of the swarm than
// the Server samples by default, and HandoutRecorder, to learn what was
// handed out.
type Policy interface {
	// Order returns candidates in handout order for requester, a peer
	// announcing to the swarm ih. The candidates are a sample of the
	// swarm's live peers (see Server), with their Location filled in
	// from Config.Locations where they announced none. Order may reorder
	// and reuse the candidates slice, and drop entries, but must never
	// return the requester itself (same ID or same address). It is called
	// concurrently.
	Order(ih InfoHash, requester Peer, candidates []Peer) []Peer
}

// SampleSizer is implemented by a Policy that needs to see more of a swarm
// than the Server's default sample of twice the numwant: TopologyPolicy
// judges a location's members by who is in the sample.
type SampleSizer interface {
	// SampleSize returns how many of the swarm's peers the Server should
	// sample and pass to Order for an announce that wants numWant peers
	// (numWant > 0). The Server samples at least its default.
	SampleSize(numWant int) int
}

// HandoutRecorder is implemented by a Policy that orders peers by how much
// they were handed out (their load).
type HandoutRecorder interface {
	// RecordHandout is called by the Server, concurrently, with the peers
	// it hands to an announce of the swarm ih: what Order returned, cut to
	// the numwant. It is not called when nothing is handed out.
	RecordHandout(ih InfoHash, handed []Peer)
}

// UpstreamMarker is implemented by a Policy that hands some peers out for
// the requester to download from only. The Server lists those, among the
// peers it hands out, under the response's "upstream" and "upstream6" keys
// (compact, like "peers" and "peers6"); Eagle's nodes then never let such
// a peer download from them over their connection to it (they keep it
// choked), so that bytes cross from the upstream peer's side to the
// requester's and never back. Other clients ignore the keys.
type UpstreamMarker interface {
	// Upstream returns the peers of handed that requester should only
	// download from, appended to dst. handed is what Order returned for
	// requester, cut to the numwant. It is called concurrently.
	Upstream(dst []Peer, requester Peer, handed []Peer) []Peer
}

// BorderJudge is implemented by a Policy that lets only some members of a
// location take peers from other locations: its border peers. The Server
// then tells every requester with a location that is downloading whether
// it is one, and which share of the pieces it imports: under the response's "border" key, 0
// for no, else share+1 of "borders" shares. An Eagle node told it is not
// a border peer closes its connections to the upstream peers an earlier
// answer named (the first of a location to announce is its border peer
// until the others announce, and would otherwise go on importing beside
// them); a border peer takes from its upstream peers only the pieces
// whose index is its share modulo shares, so that the border peers of a
// location do not import the same pieces (see p2p.Config.Location).
type BorderJudge interface {
	// Border returns requester's share of the swarm ih's pieces, in
	// [0, shares), when it is a border peer of its location, and -1 when
	// it is not; candidates are its other members as the Server sampled
	// them (what Order is about to be given). It is called concurrently.
	Border(ih InfoHash, requester Peer, candidates []Peer) (share, shares int)
}

// RandomPolicy hands out peers in uniformly random order.
type RandomPolicy struct{}

// Order implements Policy.
func (RandomPolicy) Order(_ InfoHash, requester Peer, candidates []Peer) []Peer {
	candidates = withoutRequester(requester, candidates)
	rand.Shuffle(len(candidates), func(i, j int) {
		candidates[i], candidates[j] = candidates[j], candidates[i]
	})
	return candidates
}

// CompletenessPolicy hands out seeders first, then leechers with the fewest
// bytes left, since they hold the most pieces. Peers with equal Left come in
// uniformly random order, so that the first seeders in every list are not
// always the same ones.
type CompletenessPolicy struct{}

// orderKey is what CompletenessPolicy sorts: small and pointer-free, so that
// sorting does not move whole Peers around.
type orderKey struct {
	left int64
	tie  uint64 // random: breaks ties between equal Left
	idx  int    // index in candidates
}

var orderKeyPool = sync.Pool{New: func() any { return new([]orderKey) }}

// Order implements Policy.
func (CompletenessPolicy) Order(_ InfoHash, requester Peer, candidates []Peer) []Peer {
	candidates = withoutRequester(requester, candidates)
	kp := orderKeyPool.Get().(*[]orderKey)
	keys := (*kp)[:0]
	for i, p := range candidates {
		keys = append(keys, orderKey{left: p.Left, tie: rand.Uint64(), idx: i})
	}
	slices.SortFunc(keys, func(a, b orderKey) int {
		if c := cmp.Compare(a.left, b.left); c != 0 {
			return c
		}
		return cmp.Compare(a.tie, b.tie)
	})
	permute(candidates, keys)
	*kp = keys
	orderKeyPool.Put(kp)
	return candidates
}

// permute rearranges ps in place so that the new ps[i] is the old
// ps[keys[i].idx], following each cycle of the permutation once. It marks
// keys as it goes.
func permute(ps []Peer, keys []orderKey) {
	for start := range keys {
		if keys[start].idx < 0 {
			continue
		}
		saved := ps[start]
		for j := start; ; {
			src := keys[j].idx
			keys[j].idx = -1
			if src == start {
				ps[j] = saved
				break
			}
			ps[j] = ps[src]
			j = src
		}
	}
}

// withoutRequester removes, in place, the candidates with the requester's ID
// or address.
func withoutRequester(requester Peer, candidates []Peer) []Peer {
	return slices.DeleteFunc(candidates, func(p Peer) bool {
		return p.ID == requester.ID || p.Addr == requester.Addr
	})
}
