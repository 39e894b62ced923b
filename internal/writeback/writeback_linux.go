//go:build linux

package writeback

import (
	"os"

	"golang.org/x/sys/unix"
)

// Start asks the kernel to start writing bytes [off, off+n) of f
// to disk, without waiting for them.
func Start(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		// Best effort: only a later fsync makes the bytes durable.
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
