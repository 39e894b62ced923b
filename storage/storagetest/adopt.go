package storagetest

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
)

// RunAdopter checks a store that implements storage.Adopter, as parallel
// subtests of t. newStore returns a new, empty store and a directory on
// the store's filesystem where the test may create the files it adopts.
func RunAdopter(t *testing.T, newStore func(t *testing.T) (storage.Store, string)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store, a storage.Adopter, dir string)
	}{
		{"Adopt", testAdopt},
		{"AdoptMismatch", testAdoptMismatch},
		{"AdoptWrongSize", testAdoptWrongSize},
		{"AdoptExisting", testAdoptExisting},
		{"AdoptContextCancelled", testAdoptContextCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, dir := newStore(t)
			a, ok := s.(storage.Adopter)
			if !ok {
				t.Fatalf("%T does not implement storage.Adopter", s)
			}
			if !a.CanAdopt(dir) {
				t.Fatalf("CanAdopt(%s) is false for the directory newStore gave", dir)
			}
			tc.fn(t, s, a, dir)
		})
	}
}

// FileToAdopt writes data to a new file in dir and returns its path and a
// Verifier for dgst fed with data, ready for storage.Adopter.Adopt.
func FileToAdopt(t *testing.T, dir string, dgst digest.Digest, data []byte) (string, *storage.Verifier) {
	t.Helper()
	f, err := os.CreateTemp(dir, "adopt-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	v, err := storage.NewVerifier(dgst)
	if err != nil {
		t.Fatal(err)
	}
	v.Write(data)
	return f.Name(), v
}

func checkGone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("adopted file still at %s (stat: %v)", path, err)
	}
}

func testAdopt(t *testing.T, s storage.Store, a storage.Adopter, dir string) {
	data := randomBytes(41, 3<<20+17)
	dgst := digest.FromBytes(data)
	path, v := FileToAdopt(t, dir, dgst, data)
	info, err := a.Adopt(t.Context(), path, v)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if info.Digest != dgst || info.Size != int64(len(data)) {
		t.Errorf("Adopt returned %+v, want %s of %d bytes", info, dgst, len(data))
	}
	checkGone(t, path)
	checkContent(t, s, dgst, data)
	if st, err := s.Stat(t.Context(), dgst); err != nil || st.Size != int64(len(data)) {
		t.Errorf("Stat after Adopt: %+v, %v", st, err)
	}
}

func testAdoptMismatch(t *testing.T, s storage.Store, a storage.Adopter, dir string) {
	data := randomBytes(42, 100003)
	claimed := digest.FromBytes(randomBytes(43, 100003))
	path, v := FileToAdopt(t, dir, claimed, data)
	if _, err := a.Adopt(t.Context(), path, v); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("Adopt of bytes that do not match: %v, want ErrDigestMismatch", err)
	}
	checkAbsent(t, s, claimed)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("refused file was touched: %v", err)
	}
}

func testAdoptWrongSize(t *testing.T, s storage.Store, a storage.Adopter, dir string) {
	data := randomBytes(44, 65536)
	dgst := digest.FromBytes(data)
	path, v := FileToAdopt(t, dir, dgst, data)
	// Bytes written after they were hashed.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tail"))
	f.Close()
	if _, err := a.Adopt(t.Context(), path, v); err == nil {
		t.Fatal("Adopt of a file longer than its verified bytes succeeded")
	}
	checkAbsent(t, s, dgst)
}

func testAdoptExisting(t *testing.T, s storage.Store, a storage.Adopter, dir string) {
	data := randomBytes(45, 200000)
	dgst := digest.FromBytes(data)
	put(t, s, data)
	path, v := FileToAdopt(t, dir, dgst, data)
	info, err := a.Adopt(t.Context(), path, v)
	if err != nil {
		t.Fatalf("Adopt of a stored blob: %v", err)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Adopt returned size %d, want %d", info.Size, len(data))
	}
	checkGone(t, path)
	checkContent(t, s, dgst, data)
}

func testAdoptContextCancelled(t *testing.T, s storage.Store, a storage.Adopter, dir string) {
	data := randomBytes(46, 4096)
	dgst := digest.FromBytes(data)
	path, v := FileToAdopt(t, dir, dgst, data)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := a.Adopt(ctx, path, v); !errors.Is(err, context.Canceled) {
		t.Fatalf("Adopt with a cancelled context: %v, want context.Canceled", err)
	}
	checkAbsent(t, s, dgst)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("file not adopted was touched: %v", err)
	}
}
