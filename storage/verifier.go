package storage

import (
	// Register the hashes that ValidateDigest accepts, so that digest.Digest
	// reports them available and Verifier can hash with them whatever the
	// rest of the binary imports.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding"
	"fmt"
	"hash"

	"github.com/opencontainers/go-digest"
)

// Verifier hashes the bytes written to it and checks them against the
// digest they are meant to have. Backends feed it while they stream a blob
// to its temporary home, so Commit can verify without reading the blob
// back. It is not safe for concurrent use.
type Verifier struct {
	want digest.Digest
	h    hash.Hash
	n    int64
}

// NewVerifier returns a Verifier for dgst, or an error wrapping
// ErrInvalidDigest if ValidateDigest refuses it.
func NewVerifier(dgst digest.Digest) (*Verifier, error) {
	if err := ValidateDigest(dgst); err != nil {
		return nil, err
	}
	return &Verifier{want: dgst, h: dgst.Algorithm().Hash()}, nil
}

// Write adds p to the running hash. It never fails.
func (v *Verifier) Write(p []byte) (int, error) {
	v.h.Write(p) // hash.Hash.Write never returns an error.
	v.n += int64(len(p))
	return len(p), nil
}

// Size is the number of bytes written so far.
func (v *Verifier) Size() int64 { return v.n }

// Digest is the digest the written bytes must hash to.
func (v *Verifier) Digest() digest.Digest { return v.want }

// Verify reports whether the bytes written so far hash to the expected
// digest; if not, it returns an error wrapping ErrDigestMismatch.
func (v *Verifier) Verify() error {
	got := digest.NewDigest(v.want.Algorithm(), v.h)
	if got != v.want {
		return fmt.Errorf("%w: want %s, got %s (%d bytes)", ErrDigestMismatch, v.want, got, v.n)
	}
	return nil
}

// ResumeVerifier returns a Verifier for dgst that continues from state, the
// marshaled state (encoding.BinaryMarshaler) of dgst's hash after the
// first n bytes of the blob. The caller vouches for those n bytes: it
// checked them itself, piece by piece, against states it verified in turn
// (see p2p's piece chain). It returns an error wrapping ErrInvalidDigest
// if ValidateDigest refuses dgst, or the hash's error for a state it does
// not take.
func ResumeVerifier(dgst digest.Digest, state []byte, n int64) (*Verifier, error) {
	v, err := NewVerifier(dgst)
	if err != nil {
		return nil, err
	}
	u, ok := v.h.(encoding.BinaryUnmarshaler)
	if !ok {
		return nil, fmt.Errorf("storage: the %s hash cannot resume", dgst.Algorithm())
	}
	if err := u.UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("storage: resume %s: %w", dgst, err)
	}
	v.n = n
	return v, nil
}
