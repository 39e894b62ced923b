package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
)

// mapStore is a complete storage.Store that keeps blobs in a map. It
// writes through storage.NewWriter, so all it supplies for writing is a
// Stage (a buffer here) and what Publish does with bytes that verified.
// TestExampleStoreConformance runs storagetest's suite on it; a program
// would hand it to eagle.Config.Store or seeder.Config.Store.
type mapStore struct {
	mu    sync.Mutex
	blobs map[digest.Digest]mapEntry
}

type mapEntry struct {
	info storage.Info
	data []byte // never modified, so open Blobs survive Delete
}

func newMapStore() *mapStore {
	return &mapStore{blobs: make(map[digest.Digest]mapEntry)}
}

// get checks ctx and dgst, as every Store method must, and returns the blob.
func (s *mapStore) get(ctx context.Context, dgst digest.Digest) (mapEntry, error) {
	if err := ctx.Err(); err != nil {
		return mapEntry{}, err
	}
	if err := storage.ValidateDigest(dgst); err != nil {
		return mapEntry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.blobs[dgst]
	if !ok {
		return mapEntry{}, fmt.Errorf("mapstore: %s: %w", dgst, storage.ErrNotFound)
	}
	return e, nil
}

func (s *mapStore) Stat(ctx context.Context, dgst digest.Digest) (storage.Info, error) {
	e, err := s.get(ctx, dgst)
	return e.info, err
}

func (s *mapStore) Open(ctx context.Context, dgst digest.Digest) (storage.Blob, error) {
	e, err := s.get(ctx, dgst)
	if err != nil {
		return nil, err
	}
	return &mapBlob{Reader: bytes.NewReader(e.data)}, nil
}

func (s *mapStore) Delete(ctx context.Context, dgst digest.Digest) error {
	if _, err := s.get(ctx, dgst); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.blobs[dgst]; !ok { // deleted meanwhile
		return fmt.Errorf("mapstore: %s: %w", dgst, storage.ErrNotFound)
	}
	delete(s.blobs, dgst)
	return nil
}

func (s *mapStore) Walk(ctx context.Context, fn func(storage.Info) error) error {
	s.mu.Lock()
	infos := make([]storage.Info, 0, len(s.blobs))
	for _, e := range s.blobs {
		infos = append(infos, e.info)
	}
	s.mu.Unlock()
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s *mapStore) Create(ctx context.Context, dgst digest.Digest) (storage.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := storage.NewVerifier(dgst) // refuses invalid digests
	if err != nil {
		return nil, err
	}
	return storage.NewWriter("mapstore", v, &mapStage{store: s}), nil
}

// mapStage buffers a blob until NewWriter's Writer has verified it.
type mapStage struct {
	bytes.Buffer // Write
	store        *mapStore
}

func (st *mapStage) Publish(_ context.Context, info storage.Info) (storage.Info, error) {
	s := st.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.blobs[info.Digest]; ok {
		return old.info, nil // already stored: keep the copy readers may hold
	}
	info.ModTime = time.Now()
	s.blobs[info.Digest] = mapEntry{info: info, data: st.Bytes()}
	return info, nil
}

func (st *mapStage) Discard() error {
	st.Reset()
	return nil
}

// mapBlob reads a blob's bytes; bytes.Reader gives ReadAt and Size.
type mapBlob struct {
	*bytes.Reader
	closed atomic.Bool
}

func (b *mapBlob) ReadAt(p []byte, off int64) (int, error) {
	if b.closed.Load() {
		return 0, fs.ErrClosed
	}
	return b.Reader.ReadAt(p, off)
}

func (b *mapBlob) Close() error {
	b.closed.Store(true)
	return nil
}

// Example_customStore writes and reads a blob through a Store of one's
// own, the way Eagle does: only bytes that hash to their digest are
// committed.
func Example_customStore() {
	ctx := context.Background()
	var s storage.Store = newMapStore()
	layer := []byte("a layer's bytes")

	w, err := s.Create(ctx, digest.FromBytes(layer))
	if err != nil {
		panic(err)
	}
	defer w.Cancel() // does nothing once committed
	if _, err := w.Write(layer); err != nil {
		panic(err)
	}
	info, err := w.Commit(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("committed", info.Size, "bytes")

	// Bytes written under another digest are refused, and not stored.
	bad := digest.FromString("another layer")
	w, err = s.Create(ctx, bad)
	if err != nil {
		panic(err)
	}
	w.Write(layer)
	_, err = w.Commit(ctx)
	fmt.Println("mismatch refused:", errors.Is(err, storage.ErrDigestMismatch))
	_, err = s.Stat(ctx, bad)
	fmt.Println("mismatch stored:", !errors.Is(err, storage.ErrNotFound))

	b, err := s.Open(ctx, info.Digest)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	got, err := io.ReadAll(storage.NewReader(b, 2))
	if err != nil {
		panic(err)
	}
	fmt.Printf("read from offset 2: %q\n", got)
	// Output:
	// committed 15 bytes
	// mismatch refused: true
	// mismatch stored: false
	// read from offset 2: "layer's bytes"
}
