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
	// out: an invalid address, a zero port or a negative Left.
	ErrInvalidPeer = errors.New("tracker: invalid peer")
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
}

// Complete reports whether the peer holds the whole torrent (is a seeder).
func (p Peer) Complete() bool { return p.Left == 0 }

// valid reports whether p can be stored and handed out.
func (p Peer) valid() bool {
	return p.Addr.IsValid() && p.Addr.Port() != 0 && p.Left >= 0
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
	// with an invalid address, zero port or negative Left gives ErrInvalidPeer.
	Announce(ctx context.Context, ih InfoHash, p Peer) error
	// Remove drops the peer id from the swarm ih (BitTorrent event=stopped).
	// Removing a peer that is not there is not an error.
	Remove(ctx context.Context, ih InfoHash, id PeerID) error
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
