package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/opencontainers/go-digest"
)

func testPutStatOpen(t *testing.T, s storage.Store) {
	data := randomBytes(1, 300_001)
	dgst := digest.FromBytes(data)
	checkAbsent(t, s, dgst)
	info := put(t, s, data)

	st, err := s.Stat(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if st.Digest != dgst || st.Size != int64(len(data)) || st.ModTime.IsZero() {
		t.Fatalf("Stat = %+v, want digest %s size %d and a ModTime", st, dgst, len(data))
	}
	if !st.ModTime.Equal(info.ModTime) {
		t.Errorf("Stat ModTime %v differs from Commit's %v", st.ModTime, info.ModTime)
	}
	checkContent(t, s, dgst, data)
	checkPending(t, s, 0)
}

func testEmptyBlob(t *testing.T, s storage.Store) {
	dgst := digest.FromBytes(nil)
	w, err := s.Create(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit of an empty blob with no writes: %v", err)
	}
	if info.Size != 0 {
		t.Fatalf("Commit size = %d, want 0", info.Size)
	}
	b, err := s.Open(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	if b.Size() != 0 {
		t.Fatalf("Size = %d, want 0", b.Size())
	}
	if n, err := b.ReadAt(make([]byte, 1), 0); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt(1 byte, 0) of an empty blob = %d, %v; want 0, io.EOF", n, err)
	}
	checkWalk(t, s, map[digest.Digest]int64{dgst: 0})
}

func testSHA512(t *testing.T, s storage.Store) {
	data := randomBytes(2, 70_000)
	dgst := digest.SHA512.FromBytes(data)
	putAs(t, s, dgst, data)
	checkContent(t, s, dgst, data)
	checkWalk(t, s, map[digest.Digest]int64{dgst: int64(len(data))})

	// The same bytes under their sha256 digest are a different blob.
	checkAbsent(t, s, digest.FromBytes(data))
}

func testReadAt(t *testing.T, s storage.Store) {
	data := randomBytes(3, 200_003)
	size := int64(len(data))
	dgst := put(t, s, data).Digest
	b, err := s.Open(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	if b.Size() != size {
		t.Fatalf("Size = %d, want %d", b.Size(), size)
	}

	for _, tc := range []struct {
		name    string
		off     int64
		len     int
		wantN   int
		wantEOF bool // io.EOF required; otherwise nil, or io.EOF when n reaches the end
	}{
		{"start", 0, 1000, 1000, false},
		{"middle", 65_530, 70_000, 70_000, false},
		{"whole", 0, int(size), int(size), false},
		{"ends at end", size - 100, 100, 100, false},
		{"crosses end", size - 10, 100, 10, true},
		{"at end", size, 1, 0, true},
		{"past end", size + 1000, 10, 0, true},
	} {
		p := make([]byte, tc.len)
		n, err := b.ReadAt(p, tc.off)
		if n != tc.wantN {
			t.Errorf("%s: ReadAt(%d bytes at %d) n = %d, want %d (err %v)", tc.name, tc.len, tc.off, n, tc.wantN, err)
			continue
		}
		atEnd := tc.off+int64(n) == size
		switch {
		case tc.wantEOF && err != io.EOF:
			t.Errorf("%s: ReadAt error = %v, want io.EOF", tc.name, err)
		case !tc.wantEOF && err != nil && !(atEnd && err == io.EOF):
			t.Errorf("%s: ReadAt error = %v, want nil", tc.name, err)
		}
		if n > 0 && !bytes.Equal(p[:n], data[tc.off:tc.off+int64(n)]) {
			t.Errorf("%s: ReadAt returned the wrong bytes", tc.name)
		}
	}
	if _, err := b.ReadAt(make([]byte, 10), -1); err == nil || err == io.EOF {
		t.Errorf("ReadAt at offset -1: error = %v, want a non-EOF error", err)
	}

	rest, err := io.ReadAll(storage.NewReader(b, 123_456))
	if err != nil {
		t.Fatalf("NewReader at 123456: %v", err)
	}
	if !bytes.Equal(rest, data[123_456:]) {
		t.Fatalf("NewReader at 123456 returned %d bytes that differ from the blob's tail", len(rest))
	}
}

func testConcurrentReadAt(t *testing.T, s storage.Store) {
	data := randomBytes(4, 512<<10)
	dgst := put(t, s, data).Digest
	b, err := s.Open(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	// io.ReaderAt allows parallel calls on one source; torrent piece
	// requests rely on it.
	const readers, piece = 8, 16 << 10
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			p := make([]byte, piece)
			for off := int64(r * piece); off < int64(len(data)); off += readers * piece {
				n, err := b.ReadAt(p, off)
				if err != nil && !(err == io.EOF && off+int64(n) == int64(len(data))) {
					t.Errorf("ReadAt at %d: %v", off, err)
					return
				}
				if !bytes.Equal(p[:n], data[off:off+int64(n)]) {
					t.Errorf("ReadAt at %d returned the wrong bytes", off)
					return
				}
			}
		})
	}
	wg.Wait()
}

func testBlobClose(t *testing.T, s storage.Store) {
	dgst := put(t, s, []byte("closing time")).Digest
	b, err := s.Open(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n, err := b.ReadAt(make([]byte, 4), 0); err == nil {
		t.Fatalf("ReadAt after Close = %d, nil; want an error", n)
	}
	// Closing a reader does not affect the stored blob.
	checkContent(t, s, dgst, []byte("closing time"))
}

func testNotFound(t *testing.T, s storage.Store) {
	for _, dgst := range []digest.Digest{
		digest.FromString("never stored"),
		digest.SHA512.FromString("never stored"),
	} {
		checkAbsent(t, s, dgst)
		if err := s.Delete(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Delete(%s) error = %v, want ErrNotFound", dgst, err)
		}
	}
	checkWalk(t, s, nil)
}

func testWalk(t *testing.T, s storage.Store) {
	checkWalk(t, s, nil)
	want := make(map[digest.Digest]int64)
	for i := range 5 {
		data := randomBytes(uint64(100+i), 1000*i+1)
		want[put(t, s, data).Digest] = int64(len(data))
	}
	other := randomBytes(200, 5000)
	sha512 := digest.SHA512.FromBytes(other)
	putAs(t, s, sha512, other)
	want[sha512] = int64(len(other))
	empty := put(t, s, nil).Digest
	want[empty] = 0

	// A write in progress and a failed write are not blobs.
	inProgress := randomBytes(201, 3000)
	w, err := s.Create(t.Context(), digest.FromBytes(inProgress))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer w.Cancel()
	write(t, w, inProgress[:1500])
	bad, err := s.Create(t.Context(), digest.FromString("something else"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	write(t, bad, []byte("not that"))
	if _, err := bad.Commit(t.Context()); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("Commit of wrong bytes: %v, want ErrDigestMismatch", err)
	}
	checkPending(t, s, 1)
	checkWalk(t, s, want)

	var deleted int
	for dgst := range want {
		if deleted == 2 {
			break
		}
		if err := s.Delete(t.Context(), dgst); err != nil {
			t.Fatalf("Delete(%s): %v", dgst, err)
		}
		delete(want, dgst)
		deleted++
	}
	checkWalk(t, s, want)

	write(t, w, inProgress[1500:])
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	want[info.Digest] = info.Size
	checkWalk(t, s, want)
	checkPending(t, s, 0)
}

func testWalkStops(t *testing.T, s storage.Store) {
	for i := range 4 {
		put(t, s, randomBytes(uint64(300+i), 100))
	}
	stop := errors.New("stop here")
	calls := 0
	err := s.Walk(t.Context(), func(storage.Info) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Walk error = %v, want the error fn returned", err)
	}
	if calls != 2 {
		t.Fatalf("Walk called fn %d times after it failed on call 2", calls)
	}
}

func testDeleteDuringWalk(t *testing.T, s storage.Store) {
	// An evictor walks the store and deletes as it goes.
	for i := range 6 {
		put(t, s, randomBytes(uint64(500+i), 100*i))
	}
	deleted := 0
	err := s.Walk(t.Context(), func(info storage.Info) error {
		if err := s.Delete(t.Context(), info.Digest); err != nil {
			return err
		}
		deleted++
		return nil
	})
	if err != nil {
		t.Fatalf("Walk deleting each blob: %v", err)
	}
	if deleted != 6 {
		t.Fatalf("deleted %d blobs during Walk, want 6", deleted)
	}
	checkWalk(t, s, nil)
}

func testPutExisting(t *testing.T, s storage.Store) {
	data := randomBytes(5, 10_000)
	first := put(t, s, data)
	second := put(t, s, data)
	if second.Size != first.Size {
		t.Fatalf("second Commit size %d, first %d", second.Size, first.Size)
	}
	checkWalk(t, s, map[digest.Digest]int64{first.Digest: first.Size})
	checkContent(t, s, first.Digest, data)
	checkPending(t, s, 0)
}

func testConcurrentWriters(t *testing.T, s storage.Store) {
	data := randomBytes(6, 1<<20)
	dgst := digest.FromBytes(data)
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			errs[i] = func() error {
				w, err := s.Create(t.Context(), dgst)
				if err != nil {
					return err
				}
				defer w.Cancel()
				for rest := data; len(rest) > 0; {
					n := min(len(rest), 32<<10)
					if _, err := w.Write(rest[:n]); err != nil {
						return err
					}
					rest = rest[n:]
				}
				info, err := w.Commit(t.Context())
				if err != nil {
					return err
				}
				if info.Digest != dgst || info.Size != int64(len(data)) {
					return fmt.Errorf("commit returned %+v", info)
				}
				return nil
			}()
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	checkWalk(t, s, map[digest.Digest]int64{dgst: int64(len(data))})
	checkContent(t, s, dgst, data)
	checkPending(t, s, 0)
}

func testConcurrentMixed(t *testing.T, s storage.Store) {
	const workers, perWorker = 4, 4
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var walker sync.WaitGroup
	walker.Go(func() {
		for ctx.Err() == nil {
			err := s.Walk(ctx, func(info storage.Info) error {
				if info.Size < 0 {
					return fmt.Errorf("negative size for %s", info.Digest)
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				t.Errorf("Walk during writes: %v", err)
				return
			}
		}
	})
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Go(func() {
			for i := range perWorker {
				data := randomBytes(uint64(1000+wk*perWorker+i), 20_000+i*777)
				dgst := digest.FromBytes(data)
				w, err := s.Create(ctx, dgst)
				if err != nil {
					t.Errorf("Create: %v", err)
					return
				}
				_, werr := w.Write(data)
				_, cerr := w.Commit(ctx)
				if werr != nil || cerr != nil {
					t.Errorf("write %s: %v, commit: %v", dgst, werr, cerr)
					return
				}
				b, err := s.Open(ctx, dgst)
				if err != nil {
					t.Errorf("Open right after Commit: %v", err)
					return
				}
				got, err := io.ReadAll(storage.NewReader(b, 0))
				b.Close()
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("read back %s: %d bytes, err %v", dgst, len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	cancel()
	walker.Wait()
	if n := len(walkAll(t, s)); n != workers*perWorker {
		t.Fatalf("Walk found %d blobs, want %d", n, workers*perWorker)
	}
	checkPending(t, s, 0)
}

func testReadDuringDelete(t *testing.T, s storage.Store) {
	data := randomBytes(7, 300_000)
	dgst := put(t, s, data).Digest
	b, err := s.Open(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	half := make([]byte, 150_000)
	if _, err := b.ReadAt(half, 0); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}

	if err := s.Delete(t.Context(), dgst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	checkAbsent(t, s, dgst)
	checkWalk(t, s, nil)
	if err := s.Delete(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second Delete error = %v, want ErrNotFound", err)
	}
	// Not only where the last read stopped: a backend that reads through
	// streams must not need the deleted path to read elsewhere.
	p := make([]byte, 1000)
	if n, err := b.ReadAt(p, 1234); n != len(p) || err != nil || !bytes.Equal(p, data[1234:2234]) {
		t.Fatalf("ReadAt(1000 bytes at 1234) after Delete = %d, %v", n, err)
	}

	// Storing the blob again does not disturb the reader either.
	put(t, s, data)
	if b.Size() != int64(len(data)) {
		t.Fatalf("Size after Delete = %d, want %d", b.Size(), len(data))
	}
	rest, err := io.ReadAll(storage.NewReader(b, int64(len(half))))
	if err != nil {
		t.Fatalf("reading after Delete: %v", err)
	}
	if !bytes.Equal(append(half, rest...), data) {
		t.Fatal("an open Blob read the wrong bytes after Delete")
	}
}

func testLargeBlob(t *testing.T, s storage.Store) {
	const size = 64 << 20
	h := digest.SHA256.Digester()
	if _, err := io.Copy(h.Hash(), randomReader(13, size)); err != nil {
		t.Fatal(err)
	}
	dgst := h.Digest()

	w, err := s.Create(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer w.Cancel()
	// Wrap the writer so io.Copy cannot take a shortcut around Write.
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, randomReader(13, size), make([]byte, 1<<20)); err != nil {
		t.Fatalf("streaming into the store: %v", err)
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if info.Size != size {
		t.Fatalf("Commit size = %d, want %d", info.Size, size)
	}

	b, err := s.Open(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	if b.Size() != size {
		t.Fatalf("Size = %d, want %d", b.Size(), size)
	}
	back := digest.SHA256.Digester()
	if _, err := io.CopyBuffer(back.Hash(), storage.NewReader(b, 0), make([]byte, 1<<20)); err != nil {
		t.Fatalf("reading back: %v", err)
	}
	if back.Digest() != dgst {
		t.Fatalf("read back %s, want %s", back.Digest(), dgst)
	}
	// The last bytes, as a final torrent piece would be read.
	tail := make([]byte, 4096)
	want := make([]byte, 4096)
	r := randomReader(13, size)
	if _, err := io.CopyN(io.Discard, r, size-4096); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, want); err != nil {
		t.Fatal(err)
	}
	if n, err := b.ReadAt(tail, size-4096); n != 4096 || (err != nil && err != io.EOF) || !bytes.Equal(tail, want) {
		t.Fatalf("ReadAt of the last 4096 bytes = %d, %v, equal %v", n, err, bytes.Equal(tail, want))
	}
}
