package driver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/driver"
	"github.com/eagle-p2p/eagle/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStorageDriverFilesystem(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := driver.Open(t.Context(), "filesystem", map[string]any{"rootdirectory": t.TempDir()})
		if err != nil {
			t.Fatalf("Open(filesystem): %v", err)
		}
		return s
	})
}

func TestStorageDriverInmemory(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := driver.Open(t.Context(), "inmemory", nil)
		if err != nil {
			t.Fatalf("Open(inmemory): %v", err)
		}
		return s
	})
}

func TestStorageDriverOpenErrors(t *testing.T) {
	_, err := driver.Open(t.Context(), "floppy", nil)
	if !errors.Is(err, driver.ErrUnknownDriver) || !strings.Contains(err.Error(), `"floppy"`) {
		t.Fatalf("Open(floppy) error = %v, want ErrUnknownDriver naming it", err)
	}
	// Only the light drivers are registered without an import; the
	// error names them.
	if got := driver.Drivers(); !slices.Contains(got, "filesystem") || !slices.Contains(got, "inmemory") || slices.Contains(got, "s3") {
		t.Fatalf("Drivers() = %v, want filesystem and inmemory, not s3", got)
	}
	if !strings.Contains(err.Error(), "filesystem, inmemory") {
		t.Fatalf("Open(floppy) error = %v, want the registered drivers named", err)
	}
	_, err = driver.Open(t.Context(), "s3", map[string]any{"bucket": "b", "region": "us-east-1"})
	if !errors.Is(err, driver.ErrUnknownDriver) {
		t.Fatalf("Open(s3) without importing storage/driver/s3: %v, want ErrUnknownDriver", err)
	}
	// The driver's own parameter checks come through.
	_, err = driver.Open(t.Context(), "filesystem", map[string]any{"maxthreads": "many"})
	if err == nil || !strings.Contains(err.Error(), "maxthreads") {
		t.Fatalf("Open(filesystem, maxthreads: many) error = %v, want one about maxthreads", err)
	}
	if _, err := driver.New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
}

// countingDriver is a real driver that counts the streams opened on it.
type countingDriver struct {
	storagedriver.StorageDriver
	readers atomic.Int64
}

func (d *countingDriver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	d.readers.Add(1)
	return d.StorageDriver.Reader(ctx, path, offset)
}

// putBlob stores n random bytes and returns them with their digest.
func putBlob(t *testing.T, s storage.Store, n int) ([]byte, digest.Digest) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	dgst := digest.FromBytes(data)
	w, err := s.Create(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer w.Cancel()
	if _, err := w.Write(data); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return data, dgst
}

// readAt reads len(want) bytes at off and checks them.
func readAt(t *testing.T, b storage.Blob, data []byte, off, n int) {
	t.Helper()
	p := make([]byte, n)
	got, err := b.ReadAt(p, int64(off))
	if got != n || (err != nil && !(err == io.EOF && off+n == len(data))) {
		t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, got, err)
	}
	if !bytes.Equal(p, data[off:off+n]) {
		t.Fatalf("ReadAt(%d bytes at %d) returned the wrong bytes", n, off)
	}
}

// TestStorageDriverStreamReuse checks that ReadAt over a driver whose
// streams are not files opens a stream only when it has to seek.
func TestStorageDriverStreamReuse(t *testing.T) {
	d := &countingDriver{StorageDriver: inmemory.New()}
	s, err := driver.New(d, driver.WithReadStreams(2))
	if err != nil {
		t.Fatal(err)
	}
	const block, size = 16 << 10, 4 << 20
	data, dgst := putBlob(t, s, size)
	b, err := s.Open(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	streams := func(want int64, what string) {
		t.Helper()
		if got := d.readers.Load(); got != want {
			t.Fatalf("after %s: %d streams opened, want %d", what, got, want)
		}
	}

	// Open starts one stream at 0: a piece read block by block uses it.
	for off := 0; off < 1<<20; off += block {
		readAt(t, b, data, off, block)
	}
	streams(1, "reading the first MiB in 16 KiB blocks")

	// A piece elsewhere costs one more stream, then runs on it.
	for off := 3 << 20; off < 3<<20+512<<10; off += block {
		readAt(t, b, data, off, block)
	}
	streams(2, "reading a piece at 3 MiB")

	// Back to where the first stream stopped: still idle, reused.
	readAt(t, b, data, 1<<20, block)
	// A small gap ahead is skipped, not reopened.
	readAt(t, b, data, 1<<20+100<<10, block)
	streams(2, "resuming the first stream and skipping 84 KiB")

	// Reading backwards needs a new stream; with two kept, the least
	// recently used (the one at 3.5 MiB) is closed.
	readAt(t, b, data, 0, block)
	streams(3, "seeking back to 0")
	readAt(t, b, data, 3<<20+512<<10, block)
	streams(4, "going back to the evicted stream's offset")

	// The last block, ending exactly at the end, and one across the end.
	readAt(t, b, data, size-block, block)
	p := make([]byte, 2*block)
	if n, err := b.ReadAt(p, size-block); n != block || err != io.EOF || !bytes.Equal(p[:n], data[size-block:]) {
		t.Fatalf("ReadAt across the end = %d, %v", n, err)
	}

	// Parallel readers of different pieces each get correct bytes.
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			p := make([]byte, block)
			for off := r * (1 << 20); off < (r+1)*(1<<20); off += block {
				if n, err := b.ReadAt(p, int64(off)); n != block || (err != nil && err != io.EOF) || !bytes.Equal(p, data[off:off+block]) {
					t.Errorf("parallel ReadAt at %d = %d, %v", off, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestStorageDriverFileFastPath checks that the filesystem driver's files
// are read with ReadAt, whatever the offsets.
func TestStorageDriverFileFastPath(t *testing.T) {
	fs, err := driver.Open(t.Context(), "filesystem", map[string]any{"rootdirectory": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	d := &countingDriver{StorageDriver: fs.Driver()}
	s, err := driver.New(d)
	if err != nil {
		t.Fatal(err)
	}
	data, dgst := putBlob(t, s, 1<<20)
	b, err := s.Open(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	for _, off := range []int{900 << 10, 0, 500 << 10, 100, 1<<20 - 16<<10} {
		readAt(t, b, data, off, 16<<10)
	}
	if n := d.readers.Load(); n != 1 {
		t.Fatalf("%d streams opened for random reads of a file, want 1", n)
	}
}

// TestStorageDriverDeleteWhileOpen checks that a blob deleted while open
// stays readable at any offset (so even when the reader must open a new
// stream) and that its bytes are removed when the last reader closes.
func TestStorageDriverDeleteWhileOpen(t *testing.T) {
	ctx := t.Context()
	mem := inmemory.New()
	s, err := driver.New(mem, driver.WithReadStreams(1))
	if err != nil {
		t.Fatal(err)
	}
	data, dgst := putBlob(t, s, 2<<20)
	first, err := s.Open(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Open(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	readAt(t, first, data, 0, 1000)
	if err := s.Delete(ctx, dgst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Open(ctx, dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Open after Delete: %v, want ErrNotFound", err)
	}
	trash := func() int {
		names, err := mem.List(ctx, "/eagle/trash")
		if err != nil && !errors.As(err, new(storagedriver.PathNotFoundError)) {
			t.Fatalf("List trash: %v", err)
		}
		return len(names)
	}
	if n := trash(); n != 1 {
		t.Fatalf("%d entries in the trash while the blob is open, want 1", n)
	}
	// Far from the open stream: the reader must open a new one.
	readAt(t, first, data, 1<<20, 1000)
	readAt(t, second, data, 2<<20-1000, 1000)
	readAt(t, first, data, 5, 1000)

	// Stored again meanwhile: a new reader sees the new copy, the old ones
	// keep theirs.
	putBlob2 := func() {
		w, err := s.Create(ctx, dgst)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	putBlob2()
	third, err := s.Open(ctx, dgst)
	if err != nil {
		t.Fatalf("Open after storing again: %v", err)
	}
	readAt(t, third, data, 7, 1000)

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if n := trash(); n != 1 {
		t.Fatalf("%d entries in the trash with one old reader left, want 1", n)
	}
	readAt(t, second, data, 3, 1000)
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if n := trash(); n != 0 {
		t.Fatalf("%d entries in the trash after the last old reader closed, want 0", n)
	}
	if err := second.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}
	// Deleting the new copy while third has it open, then closing third,
	// leaves nothing behind.
	if err := s.Delete(ctx, dgst); err != nil {
		t.Fatal(err)
	}
	readAt(t, third, data, 1<<20, 100)
	if err := third.Close(); err != nil {
		t.Fatal(err)
	}
	if n := trash(); n != 0 {
		t.Fatalf("%d entries in the trash at the end, want 0", n)
	}
	if err := s.Walk(ctx, func(info storage.Info) error {
		t.Errorf("Walk reported %s after Delete", info.Digest)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestStorageDriverStrayFiles checks that files the store did not write
// are neither reported by Walk nor opened, and that a leaked upload shows
// in Pending.
func TestStorageDriverStrayFiles(t *testing.T) {
	ctx := t.Context()
	mem := inmemory.New()
	s, err := driver.New(mem)
	if err != nil {
		t.Fatal(err)
	}
	_, dgst := putBlob(t, s, 1000)
	hex := dgst.Encoded()
	// A well-formed name in a directory that does not match its prefix.
	wrongDir := "ff"
	if hex[:2] == wrongDir {
		wrongDir = "00"
	}
	for _, p := range []string{
		"/eagle/blobs/sha256/" + hex[:2] + "/" + hex + ".tmp",
		"/eagle/blobs/sha256/" + wrongDir + "/" + hex[:62] + "00",
		"/eagle/blobs/sha256/" + hex[:2] + "/" + strings.ToUpper(hex),
		"/eagle/blobs/md5/" + hex[:2] + "/" + hex[:32],
		"/eagle/blobs/sha256/" + hex,
		"/eagle/blobs/x",
		"/eagle/other",
	} {
		if err := mem.PutContent(ctx, p, []byte("stray")); err != nil {
			t.Fatalf("PutContent(%s): %v", p, err)
		}
	}
	var seen []digest.Digest
	if err := s.Walk(ctx, func(info storage.Info) error {
		seen = append(seen, info.Digest)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != dgst {
		t.Fatalf("Walk reported %v, want only %s", seen, dgst)
	}
	if n, err := s.Pending(ctx); err != nil || n != 0 {
		t.Fatalf("Pending = %d, %v; want 0", n, err)
	}
	if err := mem.PutContent(ctx, "/eagle/uploads/sha256-leaked", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Pending(ctx); err != nil || n != 1 {
		t.Fatalf("Pending with a leaked upload = %d, %v; want 1", n, err)
	}
}
