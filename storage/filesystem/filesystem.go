// Package filesystem is the default storage.Store: blobs kept as files in a
// directory tree on local disk.
//
// The layout under the root directory is
//
//	blobs/<algorithm>/<first two hex digits>/<hex>   committed blobs
//	tmp/                                             writes in progress
//
// A write streams into a fresh file in tmp/ while it is hashed; Commit checks
// the hash, fsyncs the file and renames it into blobs/, so a blob is either
// absent or complete, even across a crash. tmp/ and blobs/ share one
// filesystem, which is what makes the rename atomic.
//
// Every path the store touches is derived from a digest that passed
// storage.ValidateDigest, and all file access goes through an os.Root, so
// neither a crafted digest nor a stray symbolic link can reach a file
// outside the root.
package filesystem

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/opencontainers/go-digest"
)

const (
	blobsDir = "blobs"
	tmpDir   = "tmp"
	dirPerm  = 0o700
	filePerm = 0o600
)

// Store keeps blobs under one root directory. It is safe for concurrent
// use. A root directory must be used by one Store at a time: New discards
// the writes that were in progress under it.
type Store struct {
	root *os.Root
}

var _ storage.Store = (*Store)(nil)

// New opens (creating if needed) a store rooted at the directory root. It
// removes whatever a previous process left in tmp/, so a write interrupted
// by a crash is never visible and never leaks disk space. The caller must
// Close the store.
func New(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("filesystem: root %q: %w", root, err)
	}
	if err := os.MkdirAll(abs, dirPerm); err != nil {
		return nil, fmt.Errorf("filesystem: create root: %w", err)
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("filesystem: open root: %w", err)
	}
	if err := prepare(r); err != nil {
		r.Close()
		return nil, fmt.Errorf("filesystem: prepare %s: %w", abs, err)
	}
	return &Store{root: r}, nil
}

// prepare creates the layout and clears tmp/ of an earlier run's writes.
func prepare(r *os.Root) error {
	if err := r.MkdirAll(blobsDir, dirPerm); err != nil {
		return err
	}
	if err := r.RemoveAll(tmpDir); err != nil {
		return fmt.Errorf("clear stale writes: %w", err)
	}
	return r.Mkdir(tmpDir, dirPerm)
}

// Close releases the root directory. Blobs that are open stay readable;
// other calls on the store fail afterwards.
func (s *Store) Close() error {
	if err := s.root.Close(); err != nil {
		return fmt.Errorf("filesystem: close: %w", err)
	}
	return nil
}

// Root returns the store's root directory as an absolute path.
func (s *Store) Root() string { return s.root.Name() }

// blobPath returns the path, relative to the root, where the blob dgst is
// kept, or an error wrapping storage.ErrInvalidDigest. It is the only place
// where a digest becomes a path.
func blobPath(dgst digest.Digest) (string, error) {
	if err := storage.ValidateDigest(dgst); err != nil {
		return "", err
	}
	hex := dgst.Encoded()
	return path.Join(blobsDir, string(dgst.Algorithm()), hex[:2], hex), nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, dgst digest.Digest) (storage.Info, error) {
	p, err := s.resolve(ctx, dgst)
	if err != nil {
		return storage.Info{}, fmt.Errorf("filesystem: stat: %w", err)
	}
	fi, err := s.root.Lstat(p)
	if err != nil {
		return storage.Info{}, fmt.Errorf("filesystem: stat %s: %w", dgst, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return storage.Info{}, fmt.Errorf("filesystem: stat %s: not a regular file: %w", dgst, storage.ErrNotFound)
	}
	return storage.Info{Digest: dgst, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Open implements storage.Store. The returned Blob reads from its own file
// descriptor, so it keeps reading the same bytes after Delete.
func (s *Store) Open(ctx context.Context, dgst digest.Digest) (storage.Blob, error) {
	p, err := s.resolve(ctx, dgst)
	if err != nil {
		return nil, fmt.Errorf("filesystem: open: %w", err)
	}
	// Only regular files are blobs, as in Stat and Walk; a symbolic link
	// planted in the tree is not followed.
	if fi, err := s.root.Lstat(p); err != nil {
		return nil, fmt.Errorf("filesystem: open %s: %w", dgst, notFound(err))
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("filesystem: open %s: not a regular file: %w", dgst, storage.ErrNotFound)
	}
	f, err := s.root.Open(p)
	if err != nil {
		return nil, fmt.Errorf("filesystem: open %s: %w", dgst, notFound(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("filesystem: open %s: %w", dgst, err)
	}
	return &blob{f: f, size: fi.Size()}, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, dgst digest.Digest) error {
	p, err := s.resolve(ctx, dgst)
	if err != nil {
		return fmt.Errorf("filesystem: delete: %w", err)
	}
	if err := s.root.Remove(p); err != nil {
		return fmt.Errorf("filesystem: delete %s: %w", dgst, notFound(err))
	}
	return nil
}

// Create implements storage.Store. Each writer streams into its own
// temporary file, so concurrent writers of one digest do not interfere.
func (s *Store) Create(ctx context.Context, dgst digest.Digest) (storage.Writer, error) {
	p, err := s.resolve(ctx, dgst)
	if err != nil {
		return nil, fmt.Errorf("filesystem: create: %w", err)
	}
	v, err := storage.NewVerifier(dgst)
	if err != nil {
		return nil, fmt.Errorf("filesystem: create: %w", err)
	}
	tmp := path.Join(tmpDir, fmt.Sprintf("%s-%s-%s", dgst.Algorithm(), dgst.Encoded()[:12], rand.Text()))
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return nil, fmt.Errorf("filesystem: create %s: %w", dgst, err)
	}
	return storage.NewWriter("filesystem", v, &stage{store: s, dest: p, tmp: tmp, f: f}), nil
}

// Walk implements storage.Store. It lists only files whose name and place
// in the tree form a valid digest, so stray files are never reported.
func (s *Store) Walk(ctx context.Context, fn func(storage.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("filesystem: walk: %w", err)
	}
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		algDir := path.Join(blobsDir, string(alg))
		prefixes, err := s.readDir(algDir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("filesystem: walk: %w", err)
		}
		for _, pe := range prefixes {
			if !pe.IsDir() {
				continue
			}
			dir := path.Join(algDir, pe.Name())
			entries, err := s.readDir(dir)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("filesystem: walk: %w", err)
			}
			for _, e := range entries {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("filesystem: walk: %w", err)
				}
				dgst := digest.NewDigestFromEncoded(alg, e.Name())
				if p, err := blobPath(dgst); err != nil || p != path.Join(dir, e.Name()) || !e.Type().IsRegular() {
					continue
				}
				fi, err := s.root.Lstat(path.Join(dir, e.Name()))
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted while we walked
				}
				if err != nil {
					return fmt.Errorf("filesystem: walk: %w", err)
				}
				if err := fn(storage.Info{Digest: dgst, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// readDir lists a directory under the root.
func (s *Store) readDir(dir string) ([]fs.DirEntry, error) {
	d, err := s.root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

// Pending reports how many in-progress writes hold a temporary file. The
// conformance suite uses it (see storagetest.PendingCounter) to check that
// failed and cancelled writes leave nothing on disk.
func (s *Store) Pending(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("filesystem: pending: %w", err)
	}
	d, err := s.root.Open(tmpDir)
	if err != nil {
		return 0, fmt.Errorf("filesystem: pending: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("filesystem: pending: %w", err)
	}
	return len(names), nil
}

// resolve checks ctx and maps dgst to its blob path.
func (s *Store) resolve(ctx context.Context, dgst digest.Digest) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return blobPath(dgst)
}

// notFound makes a missing file report storage.ErrNotFound while keeping
// the underlying error in the chain.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	}
	return err
}

// blob is a committed blob opened for reading.
type blob struct {
	f    *os.File
	size int64
}

// ReadAt implements io.ReaderAt.
func (b *blob) ReadAt(p []byte, off int64) (int, error) { return b.f.ReadAt(p, off) }

// Close implements io.Closer.
func (b *blob) Close() error { return b.f.Close() }

// Size implements storage.Blob.
func (b *blob) Size() int64 { return b.size }
