package directio_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/eagle-p2p/eagle/internal/directio"
)

func TestBufferAligned(t *testing.T) {
	for _, n := range []int{1, directio.Align - 1, directio.Align, 3*directio.Align + 17, 4 << 20} {
		b := directio.Buffer(n)
		if len(b) != n || cap(b) != n {
			t.Errorf("Buffer(%d): len %d cap %d", n, len(b), cap(b))
		}
		if a := directio.Address(b) % directio.Align; a != 0 {
			t.Errorf("Buffer(%d) is %d bytes past an aligned address", n, a)
		}
	}
}

// TestWriteAt writes aligned and unaligned buffers at aligned and
// unaligned offsets, with and without the direct file, over bytes already
// in the file, and checks the file holds exactly what was written.
func TestWriteAt(t *testing.T) {
	const size = 64 * directio.Align
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(b []byte) []byte {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for _, tc := range []struct {
		name     string
		off, n   int
		buffer   func(n int) []byte
		noDirect bool
	}{
		{"aligned", 4 * directio.Align, 8 * directio.Align, directio.Buffer, false},
		{"aligned with a tail", 2 * directio.Align, 5*directio.Align + 123, directio.Buffer, false},
		{"shorter than a block", 0, 100, directio.Buffer, false},
		{"unaligned offset", directio.Align + 1, 3 * directio.Align, directio.Buffer, false},
		{"unaligned buffer", 0, 3 * directio.Align, func(n int) []byte { return directio.Buffer(n + 1)[1:] }, false},
		{"last block of the file", size - directio.Align + 7, directio.Align - 7, directio.Buffer, false},
		{"without the direct file", 4 * directio.Align, 8*directio.Align + 5, directio.Buffer, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "f")
			want := random(make([]byte, size))
			if err := os.WriteFile(name, want, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(name, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var direct *os.File
			if !tc.noDirect {
				if direct, err = directio.Open(name); err != nil {
					t.Logf("no O_DIRECT here (%v): the page cache writes it all", err)
					direct = nil
				} else {
					defer direct.Close()
				}
			}
			b := random(tc.buffer(tc.n))
			if err := directio.WriteAt(f, direct, b, int64(tc.off)); err != nil {
				t.Fatal(err)
			}
			copy(want[tc.off:], b)
			got, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("the file does not hold the bytes written")
			}
		})
	}
}

// TestWriteAtClosed returns the write's error.
func TestWriteAtClosed(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := directio.WriteAt(f, nil, directio.Buffer(directio.Align), 0); err == nil {
		t.Fatal("WriteAt to a closed file: no error")
	}
}
