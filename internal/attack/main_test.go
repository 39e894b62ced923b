package attack

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/netns"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/opencontainers/go-digest"
)

func TestMain(m *testing.M) {
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

// requireNetns skips the test where namespaces cannot be made, except in
// CI (CI set), where it fails: CI runs as root and must run it.
func requireNetns(t *testing.T) {
	t.Helper()
	if err := netns.Check(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run this test: %v", err)
		}
		t.Skipf("needs root and iproute2 (ip): %v", err)
	}
}

// startCluster starts a cluster for the test and closes it at its end.
func startCluster(t *testing.T, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.AnnounceInterval == 0 {
		opts.AnnounceInterval = time.Second
	}
	c, err := cluster.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	return c
}

// token fetches a bearer token for scope from ts with user's password and
// returns it as an Authorization value.
func token(t *testing.T, ts *origin.TokenServer, user, password, scope string) string {
	t.Helper()
	tok, err := ts.Token(t.Context(), user, password, scope)
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + tok
}

// leaked returns the offset in got of a run of 32 bytes of any of blobs,
// or -1. Every run of 48 bytes or more holds a 32-byte window that starts
// at a multiple of 16, so those are the windows looked for.
func leaked(got []byte, blobs ...[]byte) int {
	for i := 0; i+32 <= len(got); i += 16 {
		for _, b := range blobs {
			if bytes.Contains(b, got[i:i+32]) {
				return i
			}
		}
	}
	return -1
}

// isTimeout reports a network timeout (the stranger waited for bytes that
// never came).
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// digestOf parses a digest.
func digestOf(t *testing.T, s string) digest.Digest {
	t.Helper()
	d, err := digest.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
