package p2p

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
)

// chainBlob builds a blob of size random bytes and its metainfo as a
// seeder does.
func chainBlob(t *testing.T, size int) ([]byte, digest.Digest, []byte, metainfo.Info) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	dgst := digest.FromBytes(data)
	ih := NewInfoHasher(dgst, int64(size))
	for off := 0; off < size; off += 100_000 { // writes across piece boundaries
		ih.Write(data[off:min(size, off+100_000)])
	}
	mi, err := ih.MetaInfo()
	if err != nil {
		t.Fatal(err)
	}
	_, info, err := ParseMetaInfo(dgst, mi)
	if err != nil {
		t.Fatal(err)
	}
	return data, dgst, mi, info
}

// TestPieceChain checks that every piece of a blob passes against the
// states a seeder records, in any order; that a changed byte, a piece
// given as another, or a changed state fails; and that the resumed
// verifier verifies the whole blob from its last piece.
func TestPieceChain(t *testing.T) {
	for _, size := range []int{3 << 20, 3<<20 + 12345, 64<<10 + 1} {
		data, dgst, mi, info := chainBlob(t, size)
		c := newPieceChain(dgst, mi, &info)
		if c == nil {
			t.Fatalf("%d bytes: no chain in the metainfo", size)
		}
		n := info.NumPieces()
		piece := func(i int) []byte {
			return data[int64(i)*info.PieceLength : min(int64(size), int64(i+1)*info.PieceLength)]
		}
		for i := n - 1; i >= 0; i-- {
			if !c.verify(i, piece(i)) {
				t.Fatalf("%d bytes: piece %d of %d does not pass", size, i, n)
			}
			bad := bytes.Clone(piece(i))
			bad[len(bad)/2] ^= 1
			if c.verify(i, bad) {
				t.Fatalf("%d bytes: piece %d with a changed byte passes", size, i)
			}
		}
		if c.verify(0, piece(1)) || c.verify(n, piece(0)) || c.verify(-1, piece(0)) {
			t.Fatalf("%d bytes: a piece passes as another", size)
		}
		v, err := c.verifier()
		if err != nil {
			t.Fatal(err)
		}
		v.Write(piece(n - 1))
		if err := v.Verify(); err != nil || v.Size() != int64(size) {
			t.Fatalf("%d bytes: resumed verifier: %v, size %d", size, err, v.Size())
		}
		// A lying seeder's state fails the pieces around it; the others
		// still pass.
		c.states[0] ^= 1
		if c.verify(0, piece(0)) || c.verify(1, piece(1)) {
			t.Fatalf("%d bytes: pieces pass against a changed state", size)
		}
		if n > 2 && !c.verify(2, piece(2)) {
			t.Fatalf("%d bytes: piece 2 fails though its states are right", size)
		}
	}
}

// TestMetaInfoChainCompatible checks that the states leave the infohash
// and BitTorrent's view of the metainfo as they were, and that a metainfo
// without them, or for another hash, gives no chain.
func TestMetaInfoChainCompatible(t *testing.T) {
	data, dgst, mi, info := chainBlob(t, 5<<20)
	loaded, err := metainfo.Load(bytes.NewReader(mi))
	if err != nil {
		t.Fatal(err)
	}
	plain := metainfo.MetaInfo{InfoBytes: loaded.InfoBytes, CreatedBy: "eagle"}
	var buf bytes.Buffer
	if err := plain.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if loaded.HashInfoBytes() != plain.HashInfoBytes() {
		t.Fatal("the states changed the infohash")
	}
	if !strings.Contains(string(mi), "19:eagle sha256 states") || len(mi) < (info.NumPieces()-1)*sha256.Size {
		t.Fatal("the metainfo does not carry the states")
	}
	if c := newPieceChain(dgst, buf.Bytes(), &info); c != nil {
		t.Fatal("a chain from a metainfo without states")
	}
	other := digest.SHA512.FromBytes(data)
	ih := NewInfoHasher(other, int64(len(data)))
	ih.Write(data)
	mi512, err := ih.MetaInfo()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi512), "eagle sha256 states") {
		t.Fatal("states recorded for a sha512 blob")
	}
}

// TestInfoHasherVerify checks the digest from the hash that records the
// states: the blob passes, other bytes or fewer fail with a mismatch, and
// a sha512 digest is not checked.
func TestInfoHasherVerify(t *testing.T) {
	data := make([]byte, 3<<20+5)
	rand.Read(data)
	dgst := digest.FromBytes(data)
	ih := NewInfoHasher(dgst, int64(len(data)))
	ih.Write(data)
	if !ih.ChecksDigest() || ih.Verify() != nil {
		t.Fatalf("the blob: ChecksDigest %v, Verify %v", ih.ChecksDigest(), ih.Verify())
	}
	other := bytes.Clone(data)
	other[7] ^= 1
	ih = NewInfoHasher(dgst, int64(len(data)))
	ih.Write(other)
	if err := ih.Verify(); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("other bytes: %v, want storage.ErrDigestMismatch", err)
	}
	ih = NewInfoHasher(dgst, int64(len(data)))
	ih.Write(data[:100])
	if err := ih.Verify(); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("fewer bytes: %v, want storage.ErrDigestMismatch", err)
	}
	ih = NewInfoHasher(digest.SHA512.FromBytes(data), int64(len(data)))
	ih.Write(data)
	if err := ih.Verify(); ih.ChecksDigest() || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("sha512: ChecksDigest %v, Verify %v", ih.ChecksDigest(), err)
	}
}
