package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
)

// TestMetricsProbe pulls a blob through one of two agents and checks that
// the -netns trace, which reads each agent's /metrics, sees the same
// counters as the agents' engines; an agent that does not answer keeps its
// last sample.
func TestMetricsProbe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Seeders: 1, Agents: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "trace/probe", "latest", []int64{2<<20 + 123}, 1)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	resp, err := http.Get(c.Agents[0].URL + "/v2/" + img.Repository + "/blobs/" + layer.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != layer.Size {
		t.Fatalf("pull: %d bytes, %v; want %d", n, err, layer.Size)
	}

	urls := []string{c.Agents[0].URL, c.Agents[1].URL}
	p := metricsProbe(ctx, c, urls)
	for i, a := range c.Agents {
		st := a.Node.Engine.Stats()
		got := p.agent(i)
		if want := st.BytesFromSeeders + st.BytesFromAgents; got.received != want || got.uploaded != st.BytesUploaded {
			t.Errorf("agent %d: probe read received %d, uploaded %d; engine says %d, %d", i, got.received, got.uploaded, want, st.BytesUploaded)
		}
	}
	if got := p.agent(0).received; got < layer.Size {
		t.Errorf("agent 0 received %d bytes, want at least the blob's %d", got, layer.Size)
	}
	if got, want := p.seeders(), seedersSent(c); got != want || got < layer.Size {
		t.Errorf("seeders sent %d (cluster says %d), want at least %d", got, want, layer.Size)
	}

	// Agent 0 stops answering: its sample stays.
	before := p.agent(0)
	urls[0] = "http://127.0.0.1:1"
	if got := p.agent(0); got != before {
		t.Errorf("an agent that does not answer changed its sample: %+v, was %+v", got, before)
	}
}

func TestParseNodeMetrics(t *testing.T) {
	page := `# TYPE eagle_p2p_received_bytes_total counter
eagle_p2p_received_bytes_total{from="agent"} 300
eagle_p2p_received_bytes_total{from="seeder"} 200
# TYPE eagle_p2p_uploaded_bytes_total counter
eagle_p2p_uploaded_bytes_total 700
# TYPE eagle_p2p_peers gauge
eagle_p2p_peers 5
`
	got, err := parseNodeMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if want := (nodeSample{received: 500, uploaded: 700, peers: 5}); got != want {
		t.Errorf("parsed %+v, want %+v", got, want)
	}
	for name, bad := range map[string]string{
		"not a metrics page": "<html>oops</html>\n",
		"no p2p metrics":     "# TYPE go_goroutines gauge\ngo_goroutines 7\n",
	} {
		if _, err := parseNodeMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("%s: parsed without an error", name)
		}
	}
}
