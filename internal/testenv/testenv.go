// Package testenv starts the real parts that tests of every package need —
// a tracker, an origin registry — on 127.0.0.1, each stopped by the test's
// Cleanup. The tracker runs mutual TLS with testtls's cluster CA, as a
// production tracker does.
package testenv

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/tracker"
)

// NewTracker returns a real tracker with a 1 s announce interval, keeping
// peers in memory, not yet served: for a test that wraps its handler. log
// nil discards its logs. Cleanup closes it.
func NewTracker(tb testing.TB, log *slog.Logger) *tracker.Server {
	tb.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	trk, err := tracker.New(tracker.Config{Interval: time.Second, MinInterval: time.Second, Logger: log}, nil)
	if err != nil {
		tb.Fatalf("tracker: %v", err)
	}
	tb.Cleanup(func() { trk.Close() })
	return trk
}

// Tracker serves NewTracker over mutual TLS on 127.0.0.1 and returns its
// announce URL.
func Tracker(tb testing.TB, log *slog.Logger) string {
	tb.Helper()
	url, _ := testtls.Server(tb, NewTracker(tb, log))
	return url + "/announce"
}

// Origin starts a real registry (distribution/v3, anonymous pulls and
// pushes) over a temporary directory. Cleanup stops it.
func Origin(tb testing.TB) *origin.Registry {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := origin.Start(ctx, origin.Options{Dir: tb.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatalf("origin: %v", err)
	}
	tb.Cleanup(func() {
		if err := reg.Close(); err != nil {
			tb.Errorf("origin close: %v", err)
		}
	})
	return reg
}
