package cluster_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/tracker"
)

func TestMain(m *testing.M) {
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

// value returns the sample of name with the given label pairs, or -1.
func value(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// eventually waits until f holds.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	return getWith(t, http.DefaultClient, url)
}

func getWith(t *testing.T, client *http.Client, url string) (int, []byte) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// Each component's registry follows a blob through the cluster: the seeder
// fetches it once, the first agent gets it through the swarm, the second
// from its peers, a repeat read comes from the first agent's store; the
// tracker sees the swarm. The agents and the tracker serve the same
// metrics on their listeners, with /healthz and /readyz.
func TestMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Dir: t.TempDir(), Seeders: 1, Agents: 2, AnnounceInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	}()
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "metrics/app", "v1", []int64{2<<20 + 3}, 11)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	size := float64(layer.Size)
	path := "/v2/metrics/app/blobs/" + layer.Digest.String()

	for i, a := range []*cluster.Agent{c.Agents[0], c.Agents[1], c.Agents[0]} {
		code, body := get(t, a.URL+path)
		if code != http.StatusOK || digest.FromBytes(body) != layer.Digest {
			t.Fatalf("read %d through %s: status %d, %d bytes not matching", i, a.Name, code, len(body))
		}
	}
	for i, a := range c.Agents {
		eventually(t, a.Name+" counts the swarm read", func() bool {
			return value(t, a.Metrics, "eagle_proxy_blob_bytes_total", "source", "swarm") == size
		})
		got := value(t, a.Metrics, "eagle_p2p_received_bytes_total", "from", "agent") +
			value(t, a.Metrics, "eagle_p2p_received_bytes_total", "from", "seeder")
		if got < size {
			t.Errorf("%s received %v piece bytes, want at least %v", a.Name, got, size)
		}
		wantLocal := 0.0
		if i == 0 {
			wantLocal = size
		}
		eventually(t, a.Name+" counts the local read", func() bool {
			return value(t, a.Metrics, "eagle_proxy_blob_bytes_total", "source", "local") == wantLocal
		})
		if n := value(t, a.Metrics, "eagle_p2p_downloads_total", "result", "success"); n != 1 {
			t.Errorf("%s: %v successful downloads, want 1", a.Name, n)
		}
	}
	s := c.Seeders[0]
	if n := value(t, s.Metrics, "eagle_seeder_origin_fetches_total", "result", "success"); n != 1 {
		t.Errorf("seeder origin fetches = %v, want 1", n)
	}
	if n := value(t, s.Metrics, "eagle_seeder_origin_bytes_total"); n != size {
		t.Errorf("seeder origin bytes = %v, want %v", n, size)
	}
	if n := c.Origin.BlobGETs(layer.Digest); n != 1 {
		t.Errorf("origin served the layer %d times, want 1", n)
	}
	eventually(t, "tracker sees the swarm of seeder and two agents", func() bool {
		return value(t, c.TrackerMetrics, "eagle_tracker_swarms") == 1 && value(t, c.TrackerMetrics, "eagle_tracker_peers") == 3
	})

	trackerBase := strings.TrimSuffix(c.TrackerURL, "/announce")
	// The tracker's operational endpoints answer anyone, over TLS; its
	// announces only members.
	ops := c.OpsClient()
	for _, base := range []string{c.Agents[0].URL, trackerBase} {
		code, body := getWith(t, ops, base+"/metrics")
		if code != http.StatusOK || !strings.Contains(string(body), "eagle_") {
			t.Errorf("GET %s/metrics: %d, no eagle_ metrics:\n%.300s", base, code, body)
		}
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, body := getWith(t, ops, base+p); code != http.StatusOK || string(body) != "ok\n" {
				t.Errorf("GET %s%s: %d %q", base, p, code, body)
			}
		}
	}
	if code, _ := getWith(t, ops, trackerBase+"/scrape"); code != http.StatusForbidden {
		t.Errorf("GET /scrape without a member certificate: %d, want 403", code)
	}
	code, body := get(t, c.Agents[1].URL+"/metrics")
	if want := "eagle_proxy_blob_bytes_total{source=\"swarm\"} "; code != http.StatusOK || !strings.Contains(string(body), want) {
		t.Errorf("agent-1 /metrics lacks %s", want)
	}
}

// RestartTracker brings the tracker back at the same URL with an empty
// store, and the agents find each other through it.
func TestRestartTracker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Dir: t.TempDir(), Seeders: 1, Agents: 2, AnnounceInterval: time.Second, TrackerPolicy: tracker.RandomPolicy{}, SeederLocation: "lab/dc0"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	}()
	pull := func(tag string) {
		t.Helper()
		img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "restart/app", tag, []int64{1<<20 + 5}, time.Now().UnixNano())
		if err != nil {
			t.Fatal(err)
		}
		layer := img.Layers[0]
		for _, a := range c.Agents {
			if code, body := get(t, a.URL+"/v2/restart/app/blobs/"+layer.Digest.String()); code != http.StatusOK || digest.FromBytes(body) != layer.Digest {
				t.Fatalf("%s %s: status %d, %d bytes not matching", tag, a.Name, code, len(body))
			}
		}
	}
	pull("v1")
	url := c.TrackerURL
	if err := c.RestartTracker(tracker.CompletenessPolicy{}); err != nil {
		t.Fatal(err)
	}
	if c.TrackerURL != url {
		t.Errorf("tracker URL %s after the restart, was %s", c.TrackerURL, url)
	}
	if n := value(t, c.TrackerMetrics, "eagle_tracker_swarms"); n > 0 {
		t.Errorf("the restarted tracker holds %v swarms, want an empty store", n)
	}
	pull("v2")
	eventually(t, "the restarted tracker sees the new swarm", func() bool {
		return value(t, c.TrackerMetrics, "eagle_tracker_swarms") >= 1
	})
}
