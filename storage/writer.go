package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
)

// Stage is the temporary home of a blob being written through a Writer
// made by NewWriter: a temporary file, an upload, a buffer. The Writer
// calls its methods one at a time, never after the write has ended.
type Stage interface {
	// Write stores p after the bytes written before. An error (or a short
	// write) ends the writing: the Writer reports it from every later
	// Write and from Commit.
	io.Writer
	// Publish makes the staged bytes the committed blob. It is called at
	// most once, by Commit, and only after the bytes have hashed to the
	// digest: info has that Digest and Size. It returns the stored blob's
	// Info (info with the ModTime set, or the Info of a copy that was
	// already stored). If it fails, Discard is called next.
	Publish(ctx context.Context, info Info) (Info, error)
	// Discard removes whatever was staged. It is called at most once,
	// when the write ends without a successful Publish: by Cancel, or by
	// a Commit that failed.
	Discard() error
}

// NewWriter returns a Writer that streams into st while v hashes the
// bytes, so that a backend writes only its Stage and gets the rest of the
// Writer contract from here: Commit verifies the digest and size before
// calling Publish, only the first Commit or Cancel acts (later calls
// return the first result, and Cancel after Commit does nothing), the
// first write error sticks, a failed Commit discards, and Write after the
// end fails with fs.ErrClosed. Errors begin with name, the backend's
// name. The Writer is safe for concurrent use.
func NewWriter(name string, v *Verifier, st Stage) Writer {
	return &writer{name: name, v: v, st: st}
}

// writer is the Writer that NewWriter returns.
type writer struct {
	name string
	v    *Verifier
	st   Stage

	mu     sync.Mutex
	werr   error // first write error; Commit fails with it
	done   bool  // Commit or Cancel has run
	info   Info
	result error // what Commit returns once done
}

// Write implements io.Writer. After a failed write the writer accepts no
// more bytes, and Commit reports the failure.
func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, fmt.Errorf("%s: write %s: %w", w.name, w.v.Digest(), fs.ErrClosed)
	}
	if w.werr != nil {
		return 0, w.werr
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := w.st.Write(p)
	w.v.Write(p[:n])
	if err == nil && n < len(p) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(p))
	}
	if err != nil {
		w.werr = fmt.Errorf("%s: write %s: %w", w.name, w.v.Digest(), err)
		return n, w.werr
	}
	return n, nil
}

// Commit implements Writer. Only the first call does anything; later
// calls return the same result.
func (w *writer) Commit(ctx context.Context) (Info, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.done = true
		w.info, w.result = w.commit(ctx)
		if w.result != nil {
			w.result = fmt.Errorf("%s: commit %s: %w", w.name, w.v.Digest(), w.result)
		}
	}
	return w.info, w.result
}

// commit verifies the bytes, before anything becomes visible, and
// publishes them; on any failure it discards the stage.
func (w *writer) commit(ctx context.Context) (Info, error) {
	err := ctx.Err()
	if err == nil {
		err = w.werr
	}
	if err == nil {
		err = w.v.Verify()
	}
	if err == nil {
		var info Info
		if info, err = w.st.Publish(ctx, Info{Digest: w.v.Digest(), Size: w.v.Size()}); err == nil {
			return info, nil
		}
	}
	if derr := w.st.Discard(); derr != nil {
		err = errors.Join(err, derr)
	}
	return Info{}, err
}

// Cancel implements Writer.
func (w *writer) Cancel() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	w.result = fmt.Errorf("%s: commit %s after cancel: %w", w.name, w.v.Digest(), fs.ErrClosed)
	if err := w.st.Discard(); err != nil {
		return fmt.Errorf("%s: cancel %s: %w", w.name, w.v.Digest(), err)
	}
	return nil
}
