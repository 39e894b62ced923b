package seeder

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestCopyBoth checks that both writers get every byte, in order, from a
// source that returns uneven reads, and that a failure of either writer
// ends the copy with its error.
func TestCopyBoth(t *testing.T) {
	src := make([]byte, 3*copyBufSize+12345)
	rand.Read(src)
	var first bytes.Buffer
	second := sha256.New()
	n, err := copyBoth(&first, second, iotest.HalfReader(bytes.NewReader(src)))
	if err != nil || n != int64(len(src)) {
		t.Fatalf("copied %d bytes, err %v; want %d", n, err, len(src))
	}
	if !bytes.Equal(first.Bytes(), src) {
		t.Error("the first writer's bytes differ from the source")
	}
	if want := sha256.Sum256(src); !bytes.Equal(second.Sum(nil), want[:]) {
		t.Error("the second writer's bytes differ from the source")
	}

	boom := errors.New("disk full")
	for name, w := range map[string][2]io.Writer{
		"first":  {&failAfter{n: copyBufSize, err: boom}, io.Discard},
		"second": {io.Discard, &failAfter{n: copyBufSize, err: boom}},
	} {
		if _, err := copyBoth(w[0], w[1], iotest.HalfReader(bytes.NewReader(src))); !errors.Is(err, boom) {
			t.Errorf("%s writer failing: copy returned %v, want %v", name, err, boom)
		}
	}

	w := newTwoWriter(io.Discard, io.Discard)
	w.Close()
	if _, err := w.Write([]byte("late")); err == nil {
		t.Error("write after Close succeeded")
	}
}

// failAfter accepts n bytes, then fails every write with err.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, f.err
	}
	f.n -= len(p)
	return len(p), nil
}
