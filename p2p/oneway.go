package p2p

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

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

// upstreams are the upstream peers' IP addresses per torrent, as the
// trackers named them; safe for concurrent use.
type upstreams struct {
	mu sync.Mutex
	m  map[metainfo.Hash]map[netip.Addr]struct{}
}

// maxUpstreams bounds the addresses remembered per torrent: a tracker
// names a few per answer.
const maxUpstreams = 256

// add records addrs as upstream peers of the torrent ih.
func (u *upstreams) add(ih metainfo.Hash, addrs []netip.AddrPort) {
	if len(addrs) == 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = make(map[metainfo.Hash]map[netip.Addr]struct{})
	}
	set := u.m[ih]
	if set == nil {
		set = make(map[netip.Addr]struct{})
		u.m[ih] = set
	}
	for _, a := range addrs {
		if len(set) >= maxUpstreams {
			break
		}
		set[a.Addr()] = struct{}{}
	}
}

// is reports whether ip is an upstream peer of the torrent ih.
func (u *upstreams) is(ih metainfo.Hash, ip netip.Addr) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.m[ih][ip]
	return ok
}

// forget drops what is known of the torrent ih.
func (u *upstreams) forget(ih metainfo.Hash) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.m, ih)
}

// oneWayConn wraps a located agent's peer connection. Until the handshake
// it watches what anacrolix writes; then, for an upstream peer, it drops
// the Unchoke and AllowedFast messages, and for any other peer it steps
// aside (writes pass straight through).
type oneWayConn struct {
	net.Conn
	up *upstreams

	plain atomic.Bool // decided, and not upstream

	wmu      sync.Mutex // serializes writes; guards the rest
	out      wireScanner
	buf      []byte
	upstream bool
	other    bool // decided: not upstream (plain is set once the Write ends)
}

func (u *upstreams) wrap(c net.Conn) net.Conn {
	w := &oneWayConn{Conn: c, up: u}
	w.out = wireScanner{keep: w.drop, handshake: w.onHandshake}
	return w
}

// onHandshake decides, from the handshake anacrolix writes (the torrent's
// info hash is the same in both directions), whether the peer is
// upstream. Called with wmu held.
func (c *oneWayConn) onHandshake(hs []byte) {
	var ih metainfo.Hash
	copy(ih[:], hs[28:48])
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil && c.up.is(ih, ap.Addr().Unmap()) {
		c.upstream = true
		return
	}
	c.other = true
}

// drop says which messages to withhold: those that would let an upstream
// peer ask for pieces.
func (c *oneWayConn) drop(id byte) bool {
	return c.upstream && (id == msgUnchoke || id == msgAllowedFast)
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
