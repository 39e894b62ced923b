package p2p

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"strconv"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
)

// ErrBadMetaInfo reports metainfo that is malformed or does not describe
// the blob it was fetched for.
var ErrBadMetaInfo = errors.New("p2p: bad metainfo")

// Piece length bounds. See PieceLength.
const (
	MinPieceLength = 64 << 10
	MaxPieceLength = 16 << 20
	// targetPieces is how many pieces PieceLength aims for: enough that
	// many peers can trade different pieces of one blob at once, few enough
	// that the piece hashes and bitfields stay small.
	targetPieces = 1024
)

// PieceLength is the piece length Eagle uses for a blob of the given size:
// the smallest power of two that cuts the blob into at most 1024 pieces,
// clamped to [64 KiB, 16 MiB]. So a 32 MiB layer has 512 pieces of 64 KiB,
// a 1 GiB layer 1024 pieces of 1 MiB, and a 64 GiB blob 4096 pieces of
// 16 MiB. Small pieces matter: a peer can pass a piece on only once it has
// all of it, so the piece length is the swarm's pipeline delay per hop. The rule depends only on the size, so every seeder builds the same
// metainfo (and infohash) for the same blob.
func PieceLength(size int64) int64 {
	pl := int64(MinPieceLength)
	for pl < MaxPieceLength && pl*targetPieces < size {
		pl <<= 1
	}
	return pl
}

// InfoHasher computes a blob's torrent piece hashes while the blob streams
// through it, so a seeder can build the metainfo in the same pass that
// stores the blob.
type InfoHasher struct {
	dgst     digest.Digest
	size     int64
	pieceLen int64
	written  int64
	inPiece  int64
	h        hash.Hash
	pieces   []byte
	// whole is the blob's SHA-256, states its state after each piece but
	// the last (see pieceChain); nil for a digest of another algorithm.
	whole  hash.Hash
	states []byte
}

// NewInfoHasher returns an InfoHasher for a blob of the given digest and size.
func NewInfoHasher(dgst digest.Digest, size int64) *InfoHasher {
	pl := PieceLength(size)
	ih := &InfoHasher{
		dgst:     dgst,
		size:     size,
		pieceLen: pl,
		h:        sha1.New(),
		pieces:   make([]byte, 0, 20*((size+pl-1)/pl)),
	}
	if dgst.Algorithm() == digest.SHA256 {
		ih.whole = sha256.New()
		ih.states = make([]byte, 0, sha256.Size*((size-1)/pl))
	}
	return ih
}

// Write hashes p. It fails once more bytes arrive than the declared size.
func (ih *InfoHasher) Write(p []byte) (int, error) {
	if ih.written+int64(len(p)) > ih.size {
		return 0, fmt.Errorf("p2p: blob %s longer than its declared %d bytes", ih.dgst, ih.size)
	}
	n := len(p)
	for len(p) > 0 {
		room := ih.pieceLen - ih.inPiece
		chunk := p
		if int64(len(chunk)) > room {
			chunk = chunk[:room]
		}
		ih.h.Write(chunk)
		if ih.whole != nil {
			ih.whole.Write(chunk)
		}
		ih.inPiece += int64(len(chunk))
		ih.written += int64(len(chunk))
		p = p[len(chunk):]
		if ih.inPiece == ih.pieceLen {
			ih.pieces = ih.h.Sum(ih.pieces)
			ih.h.Reset()
			ih.inPiece = 0
			if ih.whole != nil && ih.written < ih.size {
				ih.states = appendChainState(ih.states, ih.whole)
			}
		}
	}
	return n, nil
}

// PieceHashes returns the SHA-1 hashes, 20 bytes each, of the pieces all
// of whose bytes were written so far. The slice is the hasher's: read it
// before the next Write, and do not change it.
func (ih *InfoHasher) PieceHashes() []byte { return ih.pieces }

// ChecksDigest reports whether ih hashes the whole blob with the digest's
// own algorithm (sha256), so that Verify can check the digest and a
// caller need not hash the blob a second time.
func (ih *InfoHasher) ChecksDigest() bool { return ih.whole != nil }

// Verify reports whether exactly the declared size was written and the
// bytes hash to the digest; if not, it returns an error wrapping
// storage.ErrDigestMismatch. Without ChecksDigest it returns an error
// wrapping errors.ErrUnsupported.
func (ih *InfoHasher) Verify() error {
	switch {
	case ih.whole == nil:
		return fmt.Errorf("p2p: %s: %w", ih.dgst, errors.ErrUnsupported)
	case ih.written != ih.size:
		return fmt.Errorf("%w: %s: hashed %d of %d bytes", storage.ErrDigestMismatch, ih.dgst, ih.written, ih.size)
	}
	if got := digest.NewDigest(digest.SHA256, ih.whole); got != ih.dgst {
		return fmt.Errorf("%w: want %s, got %s", storage.ErrDigestMismatch, ih.dgst, got)
	}
	return nil
}

// PieceLength returns the piece length of the metainfo ih builds.
func (ih *InfoHasher) PieceLength() int64 { return ih.pieceLen }

// MetaInfo returns the bencoded metainfo once exactly size bytes were written.
func (ih *InfoHasher) MetaInfo() ([]byte, error) {
	if ih.written != ih.size {
		return nil, fmt.Errorf("p2p: blob %s: hashed %d of %d bytes", ih.dgst, ih.written, ih.size)
	}
	pieces := ih.pieces
	if ih.inPiece > 0 {
		pieces = ih.h.Sum(pieces)
	}
	info := metainfo.Info{
		Name:        ih.dgst.Encoded(),
		Length:      ih.size,
		PieceLength: ih.pieceLen,
		Pieces:      pieces,
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("p2p: encode info: %w", err)
	}
	mi := eagleMetaInfo{InfoBytes: infoBytes, CreatedBy: "eagle", SHA256States: ih.states}
	b, err := bencode.Marshal(mi)
	if err != nil {
		return nil, fmt.Errorf("p2p: encode metainfo: %w", err)
	}
	return b, nil
}

// ParseMetaInfo decodes bencoded metainfo and checks that it describes the
// blob dgst in the shape Eagle builds: one file named after the digest, a
// power-of-two piece length from the one PieceLength chooses up to
// MaxPieceLength, and one 20-byte hash per piece. Longer pieces than
// PieceLength's are accepted so that nodes and seeders of different Eagle
// versions (an older one cut blobs under 256 MiB into 256 KiB pieces) work
// together during a rolling upgrade, and a node keeps seeding what it
// stored before one; shorter ones, which would mean more pieces to track
// than Eagle ever makes, are not.
func ParseMetaInfo(dgst digest.Digest, b []byte) (*metainfo.MetaInfo, metainfo.Info, error) {
	if err := storage.ValidateDigest(dgst); err != nil {
		return nil, metainfo.Info{}, err
	}
	var mi metainfo.MetaInfo
	if err := unmarshalBencode(b, &mi); err != nil {
		return nil, metainfo.Info{}, fmt.Errorf("%w: %v", ErrBadMetaInfo, err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return nil, metainfo.Info{}, fmt.Errorf("%w: info: %v", ErrBadMetaInfo, err)
	}
	switch {
	case info.Name != dgst.Encoded():
		return nil, info, fmt.Errorf("%w: name %q does not match digest %s", ErrBadMetaInfo, info.Name, dgst)
	case len(info.Files) != 0 || info.HasV2():
		return nil, info, fmt.Errorf("%w: not a single-file v1 torrent", ErrBadMetaInfo)
	case info.Length <= 0:
		return nil, info, fmt.Errorf("%w: length %d", ErrBadMetaInfo, info.Length)
	case info.PieceLength < PieceLength(info.Length) || info.PieceLength > MaxPieceLength || info.PieceLength&(info.PieceLength-1) != 0:
		return nil, info, fmt.Errorf("%w: piece length %d, want a power of two from %d to %d", ErrBadMetaInfo, info.PieceLength, PieceLength(info.Length), MaxPieceLength)
	}
	want := 20 * ((info.Length + info.PieceLength - 1) / info.PieceLength)
	if int64(len(info.Pieces)) != want {
		return nil, info, fmt.Errorf("%w: %d bytes of piece hashes, want %d", ErrBadMetaInfo, len(info.Pieces), want)
	}
	return &mi, info, nil
}

// unmarshalBencode is bencode.Unmarshal for input from the network. It
// refuses nesting deeper than maxBencodeDepth (see checkBencodeDepth) and
// strings longer than the input: anacrolix's decoder allocates the length
// a string claims, up to 128 MiB, before it reads the string, so 20 bytes
// of a tracker's answer cost 128 MiB.
func unmarshalBencode(b []byte, v any) error {
	if err := checkBencodeDepth(b); err != nil {
		return err
	}
	d := bencode.NewDecoder(bytes.NewReader(b))
	d.MaxStrLen = int64(len(b))
	if err := d.Decode(v); err != nil {
		return err
	}
	return d.ReadEOF()
}

// maxBencodeDepth bounds the nesting of bencoded input from the network.
// Eagle's metainfo nests 2 levels deep, a tracker's answer 3.
const maxBencodeDepth = 32

// checkBencodeDepth refuses bencoded input nested deeper than
// maxBencodeDepth. anacrolix's decoder recurses once per level with no
// limit of its own, so a few MiB of "l" (a seeder's metainfo answer may
// be 4 MiB) overflowed the goroutine stack: a fatal error that no recover
// catches, taking the whole process down. It walks the input as the
// decoder does, without recursion, and leaves every other error to the
// decoder: where the input stops making sense, so does the decoder.
func checkBencodeDepth(b []byte) error {
	depth := 0
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == 'd' || c == 'l':
			if depth++; depth > maxBencodeDepth {
				return fmt.Errorf("bencode nested more than %d levels deep", maxBencodeDepth)
			}
			i++
		case c == 'e':
			if depth--; depth < 0 {
				return nil
			}
			i++
		case c == 'i':
			end := bytes.IndexByte(b[i:], 'e')
			if end < 0 {
				return nil
			}
			i += end + 1
		case c >= '0' && c <= '9':
			colon := bytes.IndexByte(b[i:], ':')
			if colon < 0 {
				return nil
			}
			n, err := strconv.ParseUint(string(b[i:i+colon]), 10, 63)
			if err != nil || n > uint64(len(b)-i-colon-1) {
				return nil
			}
			i += colon + 1 + int(n)
		default:
			return nil
		}
	}
	return nil
}
