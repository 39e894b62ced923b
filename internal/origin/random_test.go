package origin

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestRandomReaderDeterministic(t *testing.T) {
	const size = 1*mib + 333
	want, err := io.ReadAll(RandomReader(7, size))
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != size {
		t.Fatalf("read %d bytes, want %d", len(want), size)
	}
	// The bytes do not depend on how they are read.
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"one byte at a time", iotest.OneByteReader(RandomReader(7, size))},
		{"half reads", iotest.HalfReader(RandomReader(7, size))},
		{"odd buffer", bufferedBy(RandomReader(7, size), 4093)},
	} {
		got, err := io.ReadAll(tc.r)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: bytes differ", tc.name)
		}
	}
	// A shorter read of the same seed is a prefix.
	prefix, _ := io.ReadAll(RandomReader(7, 1000))
	if !bytes.Equal(prefix, want[:1000]) {
		t.Errorf("RandomReader(7, 1000) is not a prefix of RandomReader(7, %d)", size)
	}
	// Other seeds give other bytes, close seeds included.
	for _, seed := range []uint64{0, 6, 8, 7 << 32} {
		other, _ := io.ReadAll(RandomReader(seed, 1000))
		if bytes.Equal(other, want[:1000]) {
			t.Errorf("seeds 7 and %d give the same bytes", seed)
		}
	}
	// The bytes look random: every byte value occurs about equally often.
	var hist [256]int
	for _, b := range want {
		hist[b]++
	}
	for v, n := range hist {
		if exp := size / 256; n < exp*8/10 || n > exp*12/10 {
			t.Errorf("byte %#x occurs %d times, expected about %d", v, n, exp)
		}
	}
	if err := iotest.TestReader(RandomReader(3, 10000), mustReadAll(t, RandomReader(3, 10000))); err != nil {
		t.Errorf("iotest.TestReader: %v", err)
	}
	for _, size := range []int64{0, -5} {
		if b, err := io.ReadAll(RandomReader(1, size)); len(b) != 0 || err != nil {
			t.Errorf("RandomReader(1, %d): %d bytes, %v", size, len(b), err)
		}
	}
}

func mustReadAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bufferedBy reads r in chunks of at most n bytes.
func bufferedBy(r io.Reader, n int) io.Reader {
	return &cappedReader{r: r, n: n}
}

type cappedReader struct {
	r io.Reader
	n int
}

func (c *cappedReader) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.n)])
}

// FuzzRandomLayer checks that a generated layer has exactly the size asked
// for and, when large enough, is a tar of one file that a tar reader reads
// to its end.
func FuzzRandomLayer(f *testing.F) {
	for _, size := range []int64{0, 1, 511, 512, minTarLayer - 1, minTarLayer, minTarLayer + 1, 2048, 4095, 4096, 100000} {
		f.Add(size, uint64(size))
	}
	f.Fuzz(func(t *testing.T, size int64, seed uint64) {
		if size < 0 || size > 1<<20 {
			return
		}
		r, err := randomLayer("eagle-layer-0.bin", seed, size)
		if err != nil {
			t.Fatal(err)
		}
		blob, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(blob)) != size {
			t.Fatalf("layer of %d bytes has %d", size, len(blob))
		}
		if size < minTarLayer {
			if !bytes.Equal(blob, mustReadAll(t, RandomReader(seed, size))) {
				t.Fatalf("small layer is not RandomReader's bytes")
			}
			return
		}
		tr := tar.NewReader(bytes.NewReader(blob))
		hdr, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		// The file takes all but less than a block of the room left
		// by the header and the end-of-archive marker.
		if room := size - tarBlock - tarTrailer; hdr.Name != "eagle-layer-0.bin" || hdr.Size > room || room-hdr.Size >= tarBlock {
			t.Fatalf("entry %q of %d bytes in a layer of %d", hdr.Name, hdr.Size, size)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(content, mustReadAll(t, RandomReader(seed, hdr.Size))) {
			t.Fatal("file content is not RandomReader's bytes")
		}
		if _, err := tr.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the file: %v", err)
		}
	})
}

// TestLargeLayerHeader checks the size arithmetic for files too large for a
// plain ustar header, without generating them.
func TestLargeLayerHeader(t *testing.T) {
	for _, size := range []int64{8 << 30, 9<<30 + 1234, 1 << 40} {
		r, err := randomLayer("eagle-layer-0.bin", 1, size)
		if err != nil {
			t.Fatal(err)
		}
		// The header comes first; parse it from the first blocks.
		head := make([]byte, 4*tarBlock)
		if _, err := io.ReadFull(r, head); err != nil {
			t.Fatal(err)
		}
		hdr, err := tar.NewReader(bytes.NewReader(head)).Next()
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		hdrLen, err := tarHeader("eagle-layer-0.bin", hdr.Size)
		if err != nil {
			t.Fatal(err)
		}
		if used := int64(len(hdrLen)) + hdr.Size + tarTrailer; used > size || size-used >= tarBlock {
			t.Errorf("size %d: header %d + file %d + trailer leaves %d bytes", size, len(hdrLen), hdr.Size, size-used)
		}
	}
}

func BenchmarkRandomReader(b *testing.B) {
	buf := make([]byte, 256*kib)
	b.SetBytes(int64(len(buf)))
	r := RandomReader(1, 1<<62)
	for b.Loop() {
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatal(err)
		}
	}
}
