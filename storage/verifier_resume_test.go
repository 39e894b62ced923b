package storage_test

import (
	"crypto/sha256"
	"encoding"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
)

// TestResumeVerifier resumes a verifier from the state of a SHA-256 that
// hashed the first part of a blob: fed the rest, it verifies; from another
// state it reports a mismatch; a state it cannot take is an error.
func TestResumeVerifier(t *testing.T) {
	blob := make([]byte, 10000)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	dgst := digest.FromBytes(blob)
	h := sha256.New()
	h.Write(blob[:4096])
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	v, err := storage.ResumeVerifier(dgst, state, 4096)
	if err != nil {
		t.Fatal(err)
	}
	v.Write(blob[4096:])
	if err := v.Verify(); err != nil || v.Size() != int64(len(blob)) {
		t.Fatalf("resumed: %v, size %d", err, v.Size())
	}

	h.Write([]byte{1})
	other, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	v, err = storage.ResumeVerifier(dgst, other, 4096)
	if err != nil {
		t.Fatal(err)
	}
	v.Write(blob[4096:])
	if err := v.Verify(); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("from another state: %v, want ErrDigestMismatch", err)
	}
	if _, err := storage.ResumeVerifier(dgst, state[:10], 4096); err == nil {
		t.Fatal("a truncated state: no error")
	}
	if _, err := storage.ResumeVerifier("sha256:nothex", state, 4096); !errors.Is(err, storage.ErrInvalidDigest) {
		t.Fatalf("a bad digest: %v, want ErrInvalidDigest", err)
	}
}
