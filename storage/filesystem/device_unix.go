//go:build unix

package filesystem

import (
	"os"
	"syscall"
)

// sameDevice reports whether a and b are on one filesystem.
func sameDevice(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Dev == sb.Dev
}
