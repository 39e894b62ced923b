// Package storagetest is the conformance suite for storage.Store backends.
// Every backend (filesystem, memory, and later ones such as an adapter over
// distribution storage drivers) runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store {
//			return memory.New()
//		})
//	}
//
// The suite checks behaviour through the storage.Store interface only:
// bytes read back are identical, digests are verified, failed or cancelled
// writes leave nothing visible, crafted digests are refused with
// storage.ErrInvalidDigest, and a cancelled context fails every call.
// Whether a crafted digest can reach a file outside a backend's root is a
// property of the backend; backends that keep files test it themselves.
package storagetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/opencontainers/go-digest"
)

// PendingCounter is an optional interface for stores that can tell how many
// writes still hold resources (temporary files, buffers). When the store
// under test implements it, the suite checks that every committed, failed
// or cancelled write releases what it held.
type PendingCounter interface {
	// Pending reports how many writes are neither committed nor discarded.
	Pending(ctx context.Context) (int, error)
}

// Run runs the conformance suite as parallel subtests of t. newStore is
// called once per subtest and must return a new, empty store; it should
// register any cleanup the store needs with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"PutStatOpen", testPutStatOpen},
		{"EmptyBlob", testEmptyBlob},
		{"SHA512", testSHA512},
		{"ReadAt", testReadAt},
		{"ConcurrentReadAt", testConcurrentReadAt},
		{"BlobClose", testBlobClose},
		{"NotFound", testNotFound},
		{"Walk", testWalk},
		{"WalkStops", testWalkStops},
		{"DeleteDuringWalk", testDeleteDuringWalk},
		{"PutExisting", testPutExisting},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentMixed", testConcurrentMixed},
		{"ReadDuringDelete", testReadDuringDelete},
		{"DigestMismatch", testDigestMismatch},
		{"MismatchKeepsExisting", testMismatchKeepsExisting},
		{"Cancel", testCancel},
		{"CommitTwice", testCommitTwice},
		{"InvalidDigests", testInvalidDigests},
		{"LargeBlob", testLargeBlob},
		{"ContextCancelled", testContextCancelled},
		{"ContextCancelledCommit", testContextCancelledCommit},
		{"ContextCancelledWalk", testContextCancelledWalk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			tc.fn(t, s)
		})
	}
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b) // never fails
	return b
}

// randomReader streams n reproducible pseudo-random bytes without holding
// them in memory.
func randomReader(seed uint64, n int64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return io.LimitReader(rand.NewChaCha8(key), n)
}

// chunkSizes are the sizes put writes in, uneven on purpose so that
// backends that buffer see writes straddling their internal boundaries.
var chunkSizes = []int{1, 4093, 65536, 100003, 7}

// write streams data into w in uneven chunks.
func write(t *testing.T, w storage.Writer, data []byte) {
	t.Helper()
	for i := 0; len(data) > 0; i++ {
		n := min(chunkSizes[i%len(chunkSizes)], len(data))
		m, err := w.Write(data[:n])
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		if m != n {
			t.Fatalf("Write wrote %d of %d bytes", m, n)
		}
		data = data[n:]
	}
}

// put stores data under its sha256 digest and returns the committed Info.
func put(t *testing.T, s storage.Store, data []byte) storage.Info {
	t.Helper()
	return putAs(t, s, digest.FromBytes(data), data)
}

// putAs stores data under dgst, which must be its digest.
func putAs(t *testing.T, s storage.Store, dgst digest.Digest, data []byte) storage.Info {
	t.Helper()
	w, err := s.Create(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Create(%s): %v", dgst, err)
	}
	defer w.Cancel()
	write(t, w, data)
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit(%s): %v", dgst, err)
	}
	if info.Digest != dgst || info.Size != int64(len(data)) {
		t.Fatalf("Commit returned %+v, want digest %s size %d", info, dgst, len(data))
	}
	if info.ModTime.IsZero() {
		t.Fatalf("Commit returned a zero ModTime")
	}
	return info
}

// readAll opens dgst and returns its bytes, checking Size along the way.
func readAll(t *testing.T, s storage.Store, dgst digest.Digest) []byte {
	t.Helper()
	b, err := s.Open(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Open(%s): %v", dgst, err)
	}
	defer b.Close()
	data, err := io.ReadAll(storage.NewReader(b, 0))
	if err != nil {
		t.Fatalf("read %s: %v", dgst, err)
	}
	if int64(len(data)) != b.Size() {
		t.Fatalf("read %d bytes of %s, Size says %d", len(data), dgst, b.Size())
	}
	return data
}

// checkContent asserts that dgst holds exactly want.
func checkContent(t *testing.T, s storage.Store, dgst digest.Digest, want []byte) {
	t.Helper()
	got := readAll(t, s, dgst)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: read back %d bytes that differ from the %d written", dgst, len(got), len(want))
	}
}

// checkAbsent asserts that Stat and Open of dgst report storage.ErrNotFound.
func checkAbsent(t *testing.T, s storage.Store, dgst digest.Digest) {
	t.Helper()
	if info, err := s.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat(%s) = %+v, %v; want ErrNotFound", dgst, info, err)
	}
	if b, err := s.Open(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
		if err == nil {
			b.Close()
		}
		t.Fatalf("Open(%s) error = %v; want ErrNotFound", dgst, err)
	}
}

// walkAll returns every blob Walk reports, failing on duplicates.
func walkAll(t *testing.T, s storage.Store) map[digest.Digest]storage.Info {
	t.Helper()
	seen := make(map[digest.Digest]storage.Info)
	err := s.Walk(t.Context(), func(info storage.Info) error {
		if _, dup := seen[info.Digest]; dup {
			t.Errorf("Walk reported %s twice", info.Digest)
		}
		seen[info.Digest] = info
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return seen
}

// checkWalk asserts that Walk reports exactly the blobs in want.
func checkWalk(t *testing.T, s storage.Store, want map[digest.Digest]int64) {
	t.Helper()
	got := walkAll(t, s)
	for dgst, info := range got {
		size, ok := want[dgst]
		if !ok {
			t.Errorf("Walk reported %s, which is not committed", dgst)
			continue
		}
		if info.Size != size {
			t.Errorf("Walk reported %s with size %d, want %d", dgst, info.Size, size)
		}
		if info.ModTime.IsZero() {
			t.Errorf("Walk reported %s with a zero ModTime", dgst)
		}
	}
	for dgst := range want {
		if _, ok := got[dgst]; !ok {
			t.Errorf("Walk did not report committed blob %s", dgst)
		}
	}
}

// checkPending asserts, for stores that implement PendingCounter, how many
// writes still hold resources.
func checkPending(t *testing.T, s storage.Store, want int) {
	t.Helper()
	pc, ok := s.(PendingCounter)
	if !ok {
		return
	}
	n, err := pc.Pending(t.Context())
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	if n != want {
		t.Fatalf("Pending = %d, want %d", n, want)
	}
}
