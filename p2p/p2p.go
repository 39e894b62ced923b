// Package p2p is Eagle's peer: it fetches blobs through a BitTorrent swarm
// (github.com/anacrolix/torrent), streams them to the caller in order as
// pieces are verified, keeps completed blobs in a storage.Store and seeds
// them to other peers.
package p2p

import (
	"context"

	"github.com/eagle-p2p/eagle/blob"
)

// MetaInfoSource returns the bencoded torrent metainfo for a blob, making
// sure that some seeder holds the blob. seeder.Client implements it.
// Implementations return an error wrapping blob.ErrNotFound when the origin
// has no such blob, and a *blob.OriginError when the origin refused the
// request.
type MetaInfoSource interface {
	MetaInfo(ctx context.Context, ref blob.Ref) ([]byte, error)
}
