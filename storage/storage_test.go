package storage_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/opencontainers/go-digest"
)

func TestValidateDigest(t *testing.T) {
	hex256 := fmt.Sprintf("%x", sha256.Sum256([]byte("x")))
	hex512 := fmt.Sprintf("%x", sha512.Sum512([]byte("x")))
	hex384 := fmt.Sprintf("%x", sha512.Sum384([]byte("x")))
	for _, tc := range []struct {
		dgst digest.Digest
		ok   bool
	}{
		{digest.Digest("sha256:" + hex256), true},
		{digest.Digest("sha512:" + hex512), true},
		{"", false},
		{"sha256:", false},
		{"sha256:../../etc/passwd", false},
		{digest.Digest("sha256:" + strings.ToUpper(hex256)), false},
		{digest.Digest("sha256:" + hex256[:63]), false},
		{digest.Digest("sha256:" + hex256 + "0"), false},
		{digest.Digest("sha256:" + hex256[:32] + "/" + hex256[33:]), false},
		{digest.Digest("sha256:" + hex256[:32] + "\x00" + hex256[33:]), false},
		{digest.Digest("sha512:" + hex256), false},
		{digest.Digest("sha384:" + hex384), false}, // well formed, but not accepted
		{digest.Digest("md5:" + hex256[:32]), false},
	} {
		err := storage.ValidateDigest(tc.dgst)
		if tc.ok && err != nil {
			t.Errorf("ValidateDigest(%q) = %v, want nil", tc.dgst, err)
		}
		if !tc.ok && !errors.Is(err, storage.ErrInvalidDigest) {
			t.Errorf("ValidateDigest(%q) = %v, want ErrInvalidDigest", tc.dgst, err)
		}
	}
}

func TestVerifier(t *testing.T) {
	data := bytes.Repeat([]byte("eagle"), 10_000)
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		dgst := alg.FromBytes(data)
		v, err := storage.NewVerifier(dgst)
		if err != nil {
			t.Fatalf("NewVerifier(%s): %v", dgst, err)
		}
		if _, err := io.Copy(v, io.LimitReader(bytes.NewReader(data), 12_345)); err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(); !errors.Is(err, storage.ErrDigestMismatch) {
			t.Fatalf("Verify of a prefix = %v, want ErrDigestMismatch", err)
		}
		if _, err := v.Write(data[12_345:]); err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(); err != nil {
			t.Fatalf("Verify of all the bytes = %v, want nil", err)
		}
		if v.Size() != int64(len(data)) || v.Digest() != dgst {
			t.Fatalf("Size, Digest = %d, %s; want %d, %s", v.Size(), v.Digest(), len(data), dgst)
		}
		v.Write([]byte{0})
		if err := v.Verify(); !errors.Is(err, storage.ErrDigestMismatch) {
			t.Fatalf("Verify with an extra byte = %v, want ErrDigestMismatch", err)
		}
	}
	if _, err := storage.NewVerifier("sha256:nope"); !errors.Is(err, storage.ErrInvalidDigest) {
		t.Fatalf("NewVerifier of a bad digest = %v, want ErrInvalidDigest", err)
	}
}

func TestNewReader(t *testing.T) {
	data := []byte("0123456789")
	b := bytesBlob{bytes.NewReader(data)}
	got, err := io.ReadAll(storage.NewReader(b, 4))
	if err != nil || string(got) != "456789" {
		t.Fatalf("NewReader at 4 read %q, %v; want %q", got, err, "456789")
	}
}

// bytesBlob is the simplest real storage.Blob: a byte slice.
type bytesBlob struct{ *bytes.Reader }

func (b bytesBlob) Close() error { return nil }
