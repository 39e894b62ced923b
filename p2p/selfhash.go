package p2p

import (
	"crypto/sha1"
	"fmt"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/eagle-p2p/eagle/internal/directio"
)

// SelfHash checks a piece the peer wire filled, for anacrolix (which asks
// a storage piece that has this method instead of reading the piece and
// hashing it with SHA-1 itself), and returns the hash anacrolix compares
// with the info's SHA-1.
//
// With a piece chain (see pieceChain) it checks the piece's SHA-256 there
// first, and a piece that passes is verified the way a direct transfer's
// is: marked chained, so that the commit does not read and hash it again,
// and complete from then on. BitTorrent's way costs two reads of every
// piece and two hashes (its SHA-1 here, the blob's SHA-256 at the
// commit); this costs one of each (`bench swarm -netns`, N = 32 on two
// cores, with 64 KiB blocks: 10.8-10.9 s against 11.7-11.9 s). Without a
// chain, and for a piece that fails it, the piece's SHA-1 comes back: its
// bytes may be right and the states or the digest wrong, which the commit
// then reports as blob.ErrDigestMismatch rather than the wire fetching the
// piece forever.
//
// While the piece is read and hashed the wire's chunks for it are dropped
// (see WriteAt), so the bytes that passed are the bytes in the file.
//
// anacrolix does not read a piece its storage hashes, so it cannot tell
// which of several peers sent the bad block of a failed piece ("smart
// banning"); a peer that sent all of a failed piece is still banned. A
// member that sends bad blocks among other peers' good ones costs its
// peers refetches, never a wrong byte.
func (p pieceData) SelfHash() (metainfo.Hash, error) {
	d, i := p.d, p.p.Index()
	want := p.p.V1Hash()
	if !want.Ok {
		return metainfo.Hash{}, fmt.Errorf("p2p: piece %d has no SHA-1 in the info", i)
	}
	d.mu.Lock()
	for d.writing[i] {
		// A direct transfer is writing the piece (the wire's chunks for it
		// were dropped): its bytes are the ones to judge, in a moment.
		d.mu.Unlock()
		time.Sleep(time.Millisecond)
		d.mu.Lock()
	}
	switch {
	case d.complete[i] && (d.verified[i] || d.blob != nil):
		d.mu.Unlock()
		return want.Value, nil
	case d.partial == nil && d.blob == nil:
		d.mu.Unlock()
		return metainfo.Hash{}, d.gone()
	}
	chain := d.chain
	d.writing[i] = true
	buf := d.hashBuf
	d.hashBuf = nil
	d.mu.Unlock()

	if buf == nil {
		buf = directio.Buffer(int(d.pieceLen))
	}
	b := buf[:p.p.Length()]
	_, err := d.readPiece(b, p.p.Offset())
	chained := err == nil && chain != nil && chain.verify(i, b)
	var sum metainfo.Hash
	if err == nil && !chained {
		// No chain; or bad bytes, or a blob that does not match its digest
		// (the last piece), or states that do not match the blob: the
		// SHA-1 tells which, and the commit, hashing a piece that passed
		// it, fails the last two with blob.ErrDigestMismatch.
		sum = sha1.Sum(b)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	d.writing[i] = false
	if d.partial == nil && d.blob == nil {
		return metainfo.Hash{}, d.gone() // failed or closed meanwhile
	}
	d.hashBuf = buf
	if !chained {
		return sum, err
	}
	d.chained[i] = true
	d.verified[i] = true
	d.setCompleteLocked(i, true)
	return want.Value, nil
}

// readPiece reads the bytes of a piece at off from the file, where the
// wire writes.
func (d *blobData) readPiece(b []byte, off int64) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.readFile(b, off)
}
