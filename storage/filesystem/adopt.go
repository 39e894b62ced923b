package filesystem

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"syscall"

	"github.com/eagle-p2p/eagle/storage"
)

var _ storage.Adopter = (*Store)(nil)

// Adopt implements storage.Adopter. It fsyncs the file, renames it into
// the store's temporary directory (which fails with an error wrapping
// storage.ErrCannotAdopt if file is on another filesystem) and installs
// it as Commit does.
func (s *Store) Adopt(ctx context.Context, file string, v *storage.Verifier) (storage.Info, error) {
	dgst := v.Digest()
	dest, err := s.resolve(ctx, dgst)
	if err != nil {
		return storage.Info{}, fmt.Errorf("filesystem: adopt: %w", err)
	}
	if err := v.Verify(); err != nil {
		return storage.Info{}, fmt.Errorf("filesystem: adopt %s: %w", dgst, err)
	}
	fi, err := syncFile(file)
	if err != nil {
		return storage.Info{}, fmt.Errorf("filesystem: adopt %s: %w", dgst, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != v.Size() {
		return storage.Info{}, fmt.Errorf("filesystem: adopt %s: %s is not a regular file of the %d verified bytes", dgst, file, v.Size())
	}
	tmp := path.Join(tmpDir, fmt.Sprintf("%s-%s-%s", dgst.Algorithm(), dgst.Encoded()[:12], rand.Text()))
	if err := os.Rename(file, filepath.Join(s.root.Name(), filepath.FromSlash(tmp))); err != nil {
		if errors.Is(err, syscall.EXDEV) {
			return storage.Info{}, fmt.Errorf("filesystem: adopt %s: %w: %w", dgst, storage.ErrCannotAdopt, err)
		}
		return storage.Info{}, fmt.Errorf("filesystem: adopt %s: %w", dgst, err)
	}
	info, err := s.install(tmp, dest, storage.Info{Digest: dgst, Size: fi.Size(), ModTime: fi.ModTime()})
	if err != nil {
		s.root.Remove(tmp)
		return storage.Info{}, fmt.Errorf("filesystem: adopt %s: %w", dgst, err)
	}
	return info, nil
}

// syncFile fsyncs the file at name and returns its FileInfo.
func syncFile(name string) (os.FileInfo, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return fi, nil
}
