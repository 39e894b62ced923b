package origin

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// RandomReader returns a reader of size pseudo-random bytes determined by
// seed alone: the same seed and size give the same bytes, however they are
// read, and a shorter size gives a prefix. It generates them with PCG as they
// are read (about 2.5 GB/s on one core), so blobs of any size cost no memory.
// The bytes are not cryptographically random. A negative size reads as empty.
func RandomReader(seed uint64, size int64) io.Reader {
	s := seed
	return &randomReader{src: rand.NewPCG(splitmix64(&s), splitmix64(&s)), left: max(size, 0)}
}

// randomReader writes the PCG's 64-bit outputs little-endian, keeping the
// unread rest of a word for the next Read so that the stream does not depend
// on the sizes of the reads.
type randomReader struct {
	src  *rand.PCG
	left int64
	word [8]byte
	rest int // unread bytes at the end of word
}

func (r *randomReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := copy(p, r.word[len(r.word)-r.rest:])
	r.rest -= n
	for q := p[n:]; len(q) >= 8; q = q[8:] {
		binary.LittleEndian.PutUint64(q, r.src.Uint64())
		n += 8
	}
	if n < len(p) {
		binary.LittleEndian.PutUint64(r.word[:], r.src.Uint64())
		c := copy(p[n:], r.word[:])
		r.rest = len(r.word) - c
		n += c
	}
	r.left -= int64(n)
	return n, nil
}

// splitmix64 advances *s and returns its next output; it spreads a small
// seed over many well-mixed bits.
func splitmix64(s *uint64) uint64 {
	*s += 0x9e3779b97f4a7c15
	z := *s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// layerSeed derives the seed of layer i of an image pushed with seed.
func layerSeed(seed int64, i int) uint64 {
	s := uint64(seed) ^ uint64(i+1)*0xd1342543de82ef95
	return splitmix64(&s)
}

const (
	tarBlock   = 512
	tarTrailer = 2 * tarBlock // the end-of-archive marker
	// minTarLayer is the smallest layer that can be a tar holding a file.
	minTarLayer = tarBlock + tarTrailer
)

// tarEpoch is the modification time of the files in generated layers, fixed
// so that layers are reproducible.
var tarEpoch = time.Unix(0, 0).UTC()

// randomLayer returns a reader of exactly size bytes that is an uncompressed
// tar archive holding one regular file, name, of random bytes from seed. The
// archive is followed by fewer than 512 zero bytes when size is not a
// multiple of 512 (tar readers stop at the end-of-archive marker before
// them). A size below 1536 bytes cannot hold a tar; such a layer is plain
// random bytes.
func randomLayer(name string, seed uint64, size int64) (io.Reader, error) {
	if size < minTarLayer {
		return RandomReader(seed, size), nil
	}
	// The file takes whole blocks so that it needs no padding; the
	// header takes one block unless the size needs PAX records.
	n := (size - minTarLayer) &^ (tarBlock - 1)
	for ; n >= 0; n -= tarBlock {
		hdr, err := tarHeader(name, n)
		if err != nil {
			return nil, err
		}
		used := int64(len(hdr)) + n
		if used+tarTrailer <= size {
			return io.MultiReader(
				bytes.NewReader(hdr),
				RandomReader(seed, n),
				io.LimitReader(zeroReader{}, size-used),
			), nil
		}
	}
	return RandomReader(seed, size), nil
}

// tarHeader returns the encoded tar header of a regular file of size bytes.
func tarHeader(name string, size int64) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  tarEpoch,
		Uname:    "root",
		Gname:    "root",
	})
	if err != nil {
		return nil, fmt.Errorf("origin: tar header for %d bytes: %w", size, err)
	}
	// The writer is abandoned before the file's bytes: they are streamed
	// separately.
	return buf.Bytes(), nil
}

// zeroReader reads zero bytes forever.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
