// Package p2p is Eagle's peer: it fetches blobs through a BitTorrent swarm
// (github.com/anacrolix/torrent), streams them to the caller in order as
// pieces are verified, keeps completed blobs in a storage.Store and seeds
// them to other peers.
package p2p

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"
)

// ErrNotFound reports that a blob does not exist at its origin.
var ErrNotFound = errors.New("p2p: blob not found")

// ErrDigestMismatch reports that a downloaded blob did not hash to the
// digest it was requested by. Nothing was cached.
var ErrDigestMismatch = errors.New("p2p: digest mismatch")

// BlobRef names a blob at its origin registry and carries the credentials of
// the client that asked for it, so that the seeder fetches it from the origin
// as that client.
type BlobRef struct {
	// Upstream is the origin registry's base URL, e.g.
	// "https://registry-1.docker.io" or "http://127.0.0.1:5000".
	Upstream string
	// Repository is the repository name, e.g. "library/alpine".
	Repository string
	// Digest is the blob's content digest.
	Digest digest.Digest
	// Authorization is the client's Authorization header value, if any.
	Authorization string
}

// MetaInfoSource returns the bencoded torrent metainfo for a blob, making
// sure that some seeder holds the blob. seeder.Client implements it.
// Implementations return an error wrapping ErrNotFound when the origin has
// no such blob, and an *OriginError when the origin refused the request.
type MetaInfoSource interface {
	MetaInfo(ctx context.Context, ref BlobRef) ([]byte, error)
}

// OriginError is an origin's refusal (401, 403, 404, 429, ...) carried back
// through the seeder, so a proxy can answer the client the way the origin
// would have.
type OriginError struct {
	// StatusCode is the HTTP status the origin answered.
	StatusCode int
	// WWWAuthenticate is the origin's WWW-Authenticate header, if any.
	WWWAuthenticate string
	// Body is (a prefix of) the origin's error body.
	Body string
}

func (e *OriginError) Error() string {
	return "origin answered " + httpStatusText(e.StatusCode) + ": " + e.Body
}

// Blob is a blob being served: a sequential, seekable reader whose bytes have
// all passed their piece hash, and whose final bytes are released only after
// the whole blob passed its digest.
type Blob interface {
	io.ReadSeekCloser
	// Size is the blob's length in bytes.
	Size() int64
}
