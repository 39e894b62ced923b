package p2p

import (
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// Super-seeding (after BEP 16). A seeder that tells every peer it has every
// piece gets asked for the same pieces by many peers at once: all of them
// start with nothing and pick alike. Its uplink, the only source of pieces
// the swarm does not have yet, then carries duplicates, and everyone waits.
//
// So a seeder's peer connections are wrapped. The wrapper replaces the
// seeder's opening "I have everything" (HaveAll or a full Bitfield) with a
// Bitfield of only a few pieces, and later offers one more piece (a Have) to
// a peer each time a peer reports (with its own Have) that it got one. It
// offers pieces nobody has or was offered yet first, then the rarest, and
// keeps only a few offers outstanding at once, spread over the peers, so
// that each piece leaves the seeder about once and quickly, and the peers
// trade it among themselves. anacrolix itself is unchanged: it serves any
// piece a peer asks for, and peers only ask for pieces they were told of.
//
// A super-seeded connection says so in its handshake (superSeedBit): a
// border peer that takes only its share of the pieces from another
// location (oneway.go) must not hide such a peer's offers, which are made
// to it alone; hidden, they were taken by nobody, and the location's
// download stalled until a border peer gave up its share.

const (
	// superSeedSlots is how many offers may be outstanding in one swarm:
	// pieces the seeder told a peer of and the peer does not have yet.
	// Few, so that each offered piece arrives fast and can be passed on
	// soon; enough to keep the seeder's uplink busy. Over real sockets
	// each offered piece travels on its own TCP stream, which gets only a
	// share of its peer's downlink (the peer downloads from others too),
	// so the seeder needs several at once to send at its cap: 6 measured
	// best against 4, 8 and 12 over network namespaces at 8 and 16 nodes
	// (more left stragglers and duplicates), and no worse than 4
	// in-process (BENCHMARKS.md). A swarm of many peers gets up to
	// maxSuperSeedSlots (see slotLimit).
	superSeedSlots = 6
	// maxSuperSeedSlots is the most offers outstanding in a swarm of many
	// peers. With readers at the download's front no longer pulling every
	// connection towards the same piece (blobData.wantsPriority), 8 offers
	// took the median of 16 and 32 nodes over real sockets from 1.28-1.44
	// to 1.20-1.33 times the floor, and the slowest of 64 in-process from
	// 1.20-1.35 to 1.14-1.21; but with an offer outstanding at every peer
	// (8 of 8) a node fell 1.4-2 s behind.
	maxSuperSeedSlots = 8
	// superSeedOfferTTL is how long an offer holds its slot. A peer that
	// has not got the piece by then (it is slow, or stuck) no longer holds
	// up the others; the offer stays valid.
	superSeedOfferTTL = 3 * time.Second
	// pickWindow is how many of the lowest-numbered candidate pieces an
	// offer is drawn from. Offering roughly in order lets peers store a
	// blob as its pieces arrive (a blob is committed in order) instead of
	// copying most of it at the end; drawing at random from a window keeps
	// peers from all wanting the same few pieces. Strictly in order (1)
	// left some peers well behind the others; 32 did not (BENCHMARKS.md).
	pickWindow = 32
	// frontPieces is how many of a blob's first pieces are offered in
	// order, ahead of the random pick: every node's reader waits on the
	// first piece before anything else, and the blob is committed in
	// order. Drawn at random from the window like the others, the first
	// pieces could go out seconds after the rest: 64 in-process nodes at
	// 1 MiB/s held pieces 3-7 everywhere and piece 0 at 11 nodes when a
	// reader gave up on it (first_byte_timeout, 5 s).
	frontPieces = 4
	// isolationDelay is how long a peer may get pieces from this seeder
	// only before the seeder stops super-seeding it (see ssSwarm.open).
	// Within a swarm that trades, a peer has a piece from another peer
	// well before: offers are few, the other peers' copies many.
	isolationDelay = 2 * time.Second
)

// superSeedBit is the bit of the handshake's reserved bytes (byte 3, 0x01:
// bit 32 as BEP 4 counts them, which it leaves unassigned) by which a node
// tells its peer that it super-seeds the connection's torrent.
const (
	superSeedByte = 20 + 3 // in the 68-byte handshake
	superSeedBit  = 0x01
)

// superSeeds reports whether a handshake says its sender super-seeds the
// torrent (see superSeedBit).
func superSeeds(hs []byte) bool {
	return len(hs) > superSeedByte && hs[superSeedByte]&superSeedBit != 0
}

// superSeeder keeps the super-seeding state of one engine's swarms.
type superSeeder struct {
	log *slog.Logger // nil: no logging
	// opened counts the peers it stopped super-seeding (see ssSwarm.open).
	opened atomic.Int64
	mu     sync.Mutex
	swarms map[metainfo.Hash]*ssSwarm
}

func newSuperSeeder() *superSeeder {
	return &superSeeder{swarms: make(map[metainfo.Hash]*ssSwarm)}
}

// add starts super-seeding the torrent ih of n pieces.
func (s *superSeeder) add(ih metainfo.Hash, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.swarms[ih]; !ok {
		s.swarms[ih] = &ssSwarm{
			ss:      s,
			n:       n,
			have:    make([]int32, n),
			offered: make([]int32, n),
			peers:   make(map[*ssConn]*ssPeer),
		}
	}
}

// remove stops super-seeding ih. Connections already open carry on as
// plain ones.
func (s *superSeeder) remove(ih metainfo.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sw, ok := s.swarms[ih]; ok {
		sw.close()
		delete(s.swarms, ih)
	}
}

// close stops super-seeding everything.
func (s *superSeeder) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ih, sw := range s.swarms {
		sw.close()
		delete(s.swarms, ih)
	}
}

// ssSwarm is one super-seeded torrent. Guarded by superSeeder.mu.
type ssSwarm struct {
	ss     *superSeeder
	n      int
	closed bool
	// expiry runs fill once the offers made so far are past their TTL,
	// should nothing else happen in the swarm before then.
	expiry  *time.Timer
	have    []int32 // connected peers that have each piece
	offered []int32 // outstanding offers of each piece
	slots   int     // outstanding offers holding a slot
	peers   map[*ssConn]*ssPeer
}

// ssPeer is what the seeder knows about one peer connection.
type ssPeer struct {
	has    []bool
	told   []bool            // pieces the seeder has said it has
	offers map[int]time.Time // told, not yet had, by when told (zero: past its TTL)
	active int               // offers holding a slot
	untold int               // pieces it lacks and was not told of
	// started is set once the seeder's opening bitfield went out; offers
	// before then go into it.
	started bool
	// lastOffer orders peers for new offers, longest waiting first.
	lastOffer time.Time
	// startedAt is when started was set.
	startedAt time.Time
	// fromOthers counts the pieces it reported having, after its opening
	// bitfield, that the seeder had not told it of: it got them
	// elsewhere, so it trades. What it held when it connected says
	// nothing of that: a node streamed the blob's first bytes (cut-through)
	// joins with them, and counted as trading it was never opened and
	// waited 15 s for the piece its reader needed (the failover tests
	// with no tracker, where the seeder is its only peer).
	fromOthers int
	// isolated is set once the seeder told it of every piece (see open).
	isolated bool
}

func (sw *ssSwarm) close() {
	sw.closed = true
	if sw.expiry != nil {
		sw.expiry.Stop()
	}
}

func (sw *ssSwarm) join(c *ssConn) *ssPeer {
	p := &ssPeer{has: make([]bool, sw.n), told: make([]bool, sw.n), offers: make(map[int]time.Time), untold: sw.n}
	sw.peers[c] = p
	return p
}

func (sw *ssSwarm) leave(c *ssConn) {
	p, ok := sw.peers[c]
	if !ok {
		return
	}
	delete(sw.peers, c)
	for i, h := range p.has {
		if h {
			sw.have[i]--
		}
	}
	for i := range p.offers {
		sw.dropOffer(p, i)
	}
}

// got records that p has piece i; opening is set for the pieces of its
// opening bitfield (Bitfield or HaveAll), which it held when it connected.
func (sw *ssSwarm) got(p *ssPeer, i int, opening bool) {
	if i < 0 || i >= sw.n || p.has[i] {
		return
	}
	p.has[i] = true
	if !p.told[i] {
		p.untold--
		if !opening {
			p.fromOthers++
		}
	}
	sw.have[i]++
	if _, ok := p.offers[i]; ok {
		sw.dropOffer(p, i)
	}
}

func (sw *ssSwarm) dropOffer(p *ssPeer, i int) {
	at := p.offers[i]
	delete(p.offers, i)
	sw.offered[i]--
	if !at.IsZero() {
		sw.slots--
		p.active--
	}
}

// fill makes offers until the swarm's slots are taken or no started peer
// lacks a piece it was not told of. It calls tell for each offer to a
// started peer (an offer to a peer not started yet goes into its opening
// bitfield).
func (sw *ssSwarm) fill(now time.Time, tell func(c *ssConn, piece int)) {
	if sw.closed {
		return
	}
	defer sw.armExpiry()
	for c, p := range sw.peers {
		if sw.isIsolated(p, now) {
			sw.open(c, p, tell)
		}
	}
	// Offers past their time give up their slot.
	for _, p := range sw.peers {
		for i, at := range p.offers {
			if !at.IsZero() && now.Sub(at) > superSeedOfferTTL {
				p.offers[i] = time.Time{}
				sw.slots--
				p.active--
			}
		}
	}
	for sw.slots < sw.slotLimit() {
		c, p := sw.nextPeer()
		if p == nil {
			return
		}
		i := sw.pick(p)
		if i < 0 {
			return
		}
		p.told[i] = true
		p.untold--
		p.offers[i] = now
		p.lastOffer = now
		p.active++
		sw.offered[i]++
		sw.slots++
		if p.started {
			tell(c, i)
		}
	}
}

// isIsolated reports whether p looks cut off from the other peers: for
// isolationDelay since its opening bitfield, every piece it got came from
// this seeder, while other peers held pieces it lacks. That is a peer
// that could not learn of the others (no tracker answered it; the agent
// knows the seeders' addresses from their metainfo answers only) or
// cannot reach them. Super-seeding would starve it: it is shown a few
// pieces at a time, at random, and waits for the first one, which its
// reader needs before anything else, until every other piece was
// offered.
func (sw *ssSwarm) isIsolated(p *ssPeer, now time.Time) bool {
	if p.isolated || p.startedAt.IsZero() || p.fromOthers > 0 || p.untold == 0 || now.Sub(p.startedAt) < isolationDelay {
		return false
	}
	for i, h := range p.has {
		if !h && sw.have[i] > 0 {
			return true
		}
	}
	return false
}

// open stops super-seeding p: it is told of every piece it lacks, as a
// plain seeder would have, and asks for them in its own order. Its offers
// give up their slots.
func (sw *ssSwarm) open(c *ssConn, p *ssPeer, tell func(c *ssConn, piece int)) {
	p.isolated = true
	if sw.ss != nil {
		sw.ss.opened.Add(1)
	}
	for i := range p.offers {
		sw.dropOffer(p, i)
	}
	for i := range sw.n {
		if !p.has[i] && !p.told[i] {
			p.told[i] = true
			tell(c, i)
		}
	}
	p.untold = 0
	if c.ss != nil && c.ss.log != nil {
		c.ss.log.Debug("super-seeding: peer gets pieces from this seeder only; all pieces offered", "peer", c.RemoteAddr())
	}
}

// slotLimit is how many offers may be outstanding: superSeedSlots, or up
// to maxSuperSeedSlots while that leaves a quarter of the peers without
// one, to trade among themselves.
func (sw *ssSwarm) slotLimit() int {
	return min(maxSuperSeedSlots, max(superSeedSlots, 3*len(sw.peers)/4))
}

// armExpiry makes sure fill runs again when the offers holding slots are
// past their TTL, even if no peer reports anything until then. Called with
// ss.mu held.
func (sw *ssSwarm) armExpiry() {
	if sw.slots == 0 || sw.ss == nil {
		return
	}
	if sw.expiry != nil {
		sw.expiry.Reset(superSeedOfferTTL + time.Millisecond)
		return
	}
	sw.expiry = time.AfterFunc(superSeedOfferTTL+time.Millisecond, func() {
		sw.ss.mu.Lock()
		defer sw.ss.mu.Unlock()
		sw.fill(time.Now(), offer)
	})
}

// offer sends c an offer of piece i.
func offer(c *ssConn, i int) { c.queue(haveMessage(i)) }

// nextPeer is the peer waiting longest for an offer among those with fewer
// than their share of the slots and some piece they lack and were not told
// of.
func (sw *ssSwarm) nextPeer() (*ssConn, *ssPeer) {
	share := max(1, sw.slotLimit()/max(1, len(sw.peers)))
	var bc *ssConn
	var best *ssPeer
	for c, p := range sw.peers {
		if p.active >= share || p.untold == 0 {
			continue
		}
		if best == nil || p.lastOffer.Before(best.lastOffer) {
			bc, best = c, p
		}
	}
	return bc, best
}

// pick chooses the piece to offer p: one it lacks and was not told of, with
// the fewest copies in the swarm (held or on offer); among equals, the
// lowest-numbered if it is one of the first frontPieces, else one of the
// first pickWindow at random.
func (sw *ssSwarm) pick(p *ssPeer) int {
	best, bestScore, ties, first := -1, int32(0), 0, -1
	for i := range sw.n {
		if p.has[i] || p.told[i] {
			continue
		}
		score := sw.have[i] + sw.offered[i]
		switch {
		case best < 0 || score < bestScore:
			best, bestScore, ties, first = i, score, 1, i
		case score == bestScore && ties < pickWindow:
			ties++
			if rand.IntN(ties) == 0 {
				best = i
			}
		}
	}
	if first >= 0 && first < frontPieces {
		return first
	}
	return best
}

// ssConn wraps a seeder's peer connection (see the comment at the top).
type ssConn struct {
	net.Conn
	ss *superSeeder

	in wireScanner // read side; used by the reading goroutine only

	wmu    sync.Mutex // serializes writes; guards out and outBuf
	out    wireScanner
	outBuf []byte

	pmu      sync.Mutex
	pending  []byte // offers waiting for the next message boundary
	flushing bool   // the flusher goroutine runs
	wake     chan struct{}
	closed   chan struct{}
	wg       sync.WaitGroup

	// plain is set once the peer's handshake names a torrent that is not
	// super-seeded: from then on Write passes bytes straight through.
	plain atomic.Bool

	// hsOut holds this node's handshake, guarded by wmu, until its info
	// hash is written: its reserved bytes come before the info hash and
	// carry superSeedBit. hsSent is set once it went out.
	hsOut  []byte
	hsSent bool

	// Guarded by ss.mu.
	swarm   *ssSwarm
	peer    *ssPeer
	done    bool
	decided bool // whether to super-seed, at the first handshake either way
}

func (s *superSeeder) wrap(c net.Conn) net.Conn {
	w := &ssConn{Conn: c, ss: s, wake: make(chan struct{}, 1), closed: make(chan struct{})}
	w.in = wireScanner{keep: isHaveMessage, handshake: w.onHandshake}
	w.out = wireScanner{keep: w.keepOutbound}
	return w
}

func isHaveMessage(id byte) bool {
	switch id {
	case msgHave, msgBitfield, msgHaveAll, msgHaveNone:
		return true
	}
	return false
}

// onHandshake joins the connection to its swarm, if the torrent the peer
// asked for is super-seeded and the peer is not a seeder. A seeder holds
// the blob whole but, super-seeding it, tells this node of only a few
// pieces: super-seeded in turn, it took every offer of an agent streamed
// the blob whole as its first peer, never asked for them, and held the
// offers' slots from the agents that connected next for their whole TTL
// (TestStreamedAgentSuperSeeds).
func (c *ssConn) onHandshake(hs []byte) {
	var ih metainfo.Hash
	copy(ih[:], hs[28:48])
	c.ss.mu.Lock()
	defer c.ss.mu.Unlock()
	if isSeederID(hs[48:68]) {
		// Joined when this node's handshake went out first (it dialed).
		if sw := c.swarm; sw != nil {
			sw.leave(c)
			c.swarm, c.peer = nil, nil
			sw.fill(time.Now(), offer)
		}
		c.decided = true
		c.plain.Store(true)
		return
	}
	if !c.decide(ih) {
		c.plain.Store(true)
	}
}

// decide joins the connection to the swarm of the torrent ih if it is
// super-seeded, once, at the first handshake either way: the peer's
// (this node was dialed) or this node's (it dialed), so that what this
// node's handshake says (superSeedBit) and what it does agree. One case
// disagrees: a node that dialed a seeder said it super-seeds, and passes
// the seeder plainly once its handshake names it (onHandshake); only a
// border peer reads the bit, and a seeder is none. A node that dialed
// joins one round trip before the peer's handshake; offers made to it
// meanwhile go into its opening bitfield, or are given back if it leaves.
// It reports whether the connection is super-seeded. Called with ss.mu
// held.
func (c *ssConn) decide(ih metainfo.Hash) bool {
	if !c.decided {
		c.decided = true
		if sw, ok := c.ss.swarms[ih]; ok && !c.done {
			c.swarm, c.peer = sw, sw.join(c)
		}
	}
	return c.swarm != nil
}

// holdHandshake takes the start of this node's handshake from b until its
// info hash is complete, then sets superSeedBit in it if the connection is
// super-seeded. It returns what to write of b now (nil while it holds
// bytes back). Called with wmu held.
func (c *ssConn) holdHandshake(b []byte) []byte {
	const through = 48 // protocol, reserved bytes, info hash
	n := min(len(b), through-len(c.hsOut))
	c.hsOut = append(c.hsOut, b[:n]...)
	m := min(len(c.hsOut), len(wireProtocol))
	if string(c.hsOut[:m]) == wireProtocol[:m] && len(c.hsOut) < through {
		return nil
	}
	c.hsSent = true
	if len(c.hsOut) == through && string(c.hsOut[:len(wireProtocol)]) == wireProtocol {
		var ih metainfo.Hash
		copy(ih[:], c.hsOut[28:48])
		c.ss.mu.Lock()
		if c.decide(ih) {
			c.hsOut[superSeedByte] |= superSeedBit
		}
		c.ss.mu.Unlock()
	}
	out := append(c.hsOut, b[n:]...)
	c.hsOut = nil
	return out
}

// Read passes the peer's bytes on unchanged, noting the pieces it has.
func (c *ssConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.plain.Load() {
		c.in.scan(b[:n], func([]byte) {}, c.onInbound)
	}
	if err != nil {
		c.leave()
	}
	return n, err
}

func (c *ssConn) onInbound(id byte, payload []byte) {
	c.ss.mu.Lock()
	defer c.ss.mu.Unlock()
	sw, p := c.swarm, c.peer
	if sw == nil || c.done {
		return
	}
	switch id {
	case msgHave:
		if len(payload) == 4 {
			sw.got(p, int(uint32(payload[0])<<24|uint32(payload[1])<<16|uint32(payload[2])<<8|uint32(payload[3])), false)
		}
	case msgBitfield:
		for i := range sw.n {
			if i/8 < len(payload) && payload[i/8]&(0x80>>(i%8)) != 0 {
				sw.got(p, i, true)
			}
		}
	case msgHaveAll:
		for i := range sw.n {
			sw.got(p, i, true)
		}
	}
	sw.fill(time.Now(), offer)
}

func (c *ssConn) keepOutbound(id byte) bool {
	if id != msgHaveAll && id != msgBitfield {
		return false
	}
	c.ss.mu.Lock()
	defer c.ss.mu.Unlock()
	return c.peer != nil && !c.peer.started
}

// onOutbound replaces the seeder's opening HaveAll or Bitfield with a
// Bitfield of the pieces offered to this peer. Called with wmu held.
func (c *ssConn) onOutbound(id byte, payload []byte) []byte {
	c.ss.mu.Lock()
	defer c.ss.mu.Unlock()
	sw, p := c.swarm, c.peer
	if sw == nil || p == nil {
		// Left the swarm since keepOutbound looked (a seeder's handshake;
		// anacrolix reads it before it writes a bitfield, so not today):
		// the message goes out as written.
		return wireMessage(id, payload)
	}
	// p is not started yet: what fill offers it goes into the bitfield.
	now := time.Now()
	sw.fill(now, offer)
	p.started, p.startedAt = true, now
	bf := make([]byte, (sw.n+7)/8)
	for i, t := range p.told {
		if t {
			bf[i/8] |= 0x80 >> (i % 8)
		}
	}
	return wireMessage(msgBitfield, bf)
}

// Write sends the seeder's bytes, with its opening bitfield replaced and
// pending offers inserted between messages.
func (c *ssConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := len(b)
	if !c.hsSent {
		if b = c.holdHandshake(b); b == nil {
			return n, nil
		}
	}
	if c.plain.Load() {
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return n, nil
	}
	c.outBuf = c.outBuf[:0]
	c.out.scan(b, func(raw []byte) {
		c.outBuf = append(c.outBuf, raw...)
	}, func(id byte, payload []byte) {
		c.outBuf = append(c.outBuf, c.onOutbound(id, payload)...)
	})
	c.outBuf = c.takePending(c.outBuf)
	if _, err := c.Conn.Write(c.outBuf); err != nil {
		return 0, err
	}
	return n, nil
}

// queue adds an offer to send at the next message boundary: with the next
// Write, or by the connection's flusher goroutine if anacrolix has nothing
// to write (a peer waiting for an offer may well not be interested in
// anything else). It never blocks: it is called with ss.mu held, often on
// another connection's goroutine.
func (c *ssConn) queue(msg []byte) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	select {
	case <-c.closed:
		return
	default:
	}
	c.pending = append(c.pending, msg...)
	if !c.flushing {
		c.flushing = true
		c.wg.Add(1)
		go c.flusher()
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// flusher writes queued offers until the connection is closed. A write
// that blocks (a peer not reading) holds up only this connection.
func (c *ssConn) flusher() {
	defer c.wg.Done()
	for {
		select {
		case <-c.closed:
			return
		case <-c.wake:
		}
		c.wmu.Lock()
		buf := c.takePending(nil)
		var err error
		if len(buf) > 0 {
			_, err = c.Conn.Write(buf)
		}
		c.wmu.Unlock()
		if err != nil {
			return // anacrolix sees the error on its next Write or Read
		}
	}
}

// takePending appends the queued offers to buf if the stream written so far
// ends at a message boundary; otherwise the Write that completes the
// current message takes them. Called with wmu held.
func (c *ssConn) takePending(buf []byte) []byte {
	if !c.out.atBoundary() {
		return buf
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	buf = append(buf, c.pending...)
	c.pending = c.pending[:0]
	return buf
}

// leave takes the connection out of its swarm's accounting.
func (c *ssConn) leave() {
	c.ss.mu.Lock()
	defer c.ss.mu.Unlock()
	c.done = true
	if sw := c.swarm; sw != nil {
		sw.leave(c)
		sw.fill(time.Now(), offer)
	}
}

// Close closes the connection, leaves its swarm and stops the flusher.
func (c *ssConn) Close() error {
	c.leave()
	c.pmu.Lock()
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	c.pmu.Unlock()
	err := c.Conn.Close() // ends a flusher's blocked write
	c.wg.Wait()
	return err
}
