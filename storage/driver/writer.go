package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
)

// Create implements storage.Store. Each writer streams into its own upload
// path. The driver's FileWriter is opened by the first non-empty Write, so
// an empty blob costs one small put and no multipart upload.
//
// Like the filesystem store's writers, a writer is not bound to ctx once
// Create returns: its uploads run under a context that keeps ctx's values
// and ends with Commit or Cancel.
func (s *Store) Create(ctx context.Context, dgst digest.Digest) (storage.Writer, error) {
	p, err := resolve(ctx, dgst)
	if err != nil {
		return nil, fmt.Errorf("driver: create: %w", err)
	}
	v, err := storage.NewVerifier(dgst)
	if err != nil {
		return nil, fmt.Errorf("driver: create: %w", err)
	}
	upload := tempPath(uploadsDir, dgst)
	s.mu.Lock()
	s.writers[upload] = struct{}{}
	s.mu.Unlock()
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &writer{store: s, dest: p, upload: upload, v: v, ctx: wctx, cancel: cancel}, nil
}

// writer streams one blob into an upload path, hashing as it goes.
type writer struct {
	store  *Store
	dest   string // blob path
	upload string // upload path
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	v         *storage.Verifier
	fw        storagedriver.FileWriter // nil until the first byte
	committed bool                     // fw committed: the upload is a visible file
	werr      error                    // first write error; Commit fails with it
	done      bool                     // Commit or Cancel has run
	info      storage.Info
	result    error // what Commit returns once done
}

// Write implements io.Writer. After a failed write the writer accepts no
// more bytes, and Commit reports the failure.
func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, fmt.Errorf("driver: write %s: %w", w.v.Digest(), fs.ErrClosed)
	}
	if w.werr != nil {
		return 0, w.werr
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.fw == nil {
		fw, err := w.store.d.Writer(w.ctx, w.upload, false)
		if err != nil {
			w.werr = fmt.Errorf("driver: write %s: open upload: %w", w.v.Digest(), driverErr(err))
			return 0, w.werr
		}
		w.fw = fw
	}
	n, err := w.fw.Write(p)
	w.v.Write(p[:n])
	if err == nil && n < len(p) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(p))
	}
	if err != nil {
		w.werr = fmt.Errorf("driver: write %s: %w", w.v.Digest(), driverErr(err))
		return n, w.werr
	}
	return n, nil
}

// Commit implements storage.Writer. Only the first call does anything;
// later calls return the same result.
func (w *writer) Commit(ctx context.Context) (storage.Info, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.done = true
		w.info, w.result = w.commit(ctx)
		w.finish()
	}
	return w.info, w.result
}

func (w *writer) commit(ctx context.Context) (storage.Info, error) {
	dgst := w.v.Digest()
	fail := func(err error) (storage.Info, error) {
		if derr := w.discard(); derr != nil {
			err = errors.Join(err, derr)
		}
		return storage.Info{}, fmt.Errorf("driver: commit %s: %w", dgst, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if w.werr != nil {
		return fail(w.werr)
	}
	// Verify before anything becomes visible: a mismatch only cancels the
	// upload.
	if err := w.v.Verify(); err != nil {
		return fail(err)
	}
	if w.fw != nil {
		if err := w.fw.Commit(ctx); err != nil {
			return fail(fmt.Errorf("commit upload: %w", driverErr(err)))
		}
		w.committed = true
		if err := w.fw.Close(); err != nil {
			return fail(fmt.Errorf("close upload: %w", driverErr(err)))
		}
	}

	d := w.store.d
	if info, err := w.store.stat(ctx, dgst, w.dest); err == nil {
		// Already stored: the bytes are the same, keep the existing copy
		// (readers may have it open) and drop ours.
		if err := w.discard(); err != nil {
			return storage.Info{}, fmt.Errorf("driver: commit %s: %w", dgst, err)
		}
		return info, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fail(err)
	}
	if w.fw == nil {
		// Nothing was written and the digest is that of no bytes.
		if err := d.PutContent(ctx, w.dest, nil); err != nil {
			return fail(fmt.Errorf("store empty blob: %w", driverErr(err)))
		}
	} else if err := d.Move(ctx, w.upload, w.dest); err != nil {
		return fail(fmt.Errorf("move upload into place: %w", driverErr(err)))
	}
	w.fw, w.committed = nil, false // the upload is gone
	info, err := w.store.stat(ctx, dgst, w.dest)
	if err != nil {
		return storage.Info{}, fmt.Errorf("driver: commit %s: stat after move: %w", dgst, err)
	}
	return info, nil
}

// Cancel implements storage.Writer.
func (w *writer) Cancel() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	w.result = fmt.Errorf("driver: commit %s after cancel: %w", w.v.Digest(), fs.ErrClosed)
	err := w.discard()
	w.finish()
	if err != nil {
		return fmt.Errorf("driver: cancel %s: %w", w.v.Digest(), err)
	}
	return nil
}

// discard removes whatever the upload left in the driver. An uncommitted
// FileWriter is cancelled (not closed: the filesystem driver refuses Close
// after Cancel, and s3's Close would flush to the aborted upload); a
// committed upload is deleted.
func (w *writer) discard() error {
	if w.fw == nil {
		return nil
	}
	ctx, cancel := cleanupContext(w.ctx)
	defer cancel()
	var err error
	if w.committed {
		err = w.store.d.Delete(ctx, w.upload)
	} else {
		err = w.fw.Cancel(ctx)
	}
	w.fw, w.committed = nil, false
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("discard upload %s: %w", w.upload, driverErr(err))
	}
	return nil
}

// finish releases the writer's context and its place among live writers.
func (w *writer) finish() {
	w.cancel()
	w.store.mu.Lock()
	delete(w.store.writers, w.upload)
	w.store.mu.Unlock()
}
