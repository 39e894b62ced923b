//go:build linux

package directio

import (
	"errors"
	"os"
	"syscall"
)

// Open opens name for writing past the page cache. It fails where the file
// system refuses O_DIRECT (tmpfs, for one); callers then write through the
// page cache.
func Open(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_WRONLY|syscall.O_DIRECT, 0)
}

// WriteAt writes b at off in the file that f and direct (from Open) both
// name: the whole blocks at the front of b through direct when b and off
// are aligned, the rest, or all of it otherwise, through f. direct may be
// nil.
func WriteAt(f, direct *os.File, b []byte, off int64) error {
	if n := len(b) &^ (Align - 1); direct != nil && n > 0 && off%Align == 0 && aligned(b) {
		_, err := direct.WriteAt(b[:n], off)
		switch {
		case errors.Is(err, syscall.EINVAL):
			// The device wants a larger alignment than Align: the page
			// cache writes it.
		case err != nil:
			return err
		default:
			b, off = b[n:], off+int64(n)
		}
	}
	if len(b) == 0 {
		return nil
	}
	_, err := f.WriteAt(b, off)
	return err
}
