// Package lru keeps a storage.Store within a size limit. It evicts the
// least recently used blobs (by last Stat or Open) that nobody pinned, and
// counts space reserved for downloads in progress toward the limit, so
// that room is made before a write, not after.
package lru

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
)

// Store is a size-limited storage.Cache over another Store. It is safe for
// concurrent use.
type Store struct {
	inner storage.Store
	limit int64

	// evictMu serializes eviction runs; mu guards the fields below and is
	// not held while blobs are deleted or hooks run.
	evictMu sync.Mutex
	mu      sync.Mutex
	index   *simplelru.LRU[digest.Digest, int64] // committed blobs by recency, with sizes
	used    int64                                // bytes of the blobs in index
	reserve map[digest.Digest]int64              // downloads in progress
	pins    map[digest.Digest]int
	hooks   []func(digest.Digest)
}

var _ storage.Cache = (*Store)(nil)

// New wraps inner with a limit of limit bytes. It indexes the blobs inner
// already holds, oldest (by modification time) first, and evicts down to
// the limit if they exceed it.
func New(ctx context.Context, inner storage.Store, limit storage.Size) (*Store, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("lru: limit %d must be positive", limit)
	}
	index, err := simplelru.NewLRU[digest.Digest, int64](1<<62, nil)
	if err != nil {
		return nil, err
	}
	s := &Store{
		inner:   inner,
		limit:   int64(limit),
		index:   index,
		reserve: make(map[digest.Digest]int64),
		pins:    make(map[digest.Digest]int),
	}
	var infos []storage.Info
	if err := inner.Walk(ctx, func(i storage.Info) error {
		infos = append(infos, i)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("lru: index: %w", err)
	}
	slices.SortFunc(infos, func(a, b storage.Info) int { return a.ModTime.Compare(b.ModTime) })
	for _, i := range infos {
		s.index.Add(i.Digest, i.Size)
		s.used += i.Size
	}
	if err := s.makeRoom(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Limit is the size limit in bytes.
func (s *Store) Limit() int64 { return s.limit }

// Usage returns the bytes held by committed blobs and the bytes reserved
// for downloads in progress.
func (s *Store) Usage() (used, reserved int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used, s.reservedLocked()
}

func (s *Store) reservedLocked() int64 {
	var n int64
	for _, r := range s.reserve {
		n += r
	}
	return n
}

func (s *Store) touch(dgst digest.Digest) {
	s.mu.Lock()
	s.index.Get(dgst)
	s.mu.Unlock()
}

// Stat returns the blob's Info and marks it used.
func (s *Store) Stat(ctx context.Context, dgst digest.Digest) (storage.Info, error) {
	info, err := s.inner.Stat(ctx, dgst)
	if err == nil {
		s.touch(dgst)
	}
	return info, err
}

// Open opens the blob and marks it used. An open Blob stays readable if
// the blob is evicted meanwhile (as the inner store allows); Pin keeps it
// from being evicted at all.
func (s *Store) Open(ctx context.Context, dgst digest.Digest) (storage.Blob, error) {
	b, err := s.inner.Open(ctx, dgst)
	if err == nil {
		s.touch(dgst)
	}
	return b, err
}

// Create starts writing a blob. Call Reserve first to make room before the
// bytes arrive; without a reservation the blob is accounted, and room made,
// when it is committed.
func (s *Store) Create(ctx context.Context, dgst digest.Digest) (storage.Writer, error) {
	w, err := s.inner.Create(ctx, dgst)
	if err != nil {
		return nil, err
	}
	return &writer{Writer: w, s: s, dgst: dgst}, nil
}

// Delete removes a blob.
func (s *Store) Delete(ctx context.Context, dgst digest.Digest) error {
	err := s.inner.Delete(ctx, dgst)
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		s.forget(dgst)
	}
	return err
}

func (s *Store) forget(dgst digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size, ok := s.index.Peek(dgst); ok {
		s.index.Remove(dgst)
		s.used -= size
	}
}

// Walk calls fn for every committed blob.
func (s *Store) Walk(ctx context.Context, fn func(storage.Info) error) error {
	return s.inner.Walk(ctx, fn)
}

// Reserve makes room for a blob of size bytes about to be written.
func (s *Store) Reserve(ctx context.Context, dgst digest.Digest, size int64) error {
	if size > s.limit {
		return fmt.Errorf("%w: %s is %d bytes, the cache holds %d", storage.ErrTooLarge, dgst, size, s.limit)
	}
	s.mu.Lock()
	s.reserve[dgst] = size
	s.mu.Unlock()
	if err := s.makeRoom(ctx); err != nil {
		s.Release(dgst)
		return err
	}
	return nil
}

// Release drops the reservation for dgst.
func (s *Store) Release(dgst digest.Digest) {
	s.mu.Lock()
	delete(s.reserve, dgst)
	s.mu.Unlock()
}

// Pin keeps dgst from being evicted until unpin is called.
func (s *Store) Pin(dgst digest.Digest) (unpin func()) {
	s.mu.Lock()
	s.pins[dgst]++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.pins[dgst]--; s.pins[dgst] <= 0 {
				delete(s.pins, dgst)
			}
			s.mu.Unlock()
		})
	}
}

// OnEvict registers fn to run before a blob is deleted to make room.
func (s *Store) OnEvict(fn func(digest.Digest)) {
	s.mu.Lock()
	s.hooks = append(s.hooks, fn)
	s.mu.Unlock()
}

// makeRoom evicts least recently used, unpinned blobs until the blobs and
// reservations fit the limit.
func (s *Store) makeRoom(ctx context.Context) error {
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	for {
		s.mu.Lock()
		over := s.used + s.reservedLocked() - s.limit
		if over <= 0 {
			s.mu.Unlock()
			return nil
		}
		var victim digest.Digest
		for _, d := range s.index.Keys() { // oldest first
			if s.pins[d] == 0 {
				if _, downloading := s.reserve[d]; !downloading {
					victim = d
					break
				}
			}
		}
		hooks := slices.Clone(s.hooks)
		s.mu.Unlock()
		if victim == "" {
			return fmt.Errorf("%w: %d bytes over the limit of %d", storage.ErrFull, over, s.limit)
		}
		for _, h := range hooks {
			h(victim)
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		err := s.inner.Delete(dctx, victim)
		cancel()
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("lru: evict %s: %w", victim, err)
		}
		s.forget(victim)
	}
}

// writer accounts a blob when it is committed.
type writer struct {
	storage.Writer
	s    *Store
	dgst digest.Digest
}

func (w *writer) Commit(ctx context.Context) (storage.Info, error) {
	info, err := w.Writer.Commit(ctx)
	if err != nil {
		return info, err
	}
	return info, w.s.committed(ctx, w.dgst, info)
}

// Adopt implements storage.Adopter when the inner store does; otherwise it
// returns an error wrapping storage.ErrCannotAdopt. The adopted blob is
// accounted as a committed one.
func (s *Store) Adopt(ctx context.Context, path string, v *storage.Verifier) (storage.Info, error) {
	a, ok := s.inner.(storage.Adopter)
	if !ok {
		return storage.Info{}, fmt.Errorf("lru: %w: the inner store adopts no files", storage.ErrCannotAdopt)
	}
	info, err := a.Adopt(ctx, path, v)
	if err != nil {
		return info, err
	}
	return info, s.committed(ctx, v.Digest(), info)
}

// CanAdopt implements storage.Adopter: the inner store must adopt files
// from dir.
func (s *Store) CanAdopt(dir string) bool {
	a, ok := s.inner.(storage.Adopter)
	return ok && a.CanAdopt(dir)
}

// committed accounts a blob just committed (or adopted) and turns its
// reservation into the blob's own accounting.
func (s *Store) committed(ctx context.Context, dgst digest.Digest, info storage.Info) error {
	s.mu.Lock()
	delete(s.reserve, dgst)
	if _, ok := s.index.Get(dgst); !ok {
		s.index.Add(dgst, info.Size)
		s.used += info.Size
	}
	s.mu.Unlock()
	// The blob is committed either way. If nothing can be evicted now (every
	// blob pinned), the store stays over its limit until the next
	// reservation makes room; callers that must not pass the limit Reserve
	// before they write.
	if err := s.makeRoom(ctx); err != nil && !errors.Is(err, storage.ErrFull) {
		return fmt.Errorf("lru: %s committed, but making room failed: %w", dgst, err)
	}
	return nil
}
