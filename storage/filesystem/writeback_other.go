//go:build !linux

package filesystem

import "os"

// startWriteback does nothing here: the fsync at commit writes everything.
func startWriteback(*os.File, int64, int64) {}
