package p2p

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"hash"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
)

// eagleMetaInfo is the metainfo Eagle writes: BitTorrent's, with the
// blob's SHA-256 states at the piece boundaries beside the info (so the
// infohash is BitTorrent's). Other clients ignore the extra key.
type eagleMetaInfo struct {
	CreatedBy    string        `bencode:"created by,omitempty"`
	SHA256States []byte        `bencode:"eagle sha256 states,omitempty"`
	InfoBytes    bencode.Bytes `bencode:"info"`
}

// A pieceChain checks the pieces of a blob whose digest is a SHA-256 in
// any order, with one SHA-256 pass in all, where BitTorrent's way costs
// two: each piece against its SHA-1, then the whole blob, in order,
// against the digest.
//
// SHA-256 hashes a stream in 64-byte blocks, carrying 32 bytes of state
// from one block to the next; the digest is the state after the last
// block (and the padding). The seeder that builds the metainfo records
// the state at the end of every piece but the last (pieces are whole
// blocks). A node checks piece i by starting SHA-256 from the state
// before it (the standard initial state for piece 0), hashing the piece,
// and comparing the state it reaches with the one recorded after it; for
// the last piece, the digest itself. The states come from the seeder and
// are not trusted: once every piece passed, the node has computed the
// blob's SHA-256 itself, block by block from the standard initial state,
// and reached the digest, so the blob is the digest's blob whatever the
// states said. A wrong state only makes a good piece fail, as a wrong
// SHA-1 in the info would.
type pieceChain struct {
	states   []byte // sha256.Size bytes after each piece but the last
	want     []byte // the digest's bytes
	dgst     digest.Digest
	pieceLen int64
	n        int
}

// newPieceChain returns the chain in metainfo mi of the blob dgst, or nil
// when there is none to use: another hash, or a metainfo from a seeder
// that does not record the states.
func newPieceChain(dgst digest.Digest, mi []byte, info *metainfo.Info) *pieceChain {
	if dgst.Algorithm() != digest.SHA256 || info.PieceLength%sha256.BlockSize != 0 {
		return nil
	}
	var emi eagleMetaInfo
	if err := unmarshalBencode(mi, &emi); err != nil {
		return nil
	}
	n := info.NumPieces()
	want, err := hex.DecodeString(dgst.Encoded())
	if err != nil || n < 2 || len(emi.SHA256States) != sha256.Size*(n-1) {
		return nil
	}
	return &pieceChain{states: emi.SHA256States, want: want, dgst: dgst, pieceLen: info.PieceLength, n: n}
}

// before returns the blob's SHA-256 after piece i-1, from the recorded
// state (the initial one for piece 0).
func (c *pieceChain) before(i int) hash.Hash {
	h := sha256.New()
	if i > 0 {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(c.marshaled(i)); err != nil {
			panic("p2p: a SHA-256 state of Go's own layout does not unmarshal: " + err.Error())
		}
	}
	return h
}

// marshaled is the state before piece i (i > 0) in the layout of
// crypto/sha256's MarshalBinary: a magic, the 8 state words, an empty
// block buffer (pieces are whole blocks) and the bytes hashed.
func (c *pieceChain) marshaled(i int) []byte {
	b := make([]byte, 0, 4+sha256.Size+sha256.BlockSize+8)
	b = append(b, "sha\x03"...)
	b = append(b, c.states[sha256.Size*(i-1):sha256.Size*i]...)
	b = append(b, make([]byte, sha256.BlockSize)...)
	return binary.BigEndian.AppendUint64(b, uint64(int64(i)*c.pieceLen))
}

// verify reports whether b, as piece i, takes the blob's SHA-256 from the
// state before the piece to the one after it (the digest for the last).
func (c *pieceChain) verify(i int, b []byte) bool {
	if i < 0 || i >= c.n {
		return false
	}
	h := c.before(i)
	h.Write(b)
	return c.reached(i, h)
}

// reached reports whether h, started with before(i) and fed piece i, is
// at the state recorded after piece i (the digest for the last).
func (c *pieceChain) reached(i int, h hash.Hash) bool {
	if i == c.n-1 {
		return bytes.Equal(h.Sum(nil), c.want)
	}
	return bytes.Equal(appendChainState(nil, h), c.states[sha256.Size*i:sha256.Size*(i+1)])
}

// verifier returns a storage.Verifier for the blob resumed before the
// last piece: fed the last piece, it verifies the whole blob, the other
// pieces having passed verify.
func (c *pieceChain) verifier() (*storage.Verifier, error) {
	return storage.ResumeVerifier(c.dgst, c.marshaled(c.n-1), int64(c.n-1)*c.pieceLen)
}

// appendChainState appends the 32 state bytes of h, a SHA-256 that hashed
// whole blocks, to b.
func appendChainState(b []byte, h hash.Hash) []byte {
	m, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("p2p: crypto/sha256 does not marshal: " + err.Error())
	}
	return append(b, m[4:4+sha256.Size]...)
}
