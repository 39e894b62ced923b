package logbuf_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/eagle-p2p/eagle/internal/logbuf"
)

// Writers on many goroutines and a reader meanwhile (run with -race) lose
// no line.
func TestBufferConcurrentWrites(t *testing.T) {
	var buf logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				log.Info("line", "writer", i, "n", j)
				_ = buf.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(buf.String(), "msg=line"); n != 800 {
		t.Errorf("%d lines, want 800", n)
	}
	if got, want := len(buf.Bytes()), len(buf.String()); got != want {
		t.Errorf("Bytes holds %d bytes, String %d", got, want)
	}
}

func ExampleBuffer() {
	var buf logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	log.Warn("origin slow", "took", "2.1s")
	fmt.Print(buf.String())
	// Output: level=WARN msg="origin slow" took=2.1s
}
