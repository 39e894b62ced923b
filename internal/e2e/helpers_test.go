package e2e

import (
	"context"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
)

func TestMain(m *testing.M) {
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

// layerSizes are the layers of every test image: three real tar layers,
// each spanning several pieces, one not a multiple of the tar block.
var layerSizes = []int64{3 << 20, 2<<20 + 4321, 1 << 20}

// requireTools skips the test, naming the missing program, unless every
// program is installed and the test may start daemons.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: starts real daemons; skipped in -short mode")
	}
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("e2e: %s is not installed (apt-get install docker.io containerd skopeo); .ci/run installs it", name)
		}
	}
	if os.Geteuid() != 0 {
		t.Skipf("e2e: %s must run as root", names[0])
	}
}

// startCluster starts an origin, a tracker, one seeder and two agents.
func startCluster(t *testing.T, ctx context.Context) *cluster.Cluster {
	t.Helper()
	c, err := cluster.Start(ctx, cluster.Options{Dir: t.TempDir(), Agents: 2, Seeders: 1, AnnounceInterval: time.Second})
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

// pushImage pushes a random image of layerSizes to the origin and resets
// the origin's counters, so that they count the pull only.
func pushImage(t *testing.T, ctx context.Context, c *cluster.Cluster, repo, tag string, seed int64) origin.Image {
	t.Helper()
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, repo, tag, layerSizes, seed)
	if err != nil {
		t.Fatalf("push %s:%s: %v", repo, tag, err)
	}
	c.Origin.ResetCounts()
	return img
}

// checkOriginOnce checks that the origin served each blob of img exactly
// once: one copy, however many runtimes pulled it.
func checkOriginOnce(t *testing.T, c *cluster.Cluster, img origin.Image) {
	t.Helper()
	var size int64
	for _, b := range img.Blobs() {
		size += b.Size
		if n := c.Origin.BlobGETs(b.Digest); n != 1 {
			t.Errorf("origin served blob %s %d times, want 1", b.Digest, n)
		}
	}
	if got := c.Origin.BlobBytes(); got != size {
		t.Errorf("origin served %d blob bytes, want one copy of the image (%d)", got, size)
	}
}

// checkP2P checks that each agent received the whole image through the
// swarm (from the seeder and from other agents), as the agent's own
// /metrics reports it (eagle_p2p_received_bytes_total).
func checkP2P(t *testing.T, img origin.Image, agents ...*cluster.Agent) {
	t.Helper()
	var size int64
	for _, b := range img.Blobs() {
		size += b.Size
	}
	for _, a := range agents {
		byFrom := scrapeReceived(t, a.URL+"/metrics")
		t.Logf("%s: %v bytes received by peer kind (from /metrics)", a.Name, byFrom)
		if got := byFrom["seeder"] + byFrom["agent"]; got < float64(size) {
			t.Errorf("%s received %.0f bytes from peers, want the whole image (%d)", a.Name, got, size)
		}
	}
}

// scrapeReceived reads eagle_p2p_received_bytes_total from a /metrics
// endpoint, by its "from" label.
func scrapeReceived(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	out := map[string]float64{}
	mf, ok := families["eagle_p2p_received_bytes_total"]
	if !ok {
		t.Fatalf("%s has no eagle_p2p_received_bytes_total", url)
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "from" {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// egressGuard is the HTTP(S) proxy every runtime in these tests is given.
// Loopback is never proxied, so the guard sees exactly the requests that
// would leave the machine (a runtime falling back to Docker Hub, say): it
// refuses them and records them, and the test fails on any.
type egressGuard struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newEgressGuard(t *testing.T) *egressGuard {
	t.Helper()
	g := &egressGuard{}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.seen = append(g.seen, r.Method+" "+r.Host)
		g.mu.Unlock()
		http.Error(w, "eagle e2e: no traffic leaves this machine", http.StatusForbidden)
	}))
	t.Cleanup(func() {
		g.srv.Close()
		g.mu.Lock()
		defer g.mu.Unlock()
		if len(g.seen) > 0 {
			t.Errorf("runtimes tried to reach hosts outside the machine: %v", g.seen)
		}
	})
	return g
}

// env returns the environment for a runtime: this process's, with every
// proxy variable pointing at the guard.
func (g *egressGuard) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HTTP_PROXY="+g.srv.URL, "HTTPS_PROXY="+g.srv.URL, "http_proxy="+g.srv.URL,
		"https_proxy="+g.srv.URL, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
	return append(env, extra...)
}

// runTool runs a program to completion and returns its combined output.
func runTool(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), &toolError{cmd: name + " " + strings.Join(args, " "), out: string(out), err: err}
	}
	return string(out), nil
}

// toolError is a failed program run, with its output.
type toolError struct {
	cmd, out string
	err      error
}

func (e *toolError) Error() string {
	return e.cmd + ": " + e.err.Error() + "\n" + lastLines(e.out, 30)
}

func (e *toolError) Unwrap() error { return e.err }

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
