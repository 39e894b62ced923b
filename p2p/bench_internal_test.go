package p2p

import (
	"bytes"
	"context"
	"crypto/sha1"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/anacrolix/torrent/metainfo"
	tstorage "github.com/anacrolix/torrent/storage"
	"github.com/opencontainers/go-digest"
)

// benchPieces is how many pieces BenchmarkPieceVerify's blob has.
const benchPieces = 8

// BenchmarkPieceVerify measures piece verification as anacrolix/torrent
// does it after the last block of a piece arrives: the piece is read back
// from Eagle's torrent storage (the partial file) through anacrolix's
// storage wrapper into SHA-1 and compared with the metainfo's hash. The
// piece lengths are those PieceLength picks for 32 MiB, 1 GiB and 4 GiB
// blobs.
func BenchmarkPieceVerify(b *testing.B) {
	for _, pl := range []int64{256 << 10, 1 << 20, 4 << 20} {
		b.Run(strconv.FormatInt(pl>>10, 10)+"KiB", func(b *testing.B) {
			info, pieces := benchTorrent(b, pl)
			b.SetBytes(pl)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				mp := info.Piece(i % benchPieces)
				h := sha1.New()
				n, err := pieces.Piece(mp).WriteTo(h)
				if err != nil || n != pl {
					b.Fatalf("hash piece %d: %d bytes, %v", mp.Index(), n, err)
				}
				if want := mp.V1Hash().Unwrap(); !bytes.Equal(h.Sum(nil), want[:]) {
					b.Fatalf("piece %d: hash mismatch", mp.Index())
				}
			}
		})
	}
}

// benchTorrent writes benchPieces random pieces of length pl to a partial
// file and returns their metainfo and the anacrolix storage over them.
func benchTorrent(b *testing.B, pl int64) (*metainfo.Info, *tstorage.Torrent) {
	b.Helper()
	size := benchPieces * pl
	f, err := os.Create(filepath.Join(b.TempDir(), "partial"))
	if err != nil {
		b.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{byte(pl)})
	info := &metainfo.Info{Name: "bench", Length: size, PieceLength: pl}
	buf := make([]byte, pl)
	for range benchPieces {
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		sum := sha1.Sum(buf)
		info.Pieces = append(info.Pieces, sum[:]...)
	}
	d := newPartialData(info.Length, info.PieceLength, f)
	b.Cleanup(func() {
		if err := d.close(); err != nil {
			b.Error(err)
		}
	})
	t, err := tstorage.NewClient(d).OpenTorrent(context.Background(), info, metainfo.Hash{})
	if err != nil {
		b.Fatal(err)
	}
	return info, t
}

// BenchmarkInfoHasher measures how fast a seeder builds a blob's metainfo
// while the blob streams in from the origin (SHA-1 of every piece).
func BenchmarkInfoHasher(b *testing.B) {
	const size = 16 << 20
	data := make([]byte, 1<<20)
	if _, err := io.ReadFull(rand.NewChaCha8([32]byte{1}), data); err != nil {
		b.Fatal(err)
	}
	dgst := digest.FromString("bench") // not checked by InfoHasher
	b.SetBytes(size)
	for b.Loop() {
		ih := NewInfoHasher(dgst, size)
		for range size / len(data) {
			if _, err := ih.Write(data); err != nil {
				b.Fatal(err)
			}
		}
		mi, err := ih.MetaInfo()
		if err != nil {
			b.Fatal(err)
		}
		if _, info, err := ParseMetaInfo(dgst, mi); err != nil || info.NumPieces() != size/int(PieceLength(size)) {
			b.Fatalf("metainfo: %d pieces, %v", info.NumPieces(), err)
		}
	}
}
