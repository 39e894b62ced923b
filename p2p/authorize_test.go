package p2p_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

// Fetch and Stat are a path to cached bytes too: they ask the Authorizer
// every time, so a blob the engine holds for alice is refused to a caller
// whose credentials the origin refuses, with the origin's answer, and no
// byte or size reaches that caller.
func TestMaliciousCachedBlobNeedsAuthorization(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o, err := origin.Start(ctx, origin.Options{Dir: t.TempDir(), Logger: quiet, Htpasswd: map[string]string{"alice": "alice-pw"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	push := &http.Client{Transport: origin.NewAuthTransport(nil, "alice", "alice-pw")}
	img, err := origin.PushRandomImage(ctx, push, o.URL, "private/app", "v1", []int64{1<<20 + 7}, 3)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	req, _ := http.NewRequest(http.MethodGet, o.URL, nil)
	req.SetBasicAuth("alice", "alice-pw")
	aliceAuth := req.Header.Get("Authorization")
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, p2p.RoleAgent, trk, store, newSeederClient(t, addr))
	ref := blob.Ref{Upstream: o.URL, Repository: img.Repository, Digest: layer.Digest, Authorization: aliceAuth}
	want := readAll(t, ctx, e, ref)
	if int64(len(want)) != layer.Size {
		t.Fatalf("alice read %d bytes, want %d", len(want), layer.Size)
	}

	req.SetBasicAuth("alice", "guess")
	for name, authz := range map[string]string{"anonymous": "", "a wrong password": req.Header.Get("Authorization")} {
		stranger := ref
		stranger.Authorization = authz
		var oe *blob.OriginError
		if b, err := e.Fetch(ctx, stranger); !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized {
			if b != nil {
				got, _ := io.ReadAll(b)
				b.Close()
				if bytes.Contains(want, got) && len(got) > 0 {
					t.Errorf("%s: Fetch handed out %d bytes of the cached blob", name, len(got))
				}
			}
			t.Errorf("%s: Fetch = %v, want the origin's 401", name, err)
		}
		if size, err := e.Stat(ctx, stranger); !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized || size != 0 {
			t.Errorf("%s: Stat = %d, %v, want the origin's 401", name, size, err)
		}
	}
	// The cached copy still serves alice, without the origin serving it
	// again.
	if got := readAll(t, ctx, e, ref); !bytes.Equal(got, want) {
		t.Error("alice's second read differs")
	}
	if n := o.BlobGETs(layer.Digest); n != 1 {
		t.Errorf("origin served the blob %d times, want 1", n)
	}

	// An engine without an Authorizer refuses to start unless told, by
	// name, to serve every caller.
	if _, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(), Trackers: []string{trk}, Logger: quiet}, store, nil); err == nil {
		t.Error("an engine with neither Authorizer nor SkipAuthorization started")
	}
}
