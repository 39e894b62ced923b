package p2p

import (
	"testing"

	"github.com/anacrolix/torrent/metainfo"
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
