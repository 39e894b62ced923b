package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"
)

// blob is a committed blob opened for reading. It keeps up to
// Store.streams idle driver streams, each positioned where a read ended,
// so sequential ReadAt calls (a piece read block after block, a proxy
// copying the blob) reuse one stream instead of opening one per call.
type blob struct {
	store *Store
	e     *entry
	size  int64
	// ctx outlives Open's context (a Blob may be seeded for hours) and is
	// cancelled by Close, which aborts reads in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	file   *os.File  // the filesystem driver's stream: ReadAt goes to it directly
	idle   []*stream // least recently used first
}

// stream is a driver reader and the blob offset it will read next.
type stream struct {
	rc  io.ReadCloser
	off int64
}

func (s *Store) newBlob(ctx context.Context, e *entry, size int64) *blob {
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &blob{store: s, e: e, size: size, ctx: bctx, cancel: cancel}
}

// Size implements storage.Blob.
func (b *blob) Size() int64 { return b.size }

// ReadAt implements io.ReaderAt. It is safe for concurrent use; parallel
// calls use different streams.
func (b *blob) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("driver: read %s at %d: negative offset", b.e.dgst, off)
	}
	b.mu.Lock()
	closed, f := b.closed, b.file
	b.mu.Unlock()
	if closed {
		return 0, fmt.Errorf("driver: read %s: %w", b.e.dgst, fs.ErrClosed)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), b.size-off)
	var n int
	var err error
	if f != nil {
		n, err = f.ReadAt(p[:want], off)
	} else {
		n, err = b.readStream(p[:want], off)
	}
	if err == nil && int(want) < len(p) {
		err = io.EOF
	}
	return n, err
}

// readStream fills p from a stream at off: an idle one at (or a little
// before) off if there is one, else a new one. A reused stream that fails
// (an object store may have dropped an idle connection) is replaced once.
func (b *blob) readStream(p []byte, off int64) (int, error) {
	if st := b.take(off); st != nil {
		if err := st.readAt(p, off); err == nil {
			b.put(st)
			return len(p), nil
		}
		st.rc.Close()
	}
	st, err := b.openStream(off)
	if err != nil {
		return 0, err
	}
	if err := st.readAt(p, off); err != nil {
		st.rc.Close()
		return 0, fmt.Errorf("driver: read %s at %d: %w", b.e.dgst, off, err)
	}
	b.put(st)
	return len(p), nil
}

// readAt moves st forward to off and fills p.
func (st *stream) readAt(p []byte, off int64) error {
	if gap := off - st.off; gap > 0 {
		if _, err := io.CopyN(io.Discard, st.rc, gap); err != nil {
			return err
		}
		st.off = off
	}
	n, err := io.ReadFull(st.rc, p)
	st.off += int64(n)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // the blob is longer than what the stream gave
	}
	return err
}

// take removes and returns the idle stream that can serve a read at off
// most cheaply, or nil if none is within skipLimit before off.
func (b *blob) take(off int64) *stream {
	b.mu.Lock()
	defer b.mu.Unlock()
	best := -1
	for i, st := range b.idle {
		if st.off <= off && off-st.off <= skipLimit && (best < 0 || st.off > b.idle[best].off) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	st := b.idle[best]
	b.idle = slices.Delete(b.idle, best, best+1)
	return st
}

// put returns st to the idle streams, closing it instead if it is at the
// end of the blob or the blob is closed, and closing the least recently
// used stream if there are too many.
func (b *blob) put(st *stream) {
	b.mu.Lock()
	var drop []*stream
	if b.closed || st.off >= b.size {
		drop = append(drop, st)
	} else {
		b.idle = append(b.idle, st)
		if extra := len(b.idle) - b.store.streams; extra > 0 {
			drop = append(drop, b.idle[:extra]...)
			b.idle = slices.Delete(b.idle, 0, extra)
		}
	}
	b.mu.Unlock()
	for _, st := range drop {
		st.rc.Close()
	}
}

// openStream opens a driver stream at off. The entry's read lock keeps a
// concurrent Delete from moving the bytes while the stream opens. The
// first stream that is an *os.File becomes the blob's file.
func (b *blob) openStream(off int64) (*stream, error) {
	b.e.mu.RLock()
	b.store.mu.Lock()
	p := b.e.path
	b.store.mu.Unlock()
	rc, err := b.store.d.Reader(b.ctx, p, off)
	b.e.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("driver: read %s at %d: %w", b.e.dgst, off, driverErr(err))
	}
	return &stream{rc: rc, off: off}, nil
}

// useFile opens the blob's bytes as a file if the driver's streams are
// files. It is called once, by Open.
func (b *blob) useFile() error {
	st, err := b.openStream(0)
	if err != nil {
		return err
	}
	if f, ok := st.rc.(*os.File); ok {
		b.file = f
		return nil
	}
	// Not a file: keep it as the first stream; most readers start at 0.
	b.put(st)
	return nil
}

// Close implements io.Closer. It aborts reads in flight, closes the
// streams, and removes the blob's trashed copy if it was deleted while
// open and this was its last reader.
func (b *blob) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("driver: close %s: %w", b.e.dgst, fs.ErrClosed)
	}
	b.closed = true
	idle, f := b.idle, b.file
	b.idle, b.file = nil, nil
	b.mu.Unlock()

	b.cancel()
	var errs []error
	for _, st := range idle {
		errs = append(errs, st.rc.Close())
	}
	if f != nil {
		errs = append(errs, f.Close())
	}
	b.store.mu.Lock()
	b.e.open--
	b.store.mu.Unlock()
	errs = append(errs, b.store.release(b.ctx, b.e))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("driver: close %s: %w", b.e.dgst, err)
	}
	return nil
}
