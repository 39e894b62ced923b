package directio

import "unsafe"

// Align is the alignment, in bytes, of the offsets, lengths and buffers
// that go past the page cache: a page, which covers the logical block size
// of the usual devices.
const Align = 4096

// Buffer returns a buffer of n bytes whose first byte is Align-aligned.
func Buffer(n int) []byte {
	b := make([]byte, n+Align)
	skip := (Align - int(address(b)%Align)) % Align
	return b[skip:][:n:n]
}

func aligned(b []byte) bool { return address(b)%Align == 0 }

func address(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
