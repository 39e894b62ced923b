//go:build !linux

package directio

import (
	"errors"
	"os"
)

// Open fails here: there is no O_DIRECT, and callers write through the
// page cache.
func Open(string) (*os.File, error) {
	return nil, errors.ErrUnsupported
}

// WriteAt writes b at off through f.
func WriteAt(f, _ *os.File, b []byte, off int64) error {
	_, err := f.WriteAt(b, off)
	return err
}
