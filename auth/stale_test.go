package auth_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/blob"
)

// While the origin cannot be asked, its last yes counts for StaleTTL; a
// refusal from an origin that answers counts at once, and a credential
// the origin never confirmed gets nothing.
func TestStaleYesWhileOriginIsDown(t *testing.T) {
	var mode atomic.Value // "up", "down" (5xx), "deny"
	mode.Store("up")
	reg := newRegistry(t, func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "down":
			w.WriteHeader(http.StatusBadGateway)
		case "deny":
			w.WriteHeader(http.StatusForbidden)
		}
	})
	a, err := auth.New(auth.Config{TTL: -1, StaleTTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	ref := blob.Ref{Upstream: reg.URL, Repository: "a/b", Digest: "sha256:0000000000000000000000000000000000000000000000000000000000000001", Authorization: "Bearer yes"}
	if err := a.Authorize(ctx, ref); err != nil {
		t.Fatal(err)
	}
	mode.Store("down")
	if err := a.Authorize(ctx, ref); err != nil {
		t.Errorf("origin down within StaleTTL of its yes: %v", err)
	}
	other := ref
	other.Authorization = "Bearer never-confirmed"
	if err := a.Authorize(ctx, other); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("a credential never confirmed, origin down: %v, want ErrUnavailable", err)
	}
	mode.Store("deny")
	var oe *blob.OriginError
	if err := a.Authorize(ctx, ref); !errors.As(err, &oe) || oe.StatusCode != http.StatusForbidden {
		t.Errorf("origin refusing: %v, want its 403", err)
	}
	// The refusal ended the old yes: an outage now does not revive it.
	mode.Store("down")
	if err := a.Authorize(ctx, ref); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("origin down after refusing: %v, want ErrUnavailable", err)
	}
	mode.Store("up")
	if err := a.Authorize(ctx, ref); err != nil {
		t.Fatal(err)
	}
	mode.Store("down")
	time.Sleep(400 * time.Millisecond)
	if err := a.Authorize(ctx, ref); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("origin down past StaleTTL: %v, want ErrUnavailable", err)
	}
}
