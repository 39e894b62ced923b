package p2p

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
)

// Upstream peers (one-way connections). A tracker running the topology
// policy hands a location's border peers some peers of other locations
// that hold more of the blob than the location does, and names them
// "upstream" in its answer (tracker.UpstreamMarker). A node takes pieces
// from an upstream peer and gives it none: a connection carries pieces
// both ways, and without this the other location would import pieces back
// across the same border, which the location takes the blob across only
// to pass it on inside.
//
// A node keeps an upstream peer choked for good: its connection to that
// peer never carries the Unchoke or AllowedFast (BEP 6) messages anacrolix
// writes, so the peer never asks it for a piece. The peer still learns
// what the node has (its Haves pass), which a super-seeding seeder needs to
// offer the next piece. Which connections are upstream is decided once per
// connection, at the handshake, by the peer's IP address and the torrent's
// info hash: a peer named upstream later keeps the connection it has.

const (
	msgUnchoke     = 1
	msgAllowedFast = 0x11
)

// upstreams are the upstream peers per torrent, as the trackers named
// them, and the torrent's share (see shareMask); safe for concurrent use.
type upstreams struct {
	mu sync.Mutex
	m  map[metainfo.Hash]*upstreamSet
}

// upstreamSet is what upstreams knows of one torrent.
type upstreamSet struct {
	ips   map[netip.Addr]struct{}
	addrs []netip.AddrPort // as named, to dial again
	mask  shareMask
	// unmasked: the download stalled with a share, which is off for good.
	unmasked bool
	// demoted: the last word of a tracker was that this node is not a
	// border peer.
	demoted bool
}

// maxUpstreams bounds the addresses remembered per torrent: a tracker
// names a few per answer.
const maxUpstreams = 256

// shareMask is the part of a torrent's pieces a border peer takes from its
// upstream peers: those whose index is share modulo shares, of pieces.
// With shares below 2 it takes every piece.
type shareMask struct{ share, shares, pieces int }

// active reports whether the mask hides any piece.
func (m shareMask) active() bool { return m.shares > 1 && m.pieces > 0 }

// has reports whether piece i is in the share.
func (m shareMask) has(i int) bool { return !m.active() || i%m.shares == m.share }

// set returns ih's set, made if need be; u.mu is held.
func (u *upstreams) set(ih metainfo.Hash) *upstreamSet {
	if u.m == nil {
		u.m = make(map[metainfo.Hash]*upstreamSet)
	}
	s := u.m[ih]
	if s == nil {
		s = &upstreamSet{ips: make(map[netip.Addr]struct{})}
		u.m[ih] = s
	}
	return s
}

// add records addrs as upstream peers of the torrent ih.
func (u *upstreams) add(ih metainfo.Hash, addrs []netip.AddrPort) {
	if len(addrs) == 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.set(ih)
	for _, a := range addrs {
		if len(s.ips) >= maxUpstreams {
			break
		}
		if _, ok := s.ips[a.Addr()]; !ok {
			s.ips[a.Addr()] = struct{}{}
			s.addrs = append(s.addrs, a)
		}
	}
}

// is reports whether ip is an upstream peer of the torrent ih.
func (u *upstreams) is(ih metainfo.Hash, ip netip.Addr) bool {
	up, _ := u.lookup(ih, ip)
	return up
}

// lookup reports whether ip is an upstream peer of the torrent ih, and the
// torrent's share.
func (u *upstreams) lookup(ih metainfo.Hash, ip netip.Addr) (bool, shareMask) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.m[ih]
	if s == nil {
		return false, shareMask{}
	}
	_, ok := s.ips[ip]
	return ok, s.mask
}

// setShare sets the torrent ih's share, unless a stall turned shares off
// for it, and reports whether it changed.
func (u *upstreams) setShare(ih metainfo.Hash, m shareMask) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.set(ih)
	s.demoted = false
	if s.unmasked || s.mask == m {
		return false
	}
	s.mask = m
	return true
}

// demote records that this node is not a border peer of the torrent ih,
// whose share (a connection to a peer it was handed, the seeder it falls
// back on say, takes every piece) ends; it reports whether the node was
// a border peer with upstream peers until now.
func (u *upstreams) demote(ih metainfo.Hash) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.set(ih)
	was := !s.demoted && len(s.ips) > 0
	s.demoted, s.mask = true, shareMask{}
	return was
}

// allowsDirect reports whether a direct transfer (which the share and the
// connections' fate do not reach) may take pieces of the torrent ih from
// ip: any peer that is not upstream, and an upstream one only while this
// node is a border peer that takes every piece.
func (u *upstreams) allowsDirect(ih metainfo.Hash, ip netip.Addr) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.m[ih]
	if s == nil {
		return true
	}
	if _, ok := s.ips[ip]; !ok {
		return true
	}
	return !s.demoted && !s.mask.active()
}

// unmask turns the torrent ih's share off for good, if it has one, and
// reports whether it had.
func (u *upstreams) unmask(ih metainfo.Hash) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.m[ih]
	if s == nil || !s.mask.active() {
		return false
	}
	s.unmasked = true
	s.mask = shareMask{}
	return true
}

// maskOf returns the torrent ih's share.
func (u *upstreams) maskOf(ih metainfo.Hash) shareMask {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s := u.m[ih]; s != nil {
		return s.mask
	}
	return shareMask{}
}

// closeConns closes t's connections to its upstream peers and returns
// them. The peers stay known as upstream, so that a connection opened to
// one again is one-way too.
func (u *upstreams) closeConns(t *torrent.Torrent) []*torrent.PeerConn {
	ih := t.InfoHash()
	var closed []*torrent.PeerConn
	for _, pc := range t.PeerConns() {
		ap, err := netip.ParseAddrPort(pc.RemoteAddr.String())
		if err == nil && u.is(ih, ap.Addr().Unmap()) {
			pc.Close()
			closed = append(closed, pc)
		}
	}
	return closed
}

// reconnect closes t's connections to its upstream peers and dials them
// again, so that the new connections take t's share as it is now; it
// returns how many it closed. anacrolix dials no address it still has a
// connection to, and a closed connection stays listed until its reader
// ends, so the addresses are given back once the closed connections are
// gone (or after reconnectWait, or when ctx ends).
func (u *upstreams) reconnect(ctx context.Context, t *torrent.Torrent) int {
	ih := t.InfoHash()
	closed := u.closeConns(t)
	if len(closed) == 0 {
		return 0
	}
	ips := map[netip.Addr]bool{}
	for _, pc := range closed {
		if ap, err := netip.ParseAddrPort(pc.RemoteAddr.String()); err == nil {
			ips[ap.Addr().Unmap()] = true
		}
	}
	deadline := time.NewTimer(reconnectWait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		live := t.PeerConns()
		if !slices.ContainsFunc(closed, func(pc *torrent.PeerConn) bool { return slices.Contains(live, pc) }) {
			break
		}
		select {
		case <-ctx.Done():
			return len(closed)
		case <-deadline.C:
			break wait
		case <-tick.C:
		}
	}
	u.mu.Lock()
	var addrs []netip.AddrPort
	if s := u.m[ih]; s != nil {
		for _, a := range s.addrs {
			if ips[a.Addr()] {
				addrs = append(addrs, a)
			}
		}
	}
	u.mu.Unlock()
	addPeers(t, addrs)
	return len(closed)
}

// reconnectWait bounds how long reconnect waits for closed connections to
// go before it dials their peers again.
const reconnectWait = 2 * time.Second

// forget drops what is known of the torrent ih.
func (u *upstreams) forget(ih metainfo.Hash) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.m, ih)
}

// oneWayConn wraps a located agent's peer connection. Until the handshake
// it watches what anacrolix writes and reads; then, for an upstream peer,
// it drops the Unchoke and AllowedFast messages anacrolix writes, and, when
// the torrent has a share (shareMask), hides from anacrolix the pieces the
// peer has outside it (its Have, Bitfield and HaveAll messages lose them),
// so that anacrolix asks it for the share only. For any other peer it
// steps aside (bytes pass straight through).
type oneWayConn struct {
	net.Conn
	up *upstreams

	dmu      sync.Mutex // guards the decision
	decided  bool
	upstream bool
	mask     shareMask

	plain atomic.Bool // writes: decided, and not upstream
	wmu   sync.Mutex  // serializes writes; guards out, buf, other
	out   wireScanner
	buf   []byte
	other bool // decided: not upstream (plain is set once the Write ends)

	rplain atomic.Bool // reads: decided, and nothing to hide
	rmu    sync.Mutex  // serializes reads; guards in, rbuf, rpos, rerr, rmask, rother
	in     wireScanner
	rbuf   []byte // what the next Reads return
	rpos   int
	rerr   error
	rmask  shareMask // active on an upstream peer's connection with a share
	rother bool      // decided: nothing to hide
}

func (u *upstreams) wrap(c net.Conn) net.Conn {
	w := &oneWayConn{Conn: c, up: u}
	w.out = wireScanner{keep: w.drop, handshake: w.onHandshake}
	w.in = wireScanner{keep: w.hide, handshake: w.onPeerHandshake}
	return w
}

// decide decides, from the torrent's info hash in the first handshake
// either way (it is the same in both), whether the peer is upstream, and
// the share to take from it, once per connection.
func (c *oneWayConn) decide(hs []byte) (bool, shareMask) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if !c.decided {
		c.decided = true
		var ih metainfo.Hash
		copy(ih[:], hs[28:48])
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			c.upstream, c.mask = c.up.lookup(ih, ap.Addr().Unmap())
		}
	}
	return c.upstream, c.mask
}

// onHandshake is the handshake anacrolix writes; called with wmu held.
func (c *oneWayConn) onHandshake(hs []byte) {
	up, _ := c.decide(hs)
	c.other = !up
}

// onPeerHandshake is the handshake the peer sends; called with rmu held.
// The pieces of a peer that super-seeds (superseed.go: a seeder, or an
// agent streamed the blob whole) are never hidden: it offers each peer a
// piece or two at a time and each piece to a peer once, so a hidden offer
// would hold its slot and never be taken. A super-seeding agent says so
// in its handshake (superSeeds); a seeder's peer ID says it.
func (c *oneWayConn) onPeerHandshake(hs []byte) {
	up, m := c.decide(hs)
	if up && m.active() && !isSeederID(hs[48:68]) && !superSeeds(hs) {
		c.rmask = m
	} else {
		c.rother = true
	}
}

// drop says which messages to withhold: those that would let an upstream
// peer ask for pieces.
func (c *oneWayConn) drop(id byte) bool {
	return c.upstream && (id == msgUnchoke || id == msgAllowedFast)
}

// hide says which of the peer's messages to rewrite: those that say what
// it has, on a connection with a share.
func (c *oneWayConn) hide(id byte) bool {
	return c.rmask.active() && (id == msgHave || id == msgBitfield || id == msgHaveAll)
}

// masked appends to rbuf what anacrolix is to read of the peer's message
// id: the message less the pieces outside the share.
func (c *oneWayConn) masked(id byte, payload []byte) {
	m := c.rmask
	switch id {
	case msgHave:
		if len(payload) == 4 && !m.has(int(binary.BigEndian.Uint32(payload))) {
			return
		}
		c.rbuf = append(c.rbuf, wireMessage(id, payload)...)
	case msgBitfield:
		bf := slices.Clone(payload)
		for i := range len(bf) * 8 {
			if !m.has(i) {
				bf[i/8] &^= 0x80 >> (i % 8)
			}
		}
		c.rbuf = append(c.rbuf, wireMessage(id, bf)...)
	case msgHaveAll:
		bf := make([]byte, (m.pieces+7)/8)
		for i := range m.pieces {
			if m.has(i) {
				bf[i/8] |= 0x80 >> (i % 8)
			}
		}
		c.rbuf = append(c.rbuf, wireMessage(msgBitfield, bf)...)
	}
}

// Read returns the peer's bytes, rewritten where they say what it has.
func (c *oneWayConn) Read(b []byte) (int, error) {
	if c.rplain.Load() {
		return c.Conn.Read(b)
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for c.rpos == len(c.rbuf) {
		if err := c.rerr; err != nil {
			// What came with the bytes before, once.
			c.rerr = nil
			return 0, err
		}
		c.rbuf, c.rpos = c.rbuf[:0], 0
		n, err := c.Conn.Read(b)
		c.in.scan(b[:n], func(raw []byte) { c.rbuf = append(c.rbuf, raw...) }, c.masked)
		c.rerr = err
	}
	n := copy(b, c.rbuf[c.rpos:])
	c.rpos += n
	// Nothing to hide, or not the plain peer wire: the next reads pass
	// straight through, once nothing read is left to return and the
	// scanner holds no part of a message header.
	if c.rpos == len(c.rbuf) && c.rerr == nil && (c.rother && c.in.atBoundary() || c.in.opaque) {
		c.rplain.Store(true)
	}
	return n, nil
}

// Write sends anacrolix's bytes less the withheld messages.
func (c *oneWayConn) Write(b []byte) (int, error) {
	if c.plain.Load() {
		return c.Conn.Write(b)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.plain.Load() {
		return c.Conn.Write(b)
	}
	c.buf = c.buf[:0]
	c.out.scan(b, func(raw []byte) { c.buf = append(c.buf, raw...) }, func(byte, []byte) {})
	if len(c.buf) > 0 {
		if _, err := c.Conn.Write(c.buf); err != nil {
			return 0, err
		}
	}
	// Not upstream, or not the plain peer wire (nothing to filter): the
	// next writes pass straight through, once the scanner holds back no
	// part of a message header.
	if c.other && c.out.atBoundary() || c.out.opaque {
		c.plain.Store(true)
	}
	return len(b), nil
}
