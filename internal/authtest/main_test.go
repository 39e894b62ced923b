package authtest

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/pull"
)

func TestMain(m *testing.M) {
	// containerd logs each fallback to its next host (expected in the
	// tests with wrong credentials) through logrus at Info.
	logrus.SetLevel(logrus.WarnLevel)
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

// startCluster starts a cluster of agents agents, 2 seeders and an origin
// configured by originOpts; the test closes it at its end.
func startCluster(t *testing.T, agents int, originOpts origin.Options) *cluster.Cluster {
	t.Helper()
	c, err := cluster.Start(t.Context(), cluster.Options{
		Dir: t.TempDir(), Agents: agents, Seeders: 2, AnnounceInterval: time.Second, Origin: originOpts,
	})
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

// job is one pull through one agent.
type job struct {
	agent    *cluster.Agent
	platform ocispec.Platform // zero: linux/runtime.GOARCH
}

// credentials answers containerd's credential requests with one user's
// password and records the hosts it was asked for.
type credentials struct {
	user, password string

	mu    sync.Mutex
	hosts map[string]int
}

func (c *credentials) get(host string) (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hosts == nil {
		c.hosts = map[string]int{}
	}
	c.hosts[host]++
	return c.user, c.password, nil
}

// askedHosts returns the hosts credentials were asked for, with counts.
func (c *credentials) askedHosts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.hosts))
	for h, n := range c.hosts {
		out[h] = n
	}
	return out
}

// pullAll runs the jobs at once, each with containerd's resolver and a
// hosts.toml that makes its agent the origin's mirror, logging in with creds
// (nil: anonymous). It fails the test if a pull fails.
func pullAll(t *testing.T, ctx context.Context, c *cluster.Cluster, ref string, creds *credentials, jobs []job) []pull.Result {
	t.Helper()
	results := make([]pull.Result, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		hosts := t.TempDir()
		if err := pull.WriteHostsTOML(hosts, c.Origin.Host, j.agent.URL); err != nil {
			t.Fatal(err)
		}
		opts := pull.Options{HostsDir: hosts, Platform: j.platform}
		if creds != nil {
			opts.Credentials = creds.get
		}
		wg.Go(func() {
			results[i], errs[i] = pull.Pull(ctx, ref, opts)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull through %s: %v", jobs[i].agent.Name, err)
		}
	}
	return results
}

// sizeOf returns the total size of descs.
func sizeOf(descs []ocispec.Descriptor) int64 {
	var n int64
	for _, d := range descs {
		n += d.Size
	}
	return n
}

// response is what a request got: its status, headers, and the digest and
// length of its body (which is never held in memory).
type response struct {
	status int
	header http.Header
	digest digest.Digest
	size   int64
}

// request sends method url with header and reads the whole response.
func request(t *testing.T, ctx context.Context, method, url string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, digest: digest.NewDigest(digest.SHA256, h), size: n}
}

// basic returns an Authorization header with basic credentials.
func basic(user, password string) http.Header {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, password)
	return http.Header{"Authorization": r.Header["Authorization"]}
}

// authClient is an HTTP client that logs in as user; the test closes its
// idle connections at its end.
func authClient(t *testing.T, user, password string) *http.Client {
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	return &http.Client{Transport: origin.NewAuthTransport(base, user, password)}
}
