package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sync"

	"github.com/eagle-p2p/eagle/internal/writeback"
	"github.com/eagle-p2p/eagle/storage"
)

// writer streams one blob into a temporary file, hashing as it goes.
type writer struct {
	store *Store
	dest  string // blob path, relative to the root
	tmp   string // temporary file, relative to the root

	mu   sync.Mutex
	f    *os.File // nil once closed
	v    *storage.Verifier
	werr error // first write error; Commit fails with it
	// written counts the bytes written; those before flushed were handed
	// to the kernel's writeback (see writebackEvery).
	written, flushed int64
	done             bool // Commit or Cancel has run
	info             storage.Info
	result           error // what Commit returns once done
}

// Write implements io.Writer. After a failed write the writer accepts no
// more bytes, and Commit reports the failure.
func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, fmt.Errorf("filesystem: write %s: %w", w.v.Digest(), fs.ErrClosed)
	}
	if w.werr != nil {
		return 0, w.werr
	}
	n, err := w.f.Write(p)
	w.v.Write(p[:n])
	w.written += int64(n)
	if err != nil {
		w.werr = fmt.Errorf("filesystem: write %s: %w", w.v.Digest(), err)
		return n, w.werr
	}
	if w.written-w.flushed >= writebackEvery {
		writeback.Start(w.f, w.flushed, w.written-w.flushed)
		w.flushed = w.written
	}
	return n, nil
}

// writebackEvery is how many written bytes the writer lets pile up before
// it asks the kernel to start writing them to disk. Left alone, the kernel
// may keep a whole large blob dirty in memory until the fsync at commit,
// which then waits for all of it: 0.2-0.3 s for 1 GiB here, on the path
// of a cold pull twice (the seeder's commit, then the agent's).
const writebackEvery = 8 << 20

// Commit implements storage.Writer. Only the first call does anything;
// later calls return the same result.
func (w *writer) Commit(ctx context.Context) (storage.Info, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.done = true
		w.info, w.result = w.commit(ctx)
	}
	return w.info, w.result
}

func (w *writer) commit(ctx context.Context) (storage.Info, error) {
	dgst := w.v.Digest()
	fail := func(err error) (storage.Info, error) {
		if derr := w.discard(); derr != nil {
			err = errors.Join(err, derr)
		}
		return storage.Info{}, fmt.Errorf("filesystem: commit %s: %w", dgst, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if w.werr != nil {
		return fail(w.werr)
	}
	if err := w.v.Verify(); err != nil {
		return fail(err)
	}
	if err := w.f.Sync(); err != nil {
		return fail(err)
	}
	// The rename keeps the modification time, so this is the blob's.
	fi, err := w.f.Stat()
	if err != nil {
		return fail(err)
	}
	err = w.f.Close()
	w.f = nil
	if err != nil {
		return fail(err)
	}

	info, err := w.store.install(w.tmp, w.dest, storage.Info{Digest: dgst, Size: w.v.Size(), ModTime: fi.ModTime()})
	if err != nil {
		return fail(err)
	}
	return info, nil
}

// install moves tmp, a verified and fsynced file under the root, to dest,
// and returns the stored blob's Info (info, or the Info of a copy already
// there, in which case tmp is removed).
func (s *Store) install(tmp, dest string, info storage.Info) (storage.Info, error) {
	root := s.root
	if old, err := root.Lstat(dest); err == nil && old.Mode().IsRegular() {
		// Already stored: the bytes are the same, keep the existing copy
		// (readers may have it open) and drop ours.
		if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return storage.Info{}, err
		}
		return storage.Info{Digest: info.Digest, Size: old.Size(), ModTime: old.ModTime()}, nil
	}
	dir := path.Dir(dest)
	if err := root.MkdirAll(dir, dirPerm); err != nil {
		return storage.Info{}, err
	}
	if err := root.Rename(tmp, dest); err != nil {
		return storage.Info{}, err
	}
	// Best effort: the file's bytes are already on disk, so if the rename
	// itself is lost to a power cut the blob is merely absent, never partial.
	syncDir(root, dir)
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
	w.result = fmt.Errorf("filesystem: commit %s after cancel: %w", w.v.Digest(), fs.ErrClosed)
	if err := w.discard(); err != nil {
		return fmt.Errorf("filesystem: cancel %s: %w", w.v.Digest(), err)
	}
	return nil
}

// discard closes and removes the temporary file.
func (w *writer) discard() error {
	var errs []error
	if w.f != nil {
		errs = append(errs, w.f.Close())
		w.f = nil
	}
	if err := w.store.root.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// syncDir fsyncs a directory so that a rename into it survives a crash.
func syncDir(root *os.Root, dir string) {
	d, err := root.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
