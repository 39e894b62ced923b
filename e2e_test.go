package eagle_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/pull"
	"github.com/eagle-p2p/eagle/proxy"
)

func TestMain(m *testing.M) {
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

func startCluster(t *testing.T, agents int) *cluster.Cluster {
	t.Helper()
	c, err := cluster.Start(context.Background(), cluster.Options{Dir: t.TempDir(), Agents: agents, Seeders: 2, AnnounceInterval: time.Second})
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

// pullAll pulls ref through each agent at once, each with containerd's
// resolver and a hosts.toml that makes the agent the origin's mirror.
func pullAll(t *testing.T, ctx context.Context, c *cluster.Cluster, agents []*cluster.Agent, ref string) []pull.Result {
	t.Helper()
	results := make([]pull.Result, len(agents))
	errs := make([]error, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		hosts := t.TempDir()
		if err := pull.WriteHostsTOML(hosts, c.Origin.Host, a.URL); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = pull.Pull(ctx, ref, pull.Options{HostsDir: hosts})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull through %s: %v", agents[i].Name, err)
		}
	}
	return results
}

// An image pulled through four agents at once, then through a second wave:
// every blob digest-verified (byte-identical to the origin's), every layer
// fetched from the origin exactly once, and nothing from the origin for the
// second wave.
func TestPullThroughCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, 4)
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "e2e/app", "v1", []int64{9 << 20, 5<<20 + 123, 3 << 20}, 42)
	if err != nil {
		t.Fatal(err)
	}
	c.Origin.ResetCounts()
	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag

	var imageBytes int64
	for _, b := range img.Blobs() {
		imageBytes += b.Size
	}
	for i, r := range pullAll(t, ctx, c, c.Agents, ref) {
		if r.Bytes != imageBytes || len(r.Blobs) != len(img.Blobs()) {
			t.Errorf("%s pulled %d blobs, %d bytes; the image has %d, %d", c.Agents[i].Name, len(r.Blobs), r.Bytes, len(img.Blobs()), imageBytes)
		}
		st := c.Agents[i].Node.Engine.Stats()
		if got := st.BytesFromAgents + st.BytesFromSeeders; got < imageBytes {
			t.Errorf("%s received %d bytes from peers, want the whole image (%d)", c.Agents[i].Name, got, imageBytes)
		}
	}
	for _, b := range img.Blobs() {
		if n := c.Origin.BlobGETs(b.Digest); n != 1 {
			t.Errorf("origin served blob %s %d times, want 1", b.Digest, n)
		}
	}
	if got := c.Origin.BlobBytes(); got != imageBytes {
		t.Errorf("origin served %d blob bytes, want one copy (%d)", got, imageBytes)
	}

	before := c.Origin.TotalBlobGETs()
	var wave []*cluster.Agent
	for range 2 {
		a, err := c.AddAgent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wave = append(wave, a)
	}
	pullAll(t, ctx, c, wave, ref)
	if after := c.Origin.TotalBlobGETs(); after != before {
		t.Errorf("the second wave made %d blob GETs at the origin, want 0", after-before)
	}
}

// A client whose connection is cut in the middle of a blob (while the node
// is still downloading it) resumes with a Range request and gets the right
// bytes.
func TestResumeWithRangeAfterCut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, 1)
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "e2e/resume", "v1", []int64{24 << 20}, 7)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	url := c.Agents[0].URL + "/v2/" + img.Repository + "/blobs/" + layer.Digest.String()
	h := sha256.New()

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %s", resp.Status)
	}
	const cut = 3<<20 + 17
	if _, err := io.CopyN(h, resp.Body, cut); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // the cut

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Range", "bytes="+strconv.Itoa(cut)+"-")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("ranged GET: %s, want 206", resp.Status)
	}
	if want := fmt.Sprintf("bytes %d-%d/%d", cut, layer.Size-1, layer.Size); resp.Header.Get("Content-Range") != want {
		t.Errorf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), want)
	}
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if cut+n != layer.Size {
		t.Fatalf("got %d+%d bytes, want %d", cut, n, layer.Size)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != layer.Digest.String() {
		t.Fatalf("resumed bytes hash to %s, want %s", got, layer.Digest)
	}
	if n := c.Origin.BlobGETs(layer.Digest); n != 1 {
		t.Errorf("origin served the layer %d times, want 1", n)
	}
}

// Each class of malformed request gets its OCI error code from a real node.
func TestBadRequestsThroughNode(t *testing.T) {
	c := startCluster(t, 1)
	base := c.Agents[0].URL
	good := "sha256:" + hex.EncodeToString(make([]byte, 32))
	tests := []struct {
		name, path, rng string
		status          int
		code            proxy.ErrorCode
	}{
		{"name", "/v2/Bad_Name/blobs/" + good, "", http.StatusBadRequest, proxy.CodeNameInvalid},
		{"name traversal", "/v2/a/../b/blobs/" + good, "", http.StatusBadRequest, proxy.CodeNameInvalid},
		{"digest", "/v2/e2e/app/blobs/sha256:xyz", "", http.StatusBadRequest, proxy.CodeDigestInvalid},
		{"digest algorithm", "/v2/e2e/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", "", http.StatusBadRequest, proxy.CodeDigestInvalid},
		{"range", "/v2/e2e/app/blobs/" + good, "bytes=oops", http.StatusBadRequest, proxy.CodeRangeInvalid},
		{"unknown blob", "/v2/e2e/app/blobs/" + good, "", http.StatusNotFound, proxy.CodeBlobUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, base+tc.path, nil)
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body proxy.ErrorResponse
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("%s: body is not OCI error JSON: %v", resp.Status, err)
			}
			if resp.StatusCode != tc.status || len(body.Errors) == 0 || body.Errors[0].Code != tc.code {
				t.Fatalf("got %s %+v, want %d %s", resp.Status, body, tc.status, tc.code)
			}
		})
	}
	if n := c.Origin.TotalBlobGETs(); n != 0 {
		t.Errorf("bad requests caused %d blob GETs at the origin", n)
	}
}
