package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/opencontainers/go-digest"
)

func testDigestMismatch(t *testing.T, s storage.Store) {
	data := randomBytes(8, 100_000)
	dgst := digest.FromBytes(data)
	other := bytes.Clone(data)
	other[50_000] ^= 1
	for _, tc := range []struct {
		name  string
		bytes []byte
	}{
		{"one bit flipped", other},
		{"truncated", data[:len(data)-1]},
		{"extra byte", append(bytes.Clone(data), 0)},
		{"nothing written", nil},
	} {
		w, err := s.Create(t.Context(), dgst)
		if err != nil {
			t.Fatalf("%s: Create: %v", tc.name, err)
		}
		write(t, w, tc.bytes)
		_, err = w.Commit(t.Context())
		if !errors.Is(err, storage.ErrDigestMismatch) {
			t.Fatalf("%s: Commit error = %v, want ErrDigestMismatch", tc.name, err)
		}
		if _, again := w.Commit(t.Context()); !errors.Is(again, storage.ErrDigestMismatch) {
			t.Fatalf("%s: second Commit error = %v, want ErrDigestMismatch again", tc.name, again)
		}
		if err := w.Cancel(); err != nil {
			t.Fatalf("%s: Cancel after a failed Commit: %v", tc.name, err)
		}
		checkAbsent(t, s, dgst)
		checkWalk(t, s, nil)
		checkPending(t, s, 0)
	}
}

func testMismatchKeepsExisting(t *testing.T, s storage.Store) {
	data := randomBytes(9, 50_000)
	dgst := put(t, s, data).Digest
	w, err := s.Create(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	write(t, w, randomBytes(10, 50_000))
	if _, err := w.Commit(t.Context()); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("Commit of wrong bytes over an existing blob: %v, want ErrDigestMismatch", err)
	}
	checkContent(t, s, dgst, data)
	checkWalk(t, s, map[digest.Digest]int64{dgst: int64(len(data))})
	checkPending(t, s, 0)
}

func testCancel(t *testing.T, s storage.Store) {
	data := randomBytes(11, 80_000)
	dgst := digest.FromBytes(data)
	w, err := s.Create(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	write(t, w, data)
	checkPending(t, s, 1)
	if err := w.Cancel(); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	checkPending(t, s, 0)
	checkAbsent(t, s, dgst)
	checkWalk(t, s, nil)
	if err := w.Cancel(); err != nil {
		t.Fatalf("second Cancel: %v", err)
	}
	if n, err := w.Write([]byte("more")); err == nil {
		t.Fatalf("Write after Cancel = %d, nil; want an error", n)
	}
	if info, err := w.Commit(t.Context()); err == nil {
		t.Fatalf("Commit after Cancel = %+v, nil; want an error", info)
	}
	checkAbsent(t, s, dgst)
	checkPending(t, s, 0)
}

func testCommitTwice(t *testing.T, s storage.Store) {
	data := randomBytes(12, 40_000)
	dgst := digest.FromBytes(data)
	w, err := s.Create(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	write(t, w, data)
	first, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	second, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("second Commit: %v", err)
	}
	if second.Digest != first.Digest || second.Size != first.Size || !second.ModTime.Equal(first.ModTime) {
		t.Fatalf("second Commit = %+v, first %+v", second, first)
	}
	if err := w.Cancel(); err != nil {
		t.Fatalf("Cancel after Commit: %v", err)
	}
	if n, err := w.Write([]byte("more")); err == nil {
		t.Fatalf("Write after Commit = %d, nil; want an error", n)
	}
	checkContent(t, s, dgst, data)
	checkWalk(t, s, map[digest.Digest]int64{dgst: int64(len(data))})
	checkPending(t, s, 0)
}

// invalidDigests are digests a store must refuse: malformed, unsupported,
// or crafted to name a path outside its root.
func invalidDigests() []digest.Digest {
	hex := digest.FromString("x").Encoded()
	s384 := sha512.Sum384([]byte("x"))
	s512 := sha512.Sum512([]byte("x"))
	s256 := sha256.Sum256([]byte("x"))
	return []digest.Digest{
		"",
		"sha256",
		"sha256:",
		":" + digest.Digest(hex),
		"sha256:../../etc/passwd",
		"sha256:../../../../../../../../../../../../../../../../../../../../etc/passwd",
		digest.Digest("sha256:../" + hex[3:]),
		digest.Digest("sha256:" + hex[:2] + "/" + hex[3:]),
		digest.Digest("sha256:" + hex[:32] + "/" + hex[33:]),
		digest.Digest("sha256:" + hex[:32] + "\\" + hex[33:]),
		digest.Digest("sha256:" + hex[:10] + "\x00" + hex[11:]),
		digest.Digest("sha256:" + hex + "\x00"),
		digest.Digest("sha256:" + hex + "/"),
		digest.Digest("sha256:" + hex + "/../../x"),
		digest.Digest("sha256:" + hex + "\n"),
		digest.Digest(" sha256:" + hex),
		digest.Digest("../sha256:" + hex),
		digest.Digest("/sha256:" + hex),
		digest.Digest("sha256/" + hex),
		digest.Digest("../../x:" + hex),
		digest.Digest("sha256:" + strings.ToUpper(hex)),
		digest.Digest("SHA256:" + hex),
		digest.Digest("sha256:" + hex[:63]),
		digest.Digest("sha256:" + hex + "0"),
		digest.Digest("sha256:" + strings.Repeat("g", 64)),
		digest.Digest("sha512:" + hex),
		digest.Digest(fmt.Sprintf("sha256:%x", s512)),
		digest.Digest(fmt.Sprintf("sha384:%x", s384)),
		digest.Digest(fmt.Sprintf("md5:%x", s256[:16])),
		digest.Digest(fmt.Sprintf("sha256+b64:%x", s256)),
		digest.Digest(fmt.Sprintf("blake3:%x", s256)),
	}
}

func testInvalidDigests(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, dgst := range invalidDigests() {
		if _, err := s.Stat(ctx, dgst); !errors.Is(err, storage.ErrInvalidDigest) {
			t.Errorf("Stat(%q) error = %v, want ErrInvalidDigest", dgst, err)
		}
		if b, err := s.Open(ctx, dgst); !errors.Is(err, storage.ErrInvalidDigest) {
			if err == nil {
				b.Close()
			}
			t.Errorf("Open(%q) error = %v, want ErrInvalidDigest", dgst, err)
		}
		if err := s.Delete(ctx, dgst); !errors.Is(err, storage.ErrInvalidDigest) {
			t.Errorf("Delete(%q) error = %v, want ErrInvalidDigest", dgst, err)
		}
		w, err := s.Create(ctx, dgst)
		if !errors.Is(err, storage.ErrInvalidDigest) {
			t.Errorf("Create(%q) error = %v, want ErrInvalidDigest", dgst, err)
		}
		if w != nil {
			t.Errorf("Create(%q) returned a writer with its error", dgst)
			_ = w.Cancel()
		}
	}
	checkWalk(t, s, nil)
	checkPending(t, s, 0)
}

func testContextCancelled(t *testing.T, s storage.Store) {
	data := []byte("present")
	dgst := put(t, s, data).Digest
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Stat(ctx, dgst); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat with a cancelled context: %v, want context.Canceled", err)
	}
	if b, err := s.Open(ctx, dgst); !errors.Is(err, context.Canceled) {
		if err == nil {
			b.Close()
		}
		t.Errorf("Open with a cancelled context: %v, want context.Canceled", err)
	}
	if w, err := s.Create(ctx, digest.FromString("new")); !errors.Is(err, context.Canceled) {
		if err == nil {
			_ = w.Cancel()
		}
		t.Errorf("Create with a cancelled context: %v, want context.Canceled", err)
	}
	if err := s.Delete(ctx, dgst); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a cancelled context: %v, want context.Canceled", err)
	}
	if err := s.Walk(ctx, func(storage.Info) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Walk with a cancelled context: %v, want context.Canceled", err)
	}
	// Nothing was deleted.
	checkContent(t, s, dgst, data)
	checkPending(t, s, 0)
}

func testContextCancelledCommit(t *testing.T, s storage.Store) {
	data := randomBytes(14, 10_000)
	dgst := digest.FromBytes(data)
	w, err := s.Create(t.Context(), dgst)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer w.Cancel()
	write(t, w, data)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := w.Commit(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with a cancelled context: %v, want context.Canceled", err)
	}
	checkAbsent(t, s, dgst)
	checkWalk(t, s, nil)
	checkPending(t, s, 0)
}

func testContextCancelledWalk(t *testing.T, s storage.Store) {
	for i := range 3 {
		put(t, s, randomBytes(uint64(400+i), 10))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	err := s.Walk(ctx, func(storage.Info) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Walk cancelled midway: %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Fatalf("Walk called fn %d times after the context was cancelled in call 1", calls)
	}
}
