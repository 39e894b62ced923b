package p2p

import (
	"bytes"
	"testing"
)

// TestRecentPieces checks the bound (bytes, but never fewer than
// recentMin pieces), the spare buffers it hands back, and reads.
func TestRecentPieces(t *testing.T) {
	const pieceLen = 4 << 20
	var r recentPieces
	piece := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, pieceLen) }
	keep := recentBytes / pieceLen
	var spares int
	for i := range keep + 3 {
		spare := r.add(i, piece(i))
		switch {
		case i < keep && spare != nil:
			t.Fatalf("piece %d of %d within the bound: a spare came back", i, keep)
		case i >= keep && len(spare) != pieceLen:
			t.Fatalf("piece %d past the bound: spare of %d bytes, want %d", i, len(spare), pieceLen)
		case spare != nil:
			spares++
			if spare[0] != byte(i-keep) {
				t.Fatalf("piece %d: spare is piece %d's buffer, want the oldest (%d)", i, spare[0], i-keep)
			}
		}
	}
	if r.n != keep*pieceLen || len(r.order) != keep || len(r.bytes) != keep {
		t.Fatalf("holds %d bytes in %d pieces (%d in the map), want %d in %d", r.n, len(r.order), len(r.bytes), keep*pieceLen, keep)
	}
	p := make([]byte, 100)
	if r.read(p, 0, pieceLen) {
		t.Error("read of a dropped piece succeeded")
	}
	last := keep + 2
	if !r.read(p, int64(last)*pieceLen+pieceLen-100, pieceLen) || !bytes.Equal(p, bytes.Repeat([]byte{byte(last)}, 100)) {
		t.Error("read of the end of the newest piece failed or gave other bytes")
	}
	if r.read(p, int64(last)*pieceLen+pieceLen-50, pieceLen) {
		t.Error("read past the end of a held piece succeeded")
	}

	// Pieces longer than the bound: recentMin are kept.
	var big recentPieces
	for i := range recentMin + 1 {
		big.add(i, make([]byte, recentBytes))
	}
	if len(big.order) != recentMin {
		t.Errorf("pieces of %d bytes: holds %d, want %d", recentBytes, len(big.order), recentMin)
	}
	big.reset()
	if big.n != 0 || big.read(p, int64(recentMin)*recentBytes, recentBytes) {
		t.Error("reset left bytes behind")
	}
}
