// Package storage defines the storage interface (SSI) through which Eagle
// keeps blobs: content-addressed, written as a stream and committed only
// when the bytes hash to the digest they were stored under.
//
// Backends live in sub-packages (storage/filesystem, storage/memory,
// storage/driver) and all pass the conformance suite in storage/storagetest.
// A backend writes blobs through NewWriter, which keeps the Writer contract
// (verify, then publish once; Cancel discards) and leaves the backend only
// its Stage: where the bytes go until they are published.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
)

// Sentinel errors that callers branch on. Backends wrap them with %w.
var (
	// ErrNotFound reports that no committed blob exists for a digest.
	ErrNotFound = errors.New("storage: blob not found")
	// ErrDigestMismatch reports that written bytes did not hash to the
	// digest they were written under; nothing was committed.
	ErrDigestMismatch = errors.New("storage: digest mismatch")
	// ErrInvalidDigest reports a digest that is malformed or uses an
	// algorithm the store does not accept.
	ErrInvalidDigest = errors.New("storage: invalid digest")
)

// Info describes a committed blob.
type Info struct {
	Digest  digest.Digest
	Size    int64
	ModTime time.Time
}

// Blob is an open, committed blob. It supports random access so that a
// ranged read or a torrent piece can be served without reading the rest.
// A Blob stays readable until it is closed, even if it is deleted meanwhile.
type Blob interface {
	io.ReaderAt
	io.Closer
	// Size is the blob's length in bytes.
	Size() int64
}

// Writer streams a blob into a store. Bytes become visible only after
// Commit succeeds; until then readers see ErrNotFound (or the previously
// committed copy).
type Writer interface {
	io.Writer
	// Commit verifies the written bytes against the digest given to Create
	// and makes the blob visible atomically. On a mismatch it returns an
	// error wrapping ErrDigestMismatch and leaves nothing behind. Committing
	// a digest that is already stored succeeds and keeps one copy.
	Commit(ctx context.Context) (Info, error)
	// Cancel discards everything written. It is safe to call after Commit
	// (it then does nothing), so callers may always defer it.
	Cancel() error
}

// Store keeps blobs addressed by digest. Implementations are safe for
// concurrent use.
type Store interface {
	// Stat returns the blob's Info, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, dgst digest.Digest) (Info, error)
	// Open opens a committed blob for reading.
	Open(ctx context.Context, dgst digest.Digest) (Blob, error)
	// Create starts writing a blob that must hash to dgst. Several writers
	// of one digest may run at once; each commits or fails on its own.
	Create(ctx context.Context, dgst digest.Digest) (Writer, error)
	// Delete removes a committed blob. Readers that already opened it keep
	// reading. Deleting a missing blob returns an error wrapping ErrNotFound.
	Delete(ctx context.Context, dgst digest.Digest) error
	// Walk calls fn for every committed blob, in no particular order, and
	// stops at the first error fn returns.
	Walk(ctx context.Context, fn func(Info) error) error
}

// ValidateDigest checks that dgst is well formed and uses an algorithm the
// stores accept (sha256 or sha512). It is what keeps crafted digests from
// naming paths outside a store's root.
func ValidateDigest(dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrInvalidDigest, string(dgst), err)
	}
	switch dgst.Algorithm() {
	case digest.SHA256, digest.SHA512:
		return nil
	default:
		return fmt.Errorf("%w: %q: unsupported algorithm", ErrInvalidDigest, string(dgst))
	}
}

// NewReader returns a sequential reader over b starting at offset off.
func NewReader(b Blob, off int64) io.Reader {
	return io.NewSectionReader(b, off, b.Size()-off)
}

// Adopter is a Store that can take in a complete file from its own
// filesystem by renaming it rather than copying its bytes: the p2p engine
// adopts the file a blob was downloaded into, so each byte is written to
// disk once.
type Adopter interface {
	// Adopt makes the file at path the blob v was fed for, as Commit
	// would: v must have been fed exactly the file's bytes, and nothing
	// may write to the file afterwards. Adopt refuses a v that does not
	// verify (an error wrapping ErrDigestMismatch) or a file of another
	// size. On success the file is gone from path (renamed, or removed
	// when the blob was already stored). An error wrapping ErrCannotAdopt
	// means nothing was done and the caller should copy the bytes instead:
	// the file is on another filesystem, or the store keeps blobs
	// elsewhere.
	Adopt(ctx context.Context, path string, v *Verifier) (Info, error)
	// CanAdopt reports whether Adopt can take files from directory dir
	// (it is on the store's filesystem), so that a caller that would have
	// to copy anyway can stream the copy as it goes instead.
	CanAdopt(dir string) bool
}

// ErrCannotAdopt reports that a store cannot adopt a file (see Adopter).
var ErrCannotAdopt = errors.New("storage: cannot adopt the file")

// ErrTooLarge reports a blob that cannot fit in a size-limited store even
// when it is empty.
var ErrTooLarge = errors.New("storage: blob larger than the cache")

// ErrFull reports that a size-limited store cannot make room because every
// blob it holds is in use (pinned or still downloading).
var ErrFull = errors.New("storage: cache full, every blob in use")

// Cache is a Store that keeps its contents within a size limit by evicting
// the least recently used blobs (storage/lru). The p2p engine uses the extra
// methods to keep blobs it is serving or downloading from being evicted, to
// make room before a download starts, and to leave the swarm of a blob that
// is evicted.
type Cache interface {
	Store
	// Reserve makes room for a blob of size bytes that is about to be
	// written, evicting other blobs if needed. The reservation counts
	// toward the limit until the blob is committed (it then counts as a
	// blob) or Release is called. It fails with ErrTooLarge or ErrFull.
	Reserve(ctx context.Context, dgst digest.Digest, size int64) error
	// Release drops the reservation for dgst, if any.
	Release(dgst digest.Digest)
	// Pin keeps dgst from being evicted until the returned func is called.
	Pin(dgst digest.Digest) (unpin func())
	// OnEvict registers fn to be called with a blob's digest before the
	// blob is deleted to make room.
	OnEvict(fn func(digest.Digest))
}
