// Package writeback asks the kernel to start writing a file's dirty pages
// to disk early, so that an fsync at the end of a large write finds little
// left to do.
package writeback
