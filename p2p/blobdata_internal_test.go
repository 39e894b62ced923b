package p2p

import (
	"bytes"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/eagle-p2p/eagle/internal/directio"
)

// TestWantsPriority checks when a waiting reader asks the swarm for its
// piece first: a reader that sought ahead of the download always does; one
// at the download's front only for long pieces.
func TestWantsPriority(t *testing.T) {
	partial := func(pieceLen int64, pieces int, complete ...int) *blobData {
		info := &metainfo.Info{PieceLength: pieceLen, Length: pieceLen * int64(pieces), Pieces: make([]byte, 20*pieces)}
		d := newPartialData(info.Length, info.PieceLength, nil)
		for _, i := range complete {
			d.complete[i] = true
		}
		return d
	}
	for _, tc := range []struct {
		name string
		d    *blobData
		wait int
		want bool
	}{
		{"first piece, short pieces", partial(64<<10, 16), 0, false},
		{"at the front, short pieces", partial(64<<10, 16, 0, 1, 2), 3, false},
		{"sought ahead, short pieces", partial(64<<10, 16, 0, 2), 5, true},
		{"sought ahead, nothing yet", partial(64<<10, 16), 8, true},
		{"at the front, long pieces", partial(frontPriorityMinPiece, 16, 0), 1, true},
		{"first piece, long pieces", partial(1<<20, 4), 0, true},
	} {
		if got := tc.d.wantsPriority(tc.wait); got != tc.want {
			t.Errorf("%s: wantsPriority(%d) = %v, want %v", tc.name, tc.wait, got, tc.want)
		}
	}
}

// partialFile is a partial file of size bytes in a test directory.
func partialFile(t *testing.T, size int64) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "partial"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestWriteVerifiedReadBack writes every piece of a blob longer than
// recentBytes with writeVerified, out of order and reusing the spare
// buffers it hands back, then reads the blob at offsets that span pieces
// in memory and pieces only in the file: the bytes must be the blob's.
func TestWriteVerifiedReadBack(t *testing.T) {
	const pieceLen = 1 << 20
	size := int64(recentBytes + 3*pieceLen + 12345) // a short last piece
	blob := make([]byte, size)
	rand.Read(blob)
	d := newPartialData(size, pieceLen, partialFile(t, size))
	t.Cleanup(func() { d.close() })
	n := len(d.complete)
	order := append([]int{n - 1, 0}, mrand.Perm(n)...) // the first two again later
	var buf []byte
	for _, i := range order {
		if buf == nil {
			buf = directio.Buffer(pieceLen)
		}
		b := buf[:min(pieceLen, size-int64(i)*pieceLen)]
		copy(b, blob[int64(i)*pieceLen:])
		wasComplete := d.isComplete(i)
		wrote, spare, err := d.writeVerified(i, b, false)
		if err != nil {
			t.Fatal(err)
		}
		if wrote == wasComplete {
			t.Fatalf("piece %d (complete before: %v): wrote = %v", i, wasComplete, wrote)
		}
		if !wrote && &spare[0] != &b[0] {
			t.Fatalf("piece %d not written: the spare is not the caller's buffer", i)
		}
		buf = spare
	}
	if d.left() != 0 {
		t.Fatalf("%d bytes left after every piece was written", d.left())
	}
	if len(d.recent.order) == n || len(d.recent.order) < recentMin {
		t.Fatalf("%d of %d pieces in memory", len(d.recent.order), n)
	}
	for _, span := range [][2]int64{
		{0, size},
		{pieceLen - 7, 3 * pieceLen},
		{size - pieceLen - 100, pieceLen + 100},
		{int64(d.recent.order[0])*pieceLen - 1, 2},
	} {
		if span[0] < 0 {
			continue
		}
		got := make([]byte, span[1])
		if _, err := d.ReadAt(got, span[0]); err != nil {
			t.Fatalf("ReadAt(%d bytes at %d): %v", span[1], span[0], err)
		}
		if !bytes.Equal(got, blob[span[0]:span[0]+span[1]]) {
			t.Fatalf("ReadAt(%d bytes at %d): not the blob's bytes", span[1], span[0])
		}
	}
	onDisk, err := os.ReadFile(d.partialName())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, blob) {
		t.Fatal("the partial file does not hold the blob")
	}
}

// TestWireChunksDropped checks that a peer-wire chunk is not written into
// a piece that is complete or that a direct transfer is writing, and that
// writeVerified fails once the data failed.
func TestWireChunksDropped(t *testing.T) {
	const pieceLen = 64 << 10
	size := int64(4 * pieceLen)
	f := partialFile(t, size)
	d := newPartialData(size, pieceLen, f)
	t.Cleanup(func() { d.close() })
	info := &metainfo.Info{PieceLength: pieceLen, Length: size, Pieces: make([]byte, 20*4)}
	chunk := bytes.Repeat([]byte{0xee}, 16<<10)
	piece := func(i int) pieceData { return pieceData{d: d, p: info.Piece(i)} }

	verified := bytes.Repeat([]byte{1}, pieceLen)
	if _, _, err := d.writeVerified(0, verified, false); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.writing[1] = true
	d.mu.Unlock()
	for _, i := range []int{0, 1, 2} {
		if n, err := piece(i).WriteAt(chunk, 0); n != len(chunk) || err != nil {
			t.Fatalf("piece %d: WriteAt = %d, %v", i, n, err)
		}
	}
	got := make([]byte, size)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:pieceLen], verified) {
		t.Error("a wire chunk overwrote a verified piece")
	}
	if !bytes.Equal(got[pieceLen:pieceLen+len(chunk)], make([]byte, len(chunk))) {
		t.Error("a wire chunk was written into a piece being written")
	}
	if !bytes.Equal(got[2*pieceLen:2*pieceLen+len(chunk)], chunk) {
		t.Error("a wire chunk for a free piece was not written")
	}

	cause := errors.New("abandoned")
	d.fail(cause)
	if wrote, _, err := d.writeVerified(3, verified, false); wrote || !errors.Is(err, cause) {
		t.Errorf("writeVerified after fail = %v, %v; want false, %v", wrote, err, cause)
	}
	if _, err := d.ReadAt(got[:10], 0); !errors.Is(err, cause) {
		t.Errorf("ReadAt after fail: %v, want %v", err, cause)
	}
}
