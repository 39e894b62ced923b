package p2p_test

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/p2p"
)

// buildMetaInfo builds metainfo for content cut into pieces of pieceLen,
// whatever Eagle's own rule would choose: what an older or newer Eagle
// version, or a broken seeder, might hand out.
func buildMetaInfo(t *testing.T, content []byte, pieceLen int64) []byte {
	t.Helper()
	var pieces []byte
	for off := int64(0); off < int64(len(content)); off += pieceLen {
		h := sha1.Sum(content[off:min(off+pieceLen, int64(len(content)))])
		pieces = append(pieces, h[:]...)
	}
	info := metainfo.Info{
		Name:        digest.FromBytes(content).Encoded(),
		Length:      int64(len(content)),
		PieceLength: pieceLen,
		Pieces:      pieces,
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := (&metainfo.MetaInfo{InfoBytes: infoBytes}).Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ParseMetaInfo takes the piece length Eagle's rule picks or a longer power
// of two (metainfo from another Eagle version, during a rolling upgrade),
// and refuses shorter or odd ones.
func TestParseMetaInfoPieceLengths(t *testing.T) {
	content := bytes.Repeat([]byte("eagle"), (3<<20)/5) // 3 MiB: rule says 64 KiB
	dgst := digest.FromBytes(content)
	if p2p.PieceLength(int64(len(content))) != p2p.MinPieceLength {
		t.Fatalf("PieceLength(3 MiB) = %d, the table below assumes %d", p2p.PieceLength(int64(len(content))), p2p.MinPieceLength)
	}
	for _, tc := range []struct {
		pieceLen int64
		ok       bool
	}{
		{p2p.MinPieceLength, true},
		{256 << 10, true}, // what Eagle used before the minimum became 64 KiB
		{p2p.MaxPieceLength, true},
		{32 << 10, false},
		{96 << 10, false},
		{2 * p2p.MaxPieceLength, false},
	} {
		_, info, err := p2p.ParseMetaInfo(dgst, buildMetaInfo(t, content, tc.pieceLen))
		switch {
		case tc.ok && err != nil:
			t.Errorf("piece length %d: %v", tc.pieceLen, err)
		case tc.ok && info.PieceLength != tc.pieceLen:
			t.Errorf("piece length %d: parsed as %d", tc.pieceLen, info.PieceLength)
		case !tc.ok && !errors.Is(err, p2p.ErrBadMetaInfo):
			t.Errorf("piece length %d: err = %v, want p2p.ErrBadMetaInfo", tc.pieceLen, err)
		}
	}
}
