package tracker

import (
	"context"
	"encoding/hex"
	"errors"
	"net/netip"
	"time"
)

// Errors returned by PeerStore implementations.
var (
	// ErrStoreClosed is returned by every PeerStore method called after Close.
	ErrStoreClosed = errors.New("tracker: peer store closed")
	// ErrInvalidPeer is returned by Announce for a peer that cannot be handed
	// out: an invalid address, a zero port, a negative Left or an invalid
	// Location.
	ErrInvalidPeer = errors.New("tracker: invalid peer")
	// ErrFull is returned by Announce for a peer that would take the store
	// past one of its limits (StoreConfig): a new swarm beyond MaxSwarms, or
	// a new peer beyond MaxPeers or MaxPeersPerSwarm. Nothing is stored.
	// Peers already in a swarm keep re-announcing, and the store takes new
	// ones again as entries expire.
	ErrFull = errors.New("tracker: peer store full")
	// ErrPeerConflict is returned by Announce and Remove for a peer ID that
	// is live in the swarm with another IP address: an entry belongs to the
	// address that created it until it expires, so that nobody who learns a
	// peer's ID can move the peer's entry or remove it. The entry is left
	// as it is.
	ErrPeerConflict = errors.New("tracker: peer ID registered from another address")
)

// InfoHash identifies a swarm: the SHA-1 of a torrent's info dictionary.
type InfoHash [20]byte

// String returns the info hash in lower-case hex, as BitTorrent tools show it.
func (h InfoHash) String() string { return hex.EncodeToString(h[:]) }

// PeerID is the 20-byte identifier a BitTorrent client picks for itself.
type PeerID [20]byte

// String returns the peer ID in lower-case hex: peer IDs are arbitrary bytes.
func (id PeerID) String() string { return hex.EncodeToString(id[:]) }

// Peer is one member of a swarm as the tracker knows it.
type Peer struct {
	// ID is the peer's self-chosen identifier; a swarm holds one entry per ID.
	ID PeerID
	// Addr is where other peers connect to it.
	Addr netip.AddrPort
	// Left is the number of bytes the peer still needs; 0 means it holds the
	// whole torrent (a seeder).
	Left int64
	// LastSeen is when the store last recorded an announce from the peer. The
	// store sets it; the value passed to Announce is ignored.
	LastSeen time.Time
	// Location is where the peer sits in the network, a label such as
	// "region/zone/rack" (see ValidLocation): the one it announced, else
	// the one Config.Locations gives its address, else empty (unknown).
	// TopologyPolicy hands out peers by it.
	Location string
}

// Complete reports whether the peer holds the whole torrent (is a seeder).
func (p Peer) Complete() bool { return p.Left == 0 }

// valid reports whether p can be stored and handed out.
func (p Peer) valid() bool {
	return p.Addr.IsValid() && p.Addr.Port() != 0 && p.Left >= 0 && locationProblem(p.Location) == ""
}

// SwarmCounts summarises a swarm for announce and scrape responses.
type SwarmCounts struct {
	// Complete is the number of live peers with nothing left to download.
	Complete int
	// Incomplete is the number of live peers still downloading.
	Incomplete int
	// Downloaded is how many times a peer the store knew as incomplete
	// announced itself complete: the number of finished downloads. A store
	// keeps it while the swarm has peers, and at least for the TTL after the
	// swarm's last announce.
	Downloaded int
}

// StoreConfig is the expiry and the limits of a PeerStore. NewMemoryStore
// takes it; other stores are expected to honour the same fields. A zero or
// negative field means its default. Config.StoreConfig derives it from a
// Server's Config.
//
// The limits exist because announces come from the network: without them,
// announces with made-up info hashes and peer IDs grow the store until the
// tracker runs out of memory.
type StoreConfig struct {
	// PeerTTL is how long a peer is kept after its last announce.
	// Default DefaultPeerTTL.
	PeerTTL time.Duration
	// SeedTTL is how long a complete peer (Left == 0 in its last announce)
	// is kept after that announce. A tracker asks complete peers to
	// announce less often than downloading ones (Config.SeedInterval), so
	// that its load grows with downloads rather than with what nodes hold;
	// their entries must last as much longer. Default, or less than
	// PeerTTL: PeerTTL.
	SeedTTL time.Duration
	// MaxSwarms caps the swarms the store holds. Default DefaultMaxSwarms.
	MaxSwarms int
	// MaxPeers caps the peers over all swarms (a peer in two swarms counts
	// twice). Default DefaultMaxPeers.
	MaxPeers int
	// MaxPeersPerSwarm caps the peers of one swarm. Default
	// DefaultMaxPeersPerSwarm.
	MaxPeersPerSwarm int
}

// WithDefaults returns a copy of c with every zero or negative field set to
// its default.
func (c StoreConfig) WithDefaults() StoreConfig {
	if c.PeerTTL <= 0 {
		c.PeerTTL = DefaultPeerTTL
	}
	c.SeedTTL = max(c.SeedTTL, c.PeerTTL)
	if c.MaxSwarms <= 0 {
		c.MaxSwarms = DefaultMaxSwarms
	}
	if c.MaxPeers <= 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	if c.MaxPeersPerSwarm <= 0 {
		c.MaxPeersPerSwarm = DefaultMaxPeersPerSwarm
	}
	return c
}

// sameIP reports whether a and b are the same IP address, an IPv4-mapped
// IPv6 address being the same as its IPv4 form. Ports do not matter: a
// client restarted on another port is still the same peer.
func sameIP(a, b netip.Addr) bool { return a.Unmap() == b.Unmap() }

// PeerStore records swarm membership. Implementations must be safe for
// concurrent use, and are expected to be shared by several tracker replicas
// (for example over Redis), so every method takes a context and returns an
// error. A peer expires, and disappears from Peers and Counts, once the store's
// TTL passes without an announce from it.
//
// Package tracker/storetest holds the conformance suite every implementation
// must pass.
type PeerStore interface {
	// Announce adds p to the swarm ih, or refreshes it if its ID is already
	// there, and sets its LastSeen to now. When a peer that was incomplete
	// announces Left == 0, the swarm's Downloaded count grows by one. A peer
	// with an invalid address, zero port, negative Left or invalid Location
	// (see ValidLocation) gives ErrInvalidPeer. The store keeps p's
	// Location as given, empty included, and returns it from Peers.
	//
	// An entry is bound to the IP address that created it: while it is live,
	// an announce of its ID from another IP changes nothing and gives an
	// error wrapping ErrPeerConflict. A new port from the same IP is taken
	// (a restarted client). Once the entry expired, the ID is free again.
	//
	// An announce that would add a swarm beyond the store's MaxSwarms, or a
	// peer beyond MaxPeers or MaxPeersPerSwarm, adds nothing and gives an
	// error wrapping ErrFull. Expired entries are reclaimed before the store
	// reports itself full, and peers already stored keep re-announcing.
	Announce(ctx context.Context, ih InfoHash, p Peer) error
	// Remove drops the peer id from the swarm ih (BitTorrent event=stopped)
	// when from is the IP address the entry was announced from. From any
	// other address it leaves the entry and returns an error wrapping
	// ErrPeerConflict. Removing a peer that is not there is not an error.
	Remove(ctx context.Context, ih InfoHash, id PeerID, from netip.Addr) error
	// Peers returns up to limit live peers of the swarm ih, chosen uniformly
	// at random when the swarm holds more. The caller owns the slice. An
	// unknown swarm, or limit <= 0, gives no peers and no error.
	Peers(ctx context.Context, ih InfoHash, limit int) ([]Peer, error)
	// Counts returns the live complete and incomplete peers of the swarm ih
	// and its Downloaded count. An unknown swarm gives zero counts.
	Counts(ctx context.Context, ih InfoHash) (SwarmCounts, error)
	// Close releases the store; later calls return ErrStoreClosed. Close is
	// idempotent.
	Close() error
}
