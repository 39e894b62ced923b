package attack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
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

// token fetches a bearer token for scope from ts with user's password, the
// way containerd does.
func token(t *testing.T, ts *origin.TokenServer, user, password, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {password},
		"service": {origin.TokenService}, "scope": {scope}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.Realm, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		t.Fatalf("token for %s: %s, %v", scope, resp.Status, err)
	}
	return "Bearer " + body.AccessToken
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
