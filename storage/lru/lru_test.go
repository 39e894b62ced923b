package lru_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
	"github.com/eagle-p2p/eagle/storage/lru"
	"github.com/eagle-p2p/eagle/storage/memory"
	"github.com/eagle-p2p/eagle/storage/storagetest"
)

// The LRU store is a Store like any other.
func TestLRUConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := lru.New(context.Background(), memory.New(), 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func blob(i byte, n int) []byte { return bytes.Repeat([]byte{i}, n) }

func put(t *testing.T, s storage.Store, content []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	w, err := s.Create(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cancel()
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func has(t *testing.T, s storage.Store, d digest.Digest) bool {
	t.Helper()
	_, err := s.Stat(context.Background(), d)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

type evictions struct {
	mu sync.Mutex
	ds []digest.Digest
}

func (e *evictions) add(d digest.Digest) { e.mu.Lock(); e.ds = append(e.ds, d); e.mu.Unlock() }

func TestLRUEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	s, err := lru.New(ctx, memory.New(), 3000)
	if err != nil {
		t.Fatal(err)
	}
	var ev evictions
	s.OnEvict(ev.add)
	a, b, c := put(t, s, blob(1, 1000)), put(t, s, blob(2, 1000)), put(t, s, blob(3, 1000))
	// Use a, so b is now the least recently used.
	if _, err := s.Stat(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Room for a 1000-byte download: b goes, before the write starts.
	d := digest.FromBytes(blob(4, 1000))
	if err := s.Reserve(ctx, d, 1000); err != nil {
		t.Fatal(err)
	}
	if has(t, s, b) || !has(t, s, a) || !has(t, s, c) {
		t.Fatalf("after reserving: a %v b %v c %v, want b evicted", has(t, s, a), has(t, s, b), has(t, s, c))
	}
	if len(ev.ds) != 1 || ev.ds[0] != b {
		t.Fatalf("evict hook saw %v, want [%s]", ev.ds, b)
	}
	put(t, s, blob(4, 1000)) // the reservation becomes the blob
	if used, reserved := s.Usage(); used != 3000 || reserved != 0 {
		t.Fatalf("usage %d used, %d reserved; want 3000, 0", used, reserved)
	}
}

func TestLRUNeverEvictsPinnedOrDownloading(t *testing.T) {
	ctx := context.Background()
	s, err := lru.New(ctx, memory.New(), 2000)
	if err != nil {
		t.Fatal(err)
	}
	a := put(t, s, blob(1, 1000))
	unpin := s.Pin(a)
	inflight := digest.FromBytes(blob(2, 1000))
	if err := s.Reserve(ctx, inflight, 1000); err != nil {
		t.Fatal(err)
	}
	// Full: a is pinned and the other half is a download in progress.
	other := digest.FromBytes(blob(3, 500))
	if err := s.Reserve(ctx, other, 500); !errors.Is(err, storage.ErrFull) {
		t.Fatalf("reserve with everything in use: %v, want ErrFull", err)
	}
	if !has(t, s, a) {
		t.Fatal("a pinned blob was evicted")
	}
	unpin()
	if err := s.Reserve(ctx, other, 500); err != nil {
		t.Fatalf("after unpinning: %v", err)
	}
	if has(t, s, a) {
		t.Fatal("the unpinned blob was kept although room was needed")
	}
	// A blob larger than the whole cache gets a clear error.
	if err := s.Reserve(ctx, digest.FromBytes(blob(9, 1)), 2001); !errors.Is(err, storage.ErrTooLarge) {
		t.Fatalf("oversized reservation: %v, want ErrTooLarge", err)
	}
	s.Release(inflight)
	if _, reserved := s.Usage(); reserved != 500 {
		t.Fatalf("reserved %d after release, want 500", reserved)
	}
}

func TestLRUIndexRebuiltFromDisk(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	fs, err := filesystem.New(root)
	if err != nil {
		t.Fatal(err)
	}
	a, b := put(t, fs, blob(1, 1000)), put(t, fs, blob(2, 1000))
	fs.Close()
	fs, err = filesystem.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	s, err := lru.New(ctx, fs, 1500)
	if err != nil {
		t.Fatal(err)
	}
	// Over the limit at start: the older blob goes.
	if has(t, s, a) || !has(t, s, b) {
		t.Fatalf("after reopening over the limit: a %v b %v, want only b", has(t, s, a), has(t, s, b))
	}
	if used, _ := s.Usage(); used != 1000 {
		t.Fatalf("used %d, want 1000", used)
	}
	r, err := s.Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, _ := io.ReadAll(storage.NewReader(r, 0))
	if !bytes.Equal(got, blob(2, 1000)) {
		t.Fatal("bytes differ")
	}
}

// Over a store that adopts files, the LRU store adopts them too.
func TestLRUAdopterConformance(t *testing.T) {
	storagetest.RunAdopter(t, func(t *testing.T) (storage.Store, string) {
		fs, err := filesystem.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fs.Close() })
		s, err := lru.New(context.Background(), fs, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		return s, t.TempDir()
	})
}

// An adopted blob is accounted like a committed one, its reservation
// released; over a store that keeps blobs elsewhere, adoption is refused
// with ErrCannotAdopt.
func TestLRUAdoptAccounting(t *testing.T) {
	ctx := context.Background()
	fs, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	s, err := lru.New(ctx, fs, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	content := blob(7, 300<<10)
	d := digest.FromBytes(content)
	if err := s.Reserve(ctx, d, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	path, v := storagetest.FileToAdopt(t, t.TempDir(), d, content)
	if !s.CanAdopt(filepath.Dir(path)) {
		t.Fatal("CanAdopt is false for a directory on the inner store's filesystem")
	}
	if _, err := s.Adopt(ctx, path, v); err != nil {
		t.Fatal(err)
	}
	if used, reserved := s.Usage(); used != int64(len(content)) || reserved != 0 {
		t.Errorf("after Adopt: used %d, reserved %d; want %d, 0", used, reserved, len(content))
	}
	s.Release(d)

	mem, err := lru.New(ctx, memory.New(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if mem.CanAdopt(filepath.Dir(path)) {
		t.Error("CanAdopt over a memory store")
	}
	if _, err := mem.Adopt(ctx, path, v); !errors.Is(err, storage.ErrCannotAdopt) {
		t.Errorf("Adopt over a memory store: %v, want ErrCannotAdopt", err)
	}
}
