// Package memory is a storage.Store that keeps blobs in memory, for tests and
// small caches. It has the same semantics as the filesystem store: writes are
// hashed as they arrive, only verified blobs become visible, and a Blob that
// is open keeps reading after the blob is deleted.
//
// Blob bytes are kept in fixed-size chunks, so a write never copies what was
// already written and a blob costs at most one partly filled chunk more than
// its size.
package memory

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/opencontainers/go-digest"
)

// chunkSize is the size of the pieces a blob's bytes are kept in.
const chunkSize = 64 << 10

// Store keeps committed blobs in a map. It is safe for concurrent use.
type Store struct {
	mu      sync.RWMutex
	blobs   map[digest.Digest]*data
	pending atomic.Int64 // writers neither committed nor cancelled
}

var _ storage.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{blobs: make(map[digest.Digest]*data)}
}

// data is a committed blob. It is immutable, which is what lets open
// Blobs keep reading it after Delete.
type data struct {
	chunks  [][]byte // all full except perhaps the last
	size    int64
	modTime time.Time
}

func (d *data) info(dgst digest.Digest) storage.Info {
	return storage.Info{Digest: dgst, Size: d.size, ModTime: d.modTime}
}

// lookup checks ctx and dgst and returns the committed blob.
func (s *Store) lookup(ctx context.Context, dgst digest.Digest) (*data, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := storage.ValidateDigest(dgst); err != nil {
		return nil, err
	}
	s.mu.RLock()
	d, ok := s.blobs[dgst]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%s: %w", dgst, storage.ErrNotFound)
	}
	return d, nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, dgst digest.Digest) (storage.Info, error) {
	d, err := s.lookup(ctx, dgst)
	if err != nil {
		return storage.Info{}, fmt.Errorf("memory: stat: %w", err)
	}
	return d.info(dgst), nil
}

// Open implements storage.Store.
func (s *Store) Open(ctx context.Context, dgst digest.Digest) (storage.Blob, error) {
	d, err := s.lookup(ctx, dgst)
	if err != nil {
		return nil, fmt.Errorf("memory: open: %w", err)
	}
	return &blob{d: d}, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, dgst digest.Digest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: delete: %w", err)
	}
	if err := storage.ValidateDigest(dgst); err != nil {
		return fmt.Errorf("memory: delete: %w", err)
	}
	s.mu.Lock()
	_, ok := s.blobs[dgst]
	delete(s.blobs, dgst)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("memory: delete %s: %w", dgst, storage.ErrNotFound)
	}
	return nil
}

// Walk implements storage.Store. It walks a snapshot taken when it starts,
// so fn may call back into the store.
func (s *Store) Walk(ctx context.Context, fn func(storage.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: walk: %w", err)
	}
	s.mu.RLock()
	infos := make([]storage.Info, 0, len(s.blobs))
	for dgst, d := range s.blobs {
		infos = append(infos, d.info(dgst))
	}
	s.mu.RUnlock()
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memory: walk: %w", err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Create implements storage.Store.
func (s *Store) Create(ctx context.Context, dgst digest.Digest) (storage.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: create: %w", err)
	}
	v, err := storage.NewVerifier(dgst)
	if err != nil {
		return nil, fmt.Errorf("memory: create: %w", err)
	}
	s.pending.Add(1)
	return storage.NewWriter("memory", v, &stage{store: s}), nil
}

// Pending reports how many writers are neither committed nor cancelled.
// The conformance suite uses it (see storagetest.PendingCounter) to check
// that every write is accounted for.
func (s *Store) Pending(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: pending: %w", err)
	}
	return int(s.pending.Load()), nil
}

// stage buffers one blob until it is published (see storage.NewWriter).
type stage struct {
	store *Store
	d     data
}

// Write implements storage.Stage.
func (st *stage) Write(p []byte) (int, error) {
	d := &st.d
	d.size += int64(len(p))
	for rest := p; len(rest) > 0; {
		last := len(d.chunks) - 1
		if last < 0 || len(d.chunks[last]) == chunkSize {
			d.chunks = append(d.chunks, make([]byte, 0, chunkSize))
			last++
		}
		n := min(len(rest), chunkSize-len(d.chunks[last]))
		d.chunks[last] = append(d.chunks[last], rest[:n]...)
		rest = rest[n:]
	}
	return len(p), nil
}

// Publish implements storage.Stage.
func (st *stage) Publish(_ context.Context, info storage.Info) (storage.Info, error) {
	d := &data{chunks: st.d.chunks, size: st.d.size, modTime: time.Now()}
	st.d = data{}
	s := st.store
	s.mu.Lock()
	if old, ok := s.blobs[info.Digest]; ok {
		d = old // already stored: keep the copy readers may hold
	} else {
		s.blobs[info.Digest] = d
	}
	s.mu.Unlock()
	s.pending.Add(-1)
	return d.info(info.Digest), nil
}

// Discard implements storage.Stage.
func (st *stage) Discard() error {
	st.d = data{}
	st.store.pending.Add(-1)
	return nil
}

// blob reads a committed blob.
type blob struct {
	d      *data
	closed atomic.Bool
}

// ReadAt implements io.ReaderAt.
func (b *blob) ReadAt(p []byte, off int64) (int, error) {
	if b.closed.Load() {
		return 0, fmt.Errorf("memory: read: %w", fs.ErrClosed)
	}
	if off < 0 {
		return 0, fmt.Errorf("memory: read at %d: negative offset", off)
	}
	n := 0
	for n < len(p) && off < b.d.size {
		c := b.d.chunks[off/chunkSize][off%chunkSize:]
		m := copy(p[n:], c)
		n += m
		off += int64(m)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Close implements io.Closer.
func (b *blob) Close() error {
	if b.closed.Swap(true) {
		return fmt.Errorf("memory: close: %w", fs.ErrClosed)
	}
	return nil
}

// Size implements storage.Blob.
func (b *blob) Size() int64 { return b.d.size }
