package seeder

import (
	"fmt"
	"io"
)

// copyBufSize is the buffer a blob streams through on its way from the
// origin (or the store) into the store and the piece hasher: large enough
// that handing each buffer to the second goroutine costs nothing next to
// hashing it.
const copyBufSize = 256 << 10

// twoWriter writes every buffer to two writers at once, the second on a
// goroutine of its own: a blob's bytes are hashed for its digest (by the
// store's writer) and for its torrent pieces on two cores instead of one,
// which is most of a large blob's cold start. Close stops the goroutine.
type twoWriter struct {
	first, second io.Writer
	in            chan []byte
	out           chan error
	closed        bool
}

func newTwoWriter(first, second io.Writer) *twoWriter {
	w := &twoWriter{first: first, second: second, in: make(chan []byte), out: make(chan error, 1)}
	go func() {
		for p := range w.in {
			n, err := w.second.Write(p)
			if err == nil && n < len(p) {
				err = io.ErrShortWrite
			}
			w.out <- err
		}
	}()
	return w
}

// Write writes p to both writers and returns when both are done with it. p
// is not retained.
func (w *twoWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("seeder: write after close: %w", io.ErrClosedPipe)
	}
	w.in <- p
	n, err := w.first.Write(p)
	if err2 := <-w.out; err == nil && err2 != nil {
		return n, err2
	}
	return n, err
}

// Close stops the second writer's goroutine. It does not close either
// writer.
func (w *twoWriter) Close() {
	if !w.closed {
		w.closed = true
		close(w.in)
	}
}

// copyBoth copies src into both writers, hashing on two cores (see
// twoWriter), and returns the bytes copied.
func copyBoth(first, second io.Writer, src io.Reader) (int64, error) {
	w := newTwoWriter(first, second)
	defer w.Close()
	return io.CopyBuffer(w, src, make([]byte, copyBufSize))
}
