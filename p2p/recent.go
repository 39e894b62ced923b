package p2p

// recentBytes bounds the verified pieces a download keeps in memory for
// the readers right behind it (recentPieces); at least recentMin pieces
// are kept, whatever their length.
const (
	recentBytes = 16 << 20
	recentMin   = 2
)

// recentPieces holds the pieces a download verified last whole in memory
// (direct transfers, streams, relays), oldest first. Readers right behind
// the download take them from here: the hash of the whole blob, the
// node's own client, peers asking for the newest pieces. The file has them
// too; written past the page cache, reading them back from it would go to
// the disk. The zero value is empty.
type recentPieces struct {
	order []int
	bytes map[int][]byte
	n     int // bytes held
}

// add keeps b as piece i's bytes and drops the oldest pieces past the
// bound; it returns the buffer of a dropped piece, whole, for the next
// piece, or nil.
func (r *recentPieces) add(i int, b []byte) (spare []byte) {
	if r.bytes == nil {
		r.bytes = make(map[int][]byte)
	}
	r.order = append(r.order, i)
	r.bytes[i] = b
	r.n += len(b)
	for len(r.order) > recentMin && r.n > recentBytes {
		old := r.bytes[r.order[0]]
		delete(r.bytes, r.order[0])
		r.order = r.order[1:]
		r.n -= len(old)
		spare = old[:cap(old)]
	}
	return spare
}

// read copies len(p) bytes at off from a piece it holds, if one holds them
// all.
func (r *recentPieces) read(p []byte, off, pieceLen int64) bool {
	i := int(off / pieceLen)
	b, ok := r.bytes[i]
	at := off - int64(i)*pieceLen
	if !ok || at+int64(len(p)) > int64(len(b)) {
		return false
	}
	copy(p, b[at:])
	return true
}

// reset drops every piece.
func (r *recentPieces) reset() { *r = recentPieces{} }
