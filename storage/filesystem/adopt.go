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

// Adopt implements storage.Adopter. It renames the file into the store's
// temporary directory (which fails with an error wrapping
// storage.ErrCannotAdopt if the file is on another filesystem), fsyncs it
// and installs it as Commit does.
func (s *Store) Adopt(ctx context.Context, file string, v *storage.Verifier) (storage.Info, error) {
	dgst := v.Digest()
	dest, err := s.resolve(ctx, dgst)
	if err != nil {
		return storage.Info{}, fmt.Errorf("filesystem: adopt: %w", err)
	}
	if err := v.Verify(); err != nil {
		return storage.Info{}, fmt.Errorf("filesystem: adopt %s: %w", dgst, err)
	}
	fi, err := os.Lstat(file)
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
	if err := s.syncTmp(tmp); err != nil {
		s.root.Remove(tmp)
		return storage.Info{}, fmt.Errorf("filesystem: adopt %s: %w", dgst, err)
	}
	info, err := s.install(tmp, dest, storage.Info{Digest: dgst, Size: fi.Size(), ModTime: fi.ModTime()})
	if err != nil {
		s.root.Remove(tmp)
		return storage.Info{}, fmt.Errorf("filesystem: adopt %s: %w", dgst, err)
	}
	return info, nil
}

// syncTmp fsyncs the file tmp (relative to the root).
func (s *Store) syncTmp(tmp string) error {
	f, err := s.root.Open(tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// CanAdopt implements storage.Adopter: dir must be on the root's
// filesystem.
func (s *Store) CanAdopt(dir string) bool {
	a, err := os.Stat(dir)
	if err != nil {
		return false
	}
	b, err := os.Stat(s.root.Name())
	if err != nil {
		return false
	}
	return sameDevice(a, b)
}
