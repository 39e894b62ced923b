package driver

import (
	"context"
	"errors"
	"fmt"

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
	return storage.NewWriter("driver", v, &stage{store: s, dest: p, upload: upload, ctx: wctx, cancel: cancel}), nil
}

// stage is one blob being written to an upload path, which Publish moves
// to the blob path (see storage.NewWriter).
type stage struct {
	store  *Store
	dest   string // blob path
	upload string // upload path
	ctx    context.Context
	cancel context.CancelFunc

	fw        storagedriver.FileWriter // nil until the first byte
	committed bool                     // fw committed: the upload is a visible file
}

// Write implements storage.Stage.
func (st *stage) Write(p []byte) (int, error) {
	if st.fw == nil {
		fw, err := st.store.d.Writer(st.ctx, st.upload, false)
		if err != nil {
			return 0, fmt.Errorf("open upload: %w", driverErr(err))
		}
		st.fw = fw
	}
	n, err := st.fw.Write(p)
	return n, driverErr(err)
}

// Publish implements storage.Stage: it commits the upload and moves it to
// the blob path, or stores an empty blob if nothing was written.
func (st *stage) Publish(ctx context.Context, info storage.Info) (storage.Info, error) {
	if st.fw != nil {
		if err := st.fw.Commit(ctx); err != nil {
			return storage.Info{}, fmt.Errorf("commit upload: %w", driverErr(err))
		}
		st.committed = true
		if err := st.fw.Close(); err != nil {
			return storage.Info{}, fmt.Errorf("close upload: %w", driverErr(err))
		}
	}

	d, dgst := st.store.d, info.Digest
	if old, err := st.store.stat(ctx, dgst, st.dest); err == nil {
		// Already stored: the bytes are the same, keep the existing copy
		// (readers may have it open) and drop ours.
		if err := st.discard(); err != nil {
			return storage.Info{}, err
		}
		st.finish()
		return old, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return storage.Info{}, err
	}
	if st.fw == nil {
		// Nothing was written and the digest is that of no bytes.
		if err := d.PutContent(ctx, st.dest, nil); err != nil {
			return storage.Info{}, fmt.Errorf("store empty blob: %w", driverErr(err))
		}
	} else if err := d.Move(ctx, st.upload, st.dest); err != nil {
		return storage.Info{}, fmt.Errorf("move upload into place: %w", driverErr(err))
	}
	st.fw, st.committed = nil, false // the upload is gone
	info, err := st.store.stat(ctx, dgst, st.dest)
	if err != nil {
		return storage.Info{}, fmt.Errorf("stat after move: %w", err)
	}
	st.finish()
	return info, nil
}

// Discard implements storage.Stage.
func (st *stage) Discard() error {
	err := st.discard()
	st.finish()
	return err
}

// discard removes whatever the upload left in the driver. An uncommitted
// FileWriter is cancelled (not closed: the filesystem driver refuses Close
// after Cancel, and s3's Close would flush to the aborted upload); a
// committed upload is deleted.
func (st *stage) discard() error {
	if st.fw == nil {
		return nil
	}
	ctx, cancel := cleanupContext(st.ctx)
	defer cancel()
	var err error
	if st.committed {
		err = st.store.d.Delete(ctx, st.upload)
	} else {
		err = st.fw.Cancel(ctx)
	}
	st.fw, st.committed = nil, false
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("discard upload %s: %w", st.upload, driverErr(err))
	}
	return nil
}

// finish releases the stage's context and its place among live writers.
func (st *stage) finish() {
	st.cancel()
	st.store.mu.Lock()
	delete(st.store.writers, st.upload)
	st.store.mu.Unlock()
}
