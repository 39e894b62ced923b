// Package driver adapts any distribution/v3 storage driver to
// storage.Store, so that a seeder can keep its blobs in an object store.
//
// Open creates a driver by name, in the style of database/sql: a package
// that provides a driver registers it from its init function (Register),
// and a program gets it with an import for that side effect. This package
// registers filesystem and inmemory, which bring in no further
// dependency; s3 brings in the AWS SDK, so it is registered by
// storage/driver/s3, which a program that wants it imports:
//
//	import _ "github.com/eagle-p2p/eagle/storage/driver/s3"
//
// Open also creates a driver registered only with distribution's own
// registry (registry/storage/driver/factory), such as gcs or azure after a
// blank import of distribution's package for it; Drivers does not list
// those. New wraps a driver the caller created itself.
//
// The layout inside the driver is
//
//	/eagle/blobs/<algorithm>/<first two hex digits>/<hex>   committed blobs
//	/eagle/uploads/<algorithm>-<hex prefix>-<random>         writes in progress
//	/eagle/trash/<algorithm>-<hex prefix>-<random>           deleted blobs still open
//
// A write streams into the driver's FileWriter at a fresh upload path while
// a storage.Verifier hashes it. Commit verifies the digest first; on a
// mismatch the FileWriter is cancelled and nothing was ever visible. On a
// match the FileWriter is committed and the upload is moved to its blob
// path with the driver's Move. What the move guarantees depends on the
// driver: filesystem renames (atomic); inmemory swaps a map entry under its
// lock (atomic); s3 has no rename: it copies the object server-side
// (CopyObject, or a multipart copy above multipartcopythresholdsize, 32 MiB
// by default; either makes the key appear whole at once) and then deletes
// the upload, so the move is not atomic as a whole: a crash between copy
// and delete leaves the upload object behind under /eagle/uploads. A blob is
// never visible partially written with any of them. On s3 the bytes of a
// write in progress are a multipart upload, invisible until Commit; one
// abandoned by a crash is best removed by the bucket's lifecycle rule
// (AbortIncompleteMultipartUpload). The s3 driver buffers one part
// (chunksize, 10 MiB by default) in memory per write.
//
// Reading: a driver only offers sequential streams (Reader at an offset),
// and opening one is a request to an object store. A Blob therefore keeps
// a few streams open at the offsets where the last reads ended and serves a
// ReadAt from a stream that is already there (or up to 256 KiB behind,
// skipping forward); only a seek elsewhere opens a new stream, and the
// least recently used idle stream is closed beyond WithReadStreams. Open
// starts the first stream at offset 0, where most readers begin. Torrent peers read a
// piece as consecutive 16 KiB blocks, so a piece costs one request, not
// one per block. When the driver's stream is an *os.File (the filesystem
// driver) ReadAt goes straight to the file.
//
// Deleting a blob that is open in this Store moves it to /eagle/trash and
// removes it when the last reader closes, so readers keep reading, as
// storage.Store requires. This holds for readers of the same Store; another
// process sharing the same bucket and prefix is not covered, so give each
// seeder its own root (the drivers' rootdirectory parameter).
package driver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
)

const (
	blobsDir   = "/eagle/blobs"
	uploadsDir = "/eagle/uploads"
	trashDir   = "/eagle/trash"

	// DefaultReadStreams is how many idle streams a Blob keeps open.
	DefaultReadStreams = 4
	// skipLimit is how far ahead of an idle stream a read may start and
	// still reuse it by discarding the gap: cheaper than a new request.
	skipLimit = 256 << 10
	// cleanupTimeout bounds the removal of leftovers (a trashed blob, a
	// failed upload) done after the caller's context may have ended.
	cleanupTimeout = time.Minute
)

// ErrUnknownDriver reports a driver name that no package has registered.
var ErrUnknownDriver = errors.New("storage driver not registered")

// Option tunes a Store.
type Option func(*Store)

// WithReadStreams sets how many idle streams each open Blob keeps for
// reuse (default DefaultReadStreams). Values below 1 are treated as 1.
func WithReadStreams(n int) Option {
	return func(s *Store) { s.streams = max(n, 1) }
}

// Store is a storage.Store over a distribution storage driver. It is safe
// for concurrent use.
type Store struct {
	d       storagedriver.StorageDriver
	streams int

	mu      sync.Mutex
	writers map[string]struct{}      // upload paths of live writers
	entries map[digest.Digest]*entry // digests with open Blobs or Opens/Deletes in flight
}

var _ storage.Store = (*Store)(nil)

// entry serializes Open and Delete of one digest and tracks where the
// bytes that its open Blobs read are.
type entry struct {
	dgst digest.Digest
	// mu is held shared by Open and by a Blob opening a stream, and
	// exclusively by Delete while it moves the blob to the trash, so no
	// stream is opened on a path that is being moved.
	mu sync.RWMutex

	// Guarded by Store.mu; path and trashed are written with mu held too.
	refs    int    // Blobs plus calls in flight holding the entry
	open    int    // Blobs
	path    string // where the bytes are: the blob path, or a trash path
	trashed bool   // path is in the trash: delete it with the last ref
}

// New returns a Store over d. The driver must not be shared with another
// Store under the same root.
func New(d storagedriver.StorageDriver, opts ...Option) (*Store, error) {
	if d == nil {
		return nil, errors.New("driver: nil storage driver")
	}
	s := &Store{
		d:       d,
		streams: DefaultReadStreams,
		writers: make(map[string]struct{}),
		entries: make(map[digest.Digest]*entry),
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Open creates the driver registered under name with its parameters (as in
// the registry's storage configuration, e.g. rootdirectory for filesystem;
// bucket, region, regionendpoint for s3) and returns a Store over it. An
// unknown name returns an error wrapping ErrUnknownDriver that lists the
// registered drivers.
func Open(ctx context.Context, name string, params map[string]any, opts ...Option) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("driver: open %q: %w", name, err)
	}
	var d storagedriver.StorageDriver
	var err error
	if f := lookup(name); f != nil {
		d, err = f(ctx, params)
	} else {
		d, err = factory.Create(ctx, name, params)
		var unknown factory.InvalidStorageDriverError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("driver: %w: %q (this program has %s)", ErrUnknownDriver, name, strings.Join(Drivers(), ", "))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("driver: create %q: %w", name, err)
	}
	return New(d, opts...)
}

// Driver returns the storage driver under the store.
func (s *Store) Driver() storagedriver.StorageDriver { return s.d }

// blobPath returns the driver path of dgst, or an error wrapping
// storage.ErrInvalidDigest. It is the only place a digest becomes a path.
func blobPath(dgst digest.Digest) (string, error) {
	if err := storage.ValidateDigest(dgst); err != nil {
		return "", err
	}
	hex := dgst.Encoded()
	return path.Join(blobsDir, string(dgst.Algorithm()), hex[:2], hex), nil
}

// parseBlobPath is the inverse of blobPath; ok is false for any path that
// blobPath would not produce.
func parseBlobPath(p string) (digest.Digest, bool) {
	rest, ok := strings.CutPrefix(p, blobsDir+"/")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", false
	}
	dgst := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
	if want, err := blobPath(dgst); err != nil || want != p {
		return "", false
	}
	return dgst, true
}

// tempPath returns a fresh path under dir for a file of dgst.
func tempPath(dir string, dgst digest.Digest) string {
	return fmt.Sprintf("%s/%s-%s-%s", dir, dgst.Algorithm(), dgst.Encoded()[:12], rand.Text())
}

// resolve checks ctx and maps dgst to its blob path.
func resolve(ctx context.Context, dgst digest.Digest) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return blobPath(dgst)
}

// cleanupContext returns a context for removing leftovers: it keeps ctx's
// values but not its cancellation, and is bounded by cleanupTimeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// isNotFound reports whether err is the driver's "path not found".
func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

// driverErr makes the driver's "path not found" report storage.ErrNotFound
// while keeping the driver's error in the chain, and lets errors.Is and
// errors.As see through the storagedriver.Error that base drivers wrap
// every other error in (it has no Unwrap).
func driverErr(err error) error {
	var de storagedriver.Error
	switch {
	case err == nil:
		return nil
	case isNotFound(err):
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	case errors.As(err, &de) && de.Detail != nil:
		return fmt.Errorf("%s: %w", de.DriverName, de.Detail)
	default:
		return err
	}
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, dgst digest.Digest) (storage.Info, error) {
	p, err := resolve(ctx, dgst)
	if err != nil {
		return storage.Info{}, fmt.Errorf("driver: stat: %w", err)
	}
	info, err := s.stat(ctx, dgst, p)
	if err != nil {
		return storage.Info{}, fmt.Errorf("driver: stat %s: %w", dgst, err)
	}
	return info, nil
}

// stat returns the Info of the blob at p.
func (s *Store) stat(ctx context.Context, dgst digest.Digest, p string) (storage.Info, error) {
	fi, err := s.d.Stat(ctx, p)
	if err != nil {
		return storage.Info{}, driverErr(err)
	}
	if fi.IsDir() {
		return storage.Info{}, fmt.Errorf("%s is a directory: %w", p, storage.ErrNotFound)
	}
	return storage.Info{Digest: dgst, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Open implements storage.Store. The Blob keeps reading the same bytes
// after Delete (see the package comment).
func (s *Store) Open(ctx context.Context, dgst digest.Digest) (storage.Blob, error) {
	p, err := resolve(ctx, dgst)
	if err != nil {
		return nil, fmt.Errorf("driver: open: %w", err)
	}
	for {
		e := s.acquire(dgst, p)
		e.mu.RLock()
		if e.trashed {
			// A Delete moved the bytes away while we waited: look again.
			e.mu.RUnlock()
			_ = s.release(ctx, e) // the Delete that trashed it holds a reference
			continue
		}
		info, err := s.stat(ctx, dgst, p)
		if err == nil {
			s.mu.Lock()
			e.open++
			s.mu.Unlock()
		}
		e.mu.RUnlock()
		if err != nil {
			_ = s.release(ctx, e) // nothing to clean: the entry was not trashed by us
			return nil, fmt.Errorf("driver: open %s: %w", dgst, err)
		}
		b := s.newBlob(ctx, e, info.Size)
		if err := b.useFile(); err != nil {
			return nil, errors.Join(err, b.Close())
		}
		return b, nil
	}
}

// Delete implements storage.Store. A blob that is open in this Store is
// moved to the trash and removed when its last reader closes.
func (s *Store) Delete(ctx context.Context, dgst digest.Digest) error {
	p, err := resolve(ctx, dgst)
	if err != nil {
		return fmt.Errorf("driver: delete: %w", err)
	}
	for {
		e := s.acquire(dgst, p)
		e.mu.Lock()
		s.mu.Lock()
		trashed, open := e.trashed, e.open
		s.mu.Unlock()
		if trashed {
			e.mu.Unlock()
			_ = s.release(ctx, e) // the Delete that trashed it holds a reference
			continue
		}
		if open == 0 {
			err = s.d.Delete(ctx, p)
		} else {
			trash := tempPath(trashDir, dgst)
			if err = s.d.Move(ctx, p, trash); err == nil {
				s.mu.Lock()
				e.path, e.trashed = trash, true
				if s.entries[dgst] == e {
					delete(s.entries, dgst) // later Opens look at the blob path anew
				}
				s.mu.Unlock()
			}
		}
		e.mu.Unlock()
		rerr := s.release(ctx, e)
		if err != nil {
			return fmt.Errorf("driver: delete %s: %w", dgst, driverErr(err))
		}
		return rerr
	}
}

// acquire returns the entry of dgst with one more reference.
func (s *Store) acquire(dgst digest.Digest, p string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[dgst]
	if e == nil {
		e = &entry{dgst: dgst, path: p}
		s.entries[dgst] = e
	}
	e.refs++
	return e
}

// release drops a reference to e; the last one forgets e and removes its
// trashed copy, if any, even if ctx has ended.
func (s *Store) release(ctx context.Context, e *entry) error {
	s.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last && s.entries[e.dgst] == e {
		delete(s.entries, e.dgst)
	}
	trash, trashed := e.path, e.trashed
	s.mu.Unlock()
	if !last || !trashed {
		return nil
	}
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := s.d.Delete(ctx, trash); err != nil && !isNotFound(err) {
		return fmt.Errorf("driver: remove deleted blob %s: %w", e.dgst, driverErr(err))
	}
	return nil
}

// Walk implements storage.Store. It reports only files whose path is the
// blob path of a valid digest.
func (s *Store) Walk(ctx context.Context, fn func(storage.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("driver: walk: %w", err)
	}
	var fnErr error // fn's own error, returned unwrapped
	err := s.d.Walk(ctx, blobsDir, func(fi storagedriver.FileInfo) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		dgst, ok := parseBlobPath(fi.Path())
		if !ok {
			return nil
		}
		if err := fn(storage.Info{Digest: dgst, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	switch {
	case fnErr != nil:
		return fnErr
	case ctx.Err() != nil:
		return fmt.Errorf("driver: walk: %w", ctx.Err())
	case err == nil || isNotFound(err): // not found: nothing stored yet
		return nil
	default:
		return fmt.Errorf("driver: walk: %w", driverErr(err))
	}
}

// Pending reports how many writes still hold resources: live writers, plus
// any upload the driver still lists that no live writer owns (a leak). The
// conformance suite uses it (see storagetest.PendingCounter).
func (s *Store) Pending(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("driver: pending: %w", err)
	}
	names, err := s.d.List(ctx, uploadsDir)
	if err != nil && !isNotFound(err) {
		return 0, fmt.Errorf("driver: pending: %w", driverErr(err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.writers)
	for _, name := range names {
		if _, live := s.writers[name]; !live {
			n++
		}
	}
	return n, nil
}
