package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"

	"github.com/anacrolix/torrent/metainfo"
	tstorage "github.com/anacrolix/torrent/storage"

	"github.com/eagle-p2p/eagle/internal/directio"
	"github.com/eagle-p2p/eagle/internal/writeback"
	"github.com/eagle-p2p/eagle/storage"
)

// blobData is the torrent storage of one blob. While the blob downloads its
// pieces live in a partial file owned by the engine; once every piece passed
// its hash and the whole blob passed its digest in the store, reads switch to
// the committed blob and the partial file is removed. It also tells waiting
// readers when pieces complete.
type blobData struct {
	size     int64
	pieceLen int64

	mu        sync.RWMutex
	complete  []bool
	nComplete int
	// pending marks pieces a direct transfer asked a peer for, claimed
	// those it is fetching, the peer having accepted (see direct.go).
	pending, claimed []bool
	// writing marks pieces whose verified bytes writeVerified is putting
	// in the file, and those SelfHash is checking; the peer wire's chunks
	// for them are dropped.
	writing []bool
	// chain, when the metainfo has one, checks pieces against the blob's
	// SHA-256 (see pieceChain); chained marks the pieces written after
	// they passed it, which the commit need not hash again.
	chain   *pieceChain
	chained []bool
	// hashBuf is a buffer of a whole piece for SelfHash's next piece.
	hashBuf []byte
	// verified marks the pieces writeVerified wrote, and pieces below
	// sealed the commit has hashed: their bytes in the file are the ones
	// that passed, and they are never marked incomplete again (a hash
	// anacrolix runs over them after a chunk it was sent was dropped
	// could fail, and the wire would then write into them).
	verified []bool
	sealed   int
	partial  *os.File // nil once committed or failed
	// direct is the partial file opened again to write whole pieces past
	// the page cache (internal/directio); nil where the file system
	// refuses, and once partial is nil.
	direct *os.File
	// recent are the pieces writeVerified wrote last, for the readers
	// right behind the download.
	recent  recentPieces
	blob    storage.Blob // set once committed
	changed chan struct{}
	// committedCh is closed once the blob is committed.
	committedCh chan struct{}
	// failed is set when the download was abandoned; readers return it.
	failed error
}

func newPartialData(size, pieceLen int64, f *os.File) *blobData {
	n := int((size + pieceLen - 1) / pieceLen)
	var direct *os.File
	if f != nil {
		var err error
		if direct, err = directio.Open(f.Name()); err != nil {
			direct = nil // written through the page cache
		}
	}
	return &blobData{
		size:     size,
		pieceLen: pieceLen,
		complete: make([]bool, n),
		pending:  make([]bool, n),
		claimed:  make([]bool, n),
		writing:  make([]bool, n),
		chained:  make([]bool, n),
		verified: make([]bool, n),
		partial:  f,
		direct:   direct,
		changed:  make(chan struct{}),

		committedCh: make(chan struct{}),
	}
}

func newCommittedData(info *metainfo.Info, b storage.Blob) *blobData {
	d := &blobData{
		size:      info.Length,
		pieceLen:  info.PieceLength,
		complete:  make([]bool, info.NumPieces()),
		pending:   make([]bool, info.NumPieces()),
		claimed:   make([]bool, info.NumPieces()),
		writing:   make([]bool, info.NumPieces()),
		chained:   make([]bool, info.NumPieces()),
		verified:  make([]bool, info.NumPieces()),
		nComplete: info.NumPieces(),
		blob:      b,
		changed:   make(chan struct{}),

		committedCh: make(chan struct{}),
	}
	close(d.committedCh)
	for i := range d.complete {
		d.complete[i] = true
	}
	return d
}

var errDataClosed = errors.New("p2p: blob data closed")

func (d *blobData) ReadAt(p []byte, off int64) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	// Piece by piece: the pieces kept in memory from there, the others
	// from the file.
	n := 0
	for n < len(p) {
		at := off + int64(n)
		seg := p[n:min(len(p), n+int(d.pieceLen-at%d.pieceLen))]
		if d.recent.read(seg, at, d.pieceLen) {
			n += len(seg)
			continue
		}
		m, err := d.readFile(seg, at)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readFile reads from the committed blob or the partial file; d.mu is
// held.
func (d *blobData) readFile(p []byte, off int64) (int, error) {
	switch {
	case d.blob != nil:
		return d.blob.ReadAt(p, off)
	case d.partial != nil:
		return d.partial.ReadAt(p, off)
	case d.failed != nil:
		return 0, d.failed
	default:
		return 0, errDataClosed
	}
}

func (d *blobData) setComplete(i int, c bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.setCompleteLocked(i, c)
}

// setCompleteLocked is setComplete with d.mu held. A piece that
// writeVerified wrote or the commit hashed stays complete.
func (d *blobData) setCompleteLocked(i int, c bool) {
	if d.complete[i] == c || !c && (d.verified[i] || i < d.sealed) {
		return
	}
	d.complete[i] = c
	if c {
		d.nComplete++
	} else {
		d.nComplete--
	}
	close(d.changed)
	d.changed = make(chan struct{})
}

// claim marks up to most pieces as asked for by a direct transfer
// (pending), from the first that is neither complete, pending nor claimed
// on, stopping at the first piece that is or, by started, is already
// partly downloaded over the peer wire. It returns the first piece and how
// many it marked (0: none left).
func (d *blobData) claim(most int, started func(i int) bool) (first, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.partial == nil {
		return 0, 0
	}
	free := func(i int) bool { return !d.complete[i] && !d.pending[i] && !d.claimed[i] }
	first = -1
	for i := range d.complete {
		if free(i) && !started(i) {
			first = i
			break
		}
	}
	if first < 0 {
		return 0, 0
	}
	for i := first; i < len(d.complete) && n < most && free(i) && (i == first || !started(i)); i++ {
		d.pending[i] = true
		n++
	}
	return first, n
}

// accept turns pieces [first, first+n) from pending into claimed: the
// peer accepted the transfer.
func (d *blobData) accept(first, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := first; i < first+n; i++ {
		d.pending[i], d.claimed[i] = false, true
	}
}

// unclaim releases pieces [first, first+n) and returns those of them that
// are not complete.
func (d *blobData) unclaim(first, n int) (left []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := first; i < first+n; i++ {
		d.pending[i], d.claimed[i] = false, false
		if !d.complete[i] {
			left = append(left, i)
		}
	}
	return left
}

// isClaimed reports whether a direct transfer is fetching piece i.
func (d *blobData) isClaimed(i int) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.claimed[i]
}

// unclaimedLeft returns the pieces that are neither complete nor claimed.
func (d *blobData) unclaimedLeft() []int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []int
	for i, c := range d.complete {
		if !c && !d.claimed[i] && !d.pending[i] {
			out = append(out, i)
		}
	}
	return out
}

// writeVerified writes piece i, whose bytes b passed their hash (the
// blob's piece chain if chained, see pieceChain), and marks it complete,
// unless it is complete or being written already; it reports whether it
// wrote. It takes b: the piece stays in memory for the readers
// right behind the download (recentPieces), and spare is a buffer of a
// whole piece for the caller's next one (an older piece's, or a new one);
// when it did not write, spare is b. Peer-wire chunks for the piece are dropped
// from when the write starts (see pieceData.WriteAt).
//
// The bytes go past the page cache where they are block-aligned (see
// internal/directio and Buffer): in memory already, copying them into the
// page cache would only cost the copy and the pages.
func (d *blobData) writeVerified(i int, b []byte, chained bool) (wrote bool, spare []byte, err error) {
	d.mu.Lock()
	switch {
	case d.complete[i] || d.writing[i] || d.blob != nil:
		d.mu.Unlock()
		return false, b, nil
	case d.partial == nil:
		d.mu.Unlock()
		return false, b, d.gone()
	}
	// The write goes on without the lock: readers of other pieces and
	// the wire's writes to them need not wait for the disk.
	d.writing[i] = true
	f, direct := d.partial, d.direct
	d.mu.Unlock()
	err = directio.WriteAt(f, direct, b, int64(i)*d.pieceLen)
	d.mu.Lock()
	d.writing[i] = false
	if err == nil && d.partial != f {
		err = d.gone() // failed or closed meanwhile
	}
	if err != nil {
		d.mu.Unlock()
		return false, b, err
	}
	spare = d.recent.add(i, b)
	d.chained[i] = chained
	d.verified[i] = true
	d.setCompleteLocked(i, true)
	d.mu.Unlock()
	if spare == nil {
		spare = directio.Buffer(int(d.pieceLen))
	}
	return true, spare, nil
}

// setChain sets the blob's piece chain (nil: none); it is set before the
// download starts.
func (d *blobData) setChain(c *pieceChain) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.chain = c
}

// pieceChain returns the blob's piece chain, or nil.
func (d *blobData) pieceChain() *pieceChain {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.chain
}

// seal keeps piece i, and those before it, complete from now on, so that
// their bytes no longer change, if piece i is complete; it reports
// whether it was. The commit seals each piece before it hashes it.
func (d *blobData) seal(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.complete[i] {
		return false
	}
	d.sealed = max(d.sealed, i+1)
	return true
}

// isChained reports whether piece i was written after it passed the
// piece chain.
func (d *blobData) isChained(i int) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.chained[i]
}

// gone is the error for data whose partial file is gone: the download's
// failure, or errDataClosed; d.mu is held.
func (d *blobData) gone() error {
	if d.failed != nil {
		return d.failed
	}
	return errDataClosed
}

// completed returns a channel closed once the blob is committed.
func (d *blobData) completed() <-chan struct{} { return d.committedCh }

// left is the number of bytes in pieces not yet verified.
func (d *blobData) left() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.blob != nil {
		return 0
	}
	var left int64
	for i, c := range d.complete {
		if !c {
			left += min(d.pieceLen, d.size-int64(i)*d.pieceLen)
		}
	}
	return left
}

func (d *blobData) isComplete(i int) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.complete[i]
}

// readState is what a reader at some offset may do now.
type readState struct {
	// avail is how many bytes from the offset are verified and readable.
	avail int64
	// committed: the whole blob passed its digest.
	committed bool
	// failed is the download's failure, if any.
	failed error
	// changed is closed on the next change.
	changed <-chan struct{}
}

// state reports what a reader at off may do now.
func (d *blobData) state(off int64) readState {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.blob != nil {
		return readState{avail: d.size - off, committed: true, changed: d.changed}
	}
	i := int(off / d.pieceLen)
	end := off
	for ; i < len(d.complete) && d.complete[i]; i++ {
		end = min(int64(i+1)*d.pieceLen, d.size)
	}
	return readState{avail: end - off, failed: d.failed, changed: d.changed}
}

// frontPriorityMinPiece is the smallest piece length for which a reader at
// the download's front (every piece before the one it waits on complete)
// gives that piece priority. anacrolix then has every peer connection
// request that piece first; a piece of a few chunks is too few to go
// round, so the connections moved requests between each other, and over
// real sockets some nodes fell seconds behind (BENCHMARKS.md). The seeder
// offers pieces roughly in order, so small ones come in order anyway. A
// piece of 256 KiB or more has enough chunks, and there the priority keeps
// a large blob's in-order stream moving (without it 2 nodes pulling 1 GiB
// over real sockets took 1.24-1.28 times the floor instead of 1.19-1.20).
const frontPriorityMinPiece = 256 << 10

// wantsPriority reports whether a reader waiting on piece i should ask the
// swarm for it first: always when the reader sought ahead of the download
// (a Range request), and at the download's front (every piece before i
// complete) only for pieces of frontPriorityMinPiece or more.
func (d *blobData) wantsPriority(i int) bool {
	if d.pieceLen >= frontPriorityMinPiece {
		return true
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.blob == nil && slices.Contains(d.complete[:min(i, len(d.complete))], false)
}

// waitPiece blocks until piece i is complete, the data failed, or ctx ends.
func (d *blobData) waitPiece(ctx context.Context, i int) error {
	for {
		d.mu.RLock()
		done, failed, ch := d.complete[i], d.failed, d.changed
		d.mu.RUnlock()
		switch {
		case done:
			return nil
		case failed != nil:
			return failed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// commit switches reads to the committed blob and releases the partial file.
func (d *blobData) commit(b storage.Blob) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.blob = b
	f := d.partial
	d.partial = nil
	d.dropDirect()
	close(d.committedCh)
	close(d.changed)
	d.changed = make(chan struct{})
	if f == nil {
		return nil
	}
	return removePartial(f)
}

// removePartial closes a partial file and removes it from its path, unless
// the path no longer names it: the store adopted it (renamed it away), or a
// later download of the same blob has created its own file there.
func removePartial(f *os.File) error {
	name := f.Name()
	mine, err := f.Stat()
	if err == nil {
		var there os.FileInfo
		there, err = os.Stat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			err = nil
		case err == nil && os.SameFile(mine, there):
			err = os.Remove(name)
		}
	}
	return errors.Join(f.Close(), err)
}

// partialName is the partial file's path ("" once committed or failed).
func (d *blobData) partialName() string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.partial == nil {
		return ""
	}
	return d.partial.Name()
}

// startWriteback asks the kernel to start writing bytes [off, off+n) of
// the partial file to disk.
func (d *blobData) startWriteback(off, n int64) {
	d.mu.RLock()
	f := d.partial
	d.mu.RUnlock()
	if f != nil {
		// Outside the lock: it may wait for the disk's queue. A file closed
		// meanwhile makes it a no-op.
		writeback.Start(f, off, n)
	}
}

// fail abandons the data: readers get err, the partial file is removed,
// the committed blob (if any) closed.
func (d *blobData) fail(err error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed == nil {
		d.failed = err
	}
	if d.blob != nil {
		d.blob.Close()
		d.blob = nil
	}
	f := d.partial
	d.partial = nil
	d.dropDirect()
	close(d.changed)
	d.changed = make(chan struct{})
	if f == nil {
		return nil
	}
	return removePartial(f)
}

// dropDirect closes the file that writes past the page cache and drops
// the pieces kept in memory; d.mu is held.
func (d *blobData) dropDirect() {
	if d.direct != nil {
		d.direct.Close()
		d.direct = nil
	}
	d.recent.reset()
	d.hashBuf = nil
}

// close releases the committed blob handle.
func (d *blobData) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	if d.blob != nil {
		err = d.blob.Close()
		d.blob = nil
	}
	if d.failed == nil {
		d.failed = errDataClosed
	}
	if d.partial != nil {
		err = errors.Join(err, removePartial(d.partial))
		d.partial = nil
	}
	d.dropDirect()
	close(d.changed)
	d.changed = make(chan struct{})
	return err
}

// copyPiece writes piece i's bytes to w.
func (d *blobData) copyPiece(w io.Writer, i int) error {
	off := int64(i) * d.pieceLen
	n := min(d.pieceLen, d.size-off)
	_, err := io.Copy(w, io.NewSectionReader(d, off, n))
	if err != nil {
		return fmt.Errorf("copy piece %d: %w", i, err)
	}
	return nil
}

// OpenTorrent makes blobData an anacrolix storage.ClientImpl for its one torrent.
func (d *blobData) OpenTorrent(context.Context, *metainfo.Info, metainfo.Hash) (tstorage.TorrentImpl, error) {
	return tstorage.TorrentImpl{
		Piece: func(p metainfo.Piece) tstorage.PieceImpl { return pieceData{d: d, p: p} },
		Close: func() error { return nil },
	}, nil
}

// pieceData is one piece's view of a blobData.
type pieceData struct {
	d *blobData
	p metainfo.Piece
}

func (p pieceData) ReadAt(b []byte, off int64) (int, error) {
	return p.d.ReadAt(b, p.p.Offset()+off)
}

// WriteAt drops writes to a piece that is complete: its bytes were hashed
// (and may already be the store's blob, see Engine.adopt). anacrolix does
// not write complete pieces, but a late chunk from a slow peer may still
// arrive after the blob was committed; this drops it whatever it does. It
// also drops chunks for a piece a direct transfer is writing
// (writeVerified marks it under the write lock before it writes), so a
// chunk is never written into a piece that was verified.
func (p pieceData) WriteAt(b []byte, off int64) (int, error) {
	d := p.d
	d.mu.RLock()
	defer d.mu.RUnlock()
	switch {
	case d.complete[p.p.Index()] || d.writing[p.p.Index()] || d.blob != nil:
		return len(b), nil
	case d.partial != nil:
		return d.partial.WriteAt(b, p.p.Offset()+off)
	default:
		return 0, errDataClosed
	}
}

func (p pieceData) MarkComplete() error {
	p.d.setComplete(p.p.Index(), true)
	return nil
}

func (p pieceData) MarkNotComplete() error {
	p.d.setComplete(p.p.Index(), false)
	return nil
}

func (p pieceData) Completion() tstorage.Completion {
	return tstorage.Completion{Ok: true, Complete: p.d.isComplete(p.p.Index())}
}
