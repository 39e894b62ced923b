package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage/memory"
)

// fixedMetaInfo hands out one blob's metainfo, as a seeder would, for a
// blob no peer seeds: the swarm has nothing to give.
type fixedMetaInfo struct{ mi []byte }

func (f fixedMetaInfo) MetaInfo(context.Context, blob.Ref) ([]byte, error) { return f.mi, nil }

// stuckEngine is a real p2p engine, announcing to a real tracker, whose
// blob content (from the origin) nobody seeds.
func stuckEngine(t *testing.T, content []byte, d string) (*p2p.Engine, string) {
	t.Helper()
	dgst := digest.Digest(d)
	ih := p2p.NewInfoHasher(dgst, int64(len(content)))
	ih.Write(content)
	mi, err := ih.MetaInfo()
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	announceURL := testenv.Tracker(t, nil)
	az, err := auth.New(auth.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { az.Close() })
	e, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), Authorizer: az,
		ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(), Trackers: []string{announceURL}, Logger: quiet,
	}, memory.New(), fixedMetaInfo{mi})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, announceURL
}

// A blob GET whose swarm gives no verified byte within first_byte_timeout
// is answered 503, before any status line, with the reason: the runtime
// falls back to its next host instead of waiting on a mirror that hangs.
func TestFirstByteTimeoutAnswers503(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	im := e.push(t, "eagle/stuck", 300<<10)
	layer := im.Layers[0]
	content := readBlob(t, e.client, e.origin.URL, im.Repository, layer.Digest.String())
	eng, _ := stuckEngine(t, content, layer.Digest.String())
	env := newEnvWithOrigin(t, e.origin, Config{FirstByteTimeout: time.Second}, func(*memSource) BlobSource { return eng })

	start := time.Now()
	resp := env.do(t, http.MethodGet, env.srv.URL+"/v2/"+im.Repository+"/blobs/"+layer.Digest.String())
	took := time.Since(start)
	er := wantOCIError(t, resp, http.StatusServiceUnavailable, CodeUnavailable)
	if !strings.Contains(er.Errors[0].Message, "no peer") && !strings.Contains(er.Errors[0].Message, "no tracker") {
		t.Errorf("503 message %q does not say why", er.Errors[0].Message)
	}
	if took < time.Second || took > 5*time.Second {
		t.Errorf("503 after %v, want about the 1 s first_byte_timeout", took)
	}
}

// With fallback: origin the node fetches such a blob from the origin
// itself: streamed, verified, cached (the next GET is local and the origin
// served it once), and counted as origin bytes. A HEAD whose source fails
// gets the origin's size.
func TestFallbackOrigin(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	im := e.push(t, "eagle/fallback", 300<<10+7)
	layer := im.Layers[0]
	content := readBlob(t, e.client, e.origin.URL, im.Repository, layer.Digest.String())
	e.origin.ResetCounts()
	eng, _ := stuckEngine(t, content, layer.Digest.String())
	reg := prometheus.NewRegistry()
	env := newEnvWithOrigin(t, e.origin, Config{FirstByteTimeout: time.Second, Fallback: FallbackOrigin, Metrics: reg},
		func(*memSource) BlobSource { return eng })
	url := env.srv.URL + "/v2/" + im.Repository + "/blobs/" + layer.Digest.String()
	for i := range 2 {
		resp := env.do(t, http.MethodGet, url)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, content) {
			t.Fatalf("GET %d: %s, %d bytes, %v; want the blob", i, resp.Status, len(got), err)
		}
	}
	if n := e.origin.BlobGETs(layer.Digest); n != 1 {
		t.Errorf("origin served the blob %d times, want once (then from the node's cache)", n)
	}
	if got := testutil.ToFloat64(env.h.metrics.fromOrigin); got != float64(len(content)) {
		t.Errorf("origin bytes counted %v, want %d", got, len(content))
	}
	if st := eng.Stats(); st.BytesFromOrigin != int64(len(content)) {
		t.Errorf("engine counted %d origin bytes, want %d", st.BytesFromOrigin, len(content))
	}
	// A range is not served from the origin: the runtime does that itself.
	other := e.push(t, "eagle/fallback2", 200<<10)
	resp := env.do(t, http.MethodGet, env.srv.URL+"/v2/"+other.Repository+"/blobs/"+other.Layers[0].Digest.String(), "Range", "bytes=10-20")
	if resp.StatusCode/100 == 2 {
		t.Errorf("range of a blob the swarm cannot serve: %s", resp.Status)
	}
	resp.Body.Close()
}

// readBlob GETs a blob straight from a registry.
func readBlob(t *testing.T, c *http.Client, base, repo, d string) []byte {
	t.Helper()
	resp := doReq(t, c, http.MethodGet, base+"/v2/"+repo+"/blobs/"+d, nil)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", d, resp.Status, err)
	}
	return b
}

// A stream that stops mid-way — the only peer sending it is gone — is cut
// after stall_timeout: the runtime sees a failed download and retries,
// instead of waiting on a response that never ends.
func TestStallTimeoutCutsStream(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	// The agent may ask for the whole blob at once and get its pieces in
	// any order: with a 4 MiB request window, at 1 MiB/s the first bytes
	// come within about 4 s, and 12 MiB are still to come when the peer
	// leaves. (A 4 MiB blob was sometimes whole before its first piece.)
	im := e.push(t, "eagle/stall", 16<<20)
	layer := im.Layers[0]
	content := readBlob(t, e.client, e.origin.URL, im.Repository, layer.Digest.String())
	agent, announce := stuckEngine(t, content, layer.Digest.String())

	// The one peer that has the blob, slow enough to be caught mid-way.
	quiet := slog.New(slog.DiscardHandler)
	store := memory.New()
	w, err := store.Create(context.Background(), layer.Digest)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content)
	if _, err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	seed, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "seeder"), SkipAuthorization: true, Role: p2p.RoleSeeder,
		ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(), Trackers: []string{announce}, Logger: quiet,
		UploadLimit: 1 << 20,
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()
	ih := p2p.NewInfoHasher(layer.Digest, int64(len(content)))
	ih.Write(content)
	mi, _ := ih.MetaInfo()
	if err := seed.Seed(context.Background(), layer.Digest, mi); err != nil {
		t.Fatal(err)
	}

	env := newEnvWithOrigin(t, e.origin, Config{FirstByteTimeout: 20 * time.Second, StallTimeout: time.Second},
		func(*memSource) BlobSource { return agent })
	resp := env.do(t, http.MethodGet, env.srv.URL+"/v2/"+im.Repository+"/blobs/"+layer.Digest.String())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64<<10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	seed.Close()
	start := time.Now()
	rest, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the stream ended cleanly after %d more bytes; want it cut", len(rest))
	}
	t.Logf("cut %v after the peer left", time.Since(start))
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("a stalled stream was cut after %v, with a 1 s stall_timeout", d)
	}
}
