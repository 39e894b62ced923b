package p2p

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/storage"
)

// keepAdopter is a storage.Adopter that keeps the bytes of the file it
// adopts, once its verifier verified.
type keepAdopter struct{ got []byte }

func (k *keepAdopter) Adopt(_ context.Context, path string, v *storage.Verifier) (storage.Info, error) {
	if err := v.Verify(); err != nil {
		return storage.Info{}, err
	}
	b, err := os.ReadFile(path)
	k.got = b
	return storage.Info{Size: v.Size()}, err
}

func (k *keepAdopter) CanAdopt(string) bool { return true }

// chainDownload is a download of a blob with a piece chain, nothing
// written yet.
type chainDownload struct {
	data []byte
	ent  *entry
	info metainfo.Info
}

func newChainDownload(t *testing.T) *chainDownload {
	data, dgst, mi, info := chainBlob(t, 3<<20+12345)
	d := newPartialData(int64(len(data)), info.PieceLength, partialFile(t, int64(len(data))))
	t.Cleanup(func() { d.close() })
	d.setChain(newPieceChain(dgst, mi, &info))
	return &chainDownload{data: data, ent: &entry{dgst: dgst, data: d, size: int64(len(data))}, info: info}
}

func (c *chainDownload) piece(i int) []byte {
	return bytes.Clone(c.data[int64(i)*c.info.PieceLength : min(int64(len(c.data)), int64(i+1)*c.info.PieceLength)])
}

// wire writes b into piece i as the peer wire does, then marks the piece
// complete (anacrolix found its SHA-1 right).
func (c *chainDownload) wire(i int, b []byte) {
	c.write(i, b)
	pieceData{d: c.ent.data, p: c.info.Piece(i)}.MarkComplete()
}

func (c *chainDownload) adopt(a storage.Adopter) error {
	return (&Engine{}).adopt(context.Background(), a, c.ent, blob.Ref{Digest: c.ent.dgst})
}

// TestVerifiedPiecesStayWritten: a piece written verified (here through
// the piece chain) that anacrolix then marks incomplete (a hash it ran
// after dropping a chunk failed) stays complete, and the wire's bytes for
// it are dropped, before the commit reached it or after; the adopted file
// is the blob.
func TestVerifiedPiecesStayWritten(t *testing.T) {
	for _, when := range []string{"before the commit hashed it", "after"} {
		c := newChainDownload(t)
		n := c.info.NumPieces()
		for i := range n - 1 {
			if _, _, err := c.ent.data.writeVerified(i, c.piece(i), true); err != nil {
				t.Fatal(err)
			}
		}
		a := &keepAdopter{}
		done := make(chan error, 1)
		attack := func() {
			p := pieceData{d: c.ent.data, p: c.info.Piece(0)}
			p.MarkNotComplete()
			c.wire(0, bytes.Repeat([]byte{'X'}, int(c.info.PieceLength)))
		}
		if when == "after" {
			go func() { done <- c.adopt(a) }()
			time.Sleep(100 * time.Millisecond) // the commit waits on the last piece
			attack()
		} else {
			attack()
			go func() { done <- c.adopt(a) }()
		}
		if _, _, err := c.ent.data.writeVerified(n-1, c.piece(n-1), true); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if !bytes.Equal(a.got, c.data) {
			t.Fatalf("%s: the adopted file is not the blob (it starts %q)", when, a.got[:4])
		}
	}
}

// TestAdoptMixedPieces: pieces from direct transfers (chained) and from
// the wire (hashed by the commit from the chain's states) make the blob;
// one wrong byte in a wire piece fails the commit with a digest mismatch
// and nothing is adopted.
func TestAdoptMixedPieces(t *testing.T) {
	for _, bad := range []bool{false, true} {
		c := newChainDownload(t)
		for i := range c.info.NumPieces() {
			b := c.piece(i)
			if i%3 != 0 {
				if _, _, err := c.ent.data.writeVerified(i, b, true); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if bad && i == 1*3 {
				b[5] ^= 1
			}
			c.wire(i, b)
		}
		a := &keepAdopter{}
		err := c.adopt(a)
		switch {
		case !bad && (err != nil || !bytes.Equal(a.got, c.data)):
			t.Fatalf("good pieces: %v, adopted the blob: %v", err, bytes.Equal(a.got, c.data))
		case bad && (!errors.Is(err, blob.ErrDigestMismatch) || a.got != nil):
			t.Fatalf("a bad wire piece: %v (adopted %d bytes), want blob.ErrDigestMismatch and nothing adopted", err, len(a.got))
		}
	}
}
