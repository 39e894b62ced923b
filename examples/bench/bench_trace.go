package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/eagle-p2p/eagle/internal/cluster"
)

// nodeSample is what a swarm trace reads of one agent.
type nodeSample struct {
	received int64 // useful piece bytes, from seeders and agents
	uploaded int64 // piece bytes sent
	peers    int   // peer connections open
}

// swarmProbe reads a swarm's counters for a trace.
type swarmProbe struct {
	agents  int
	agent   func(i int) nodeSample
	seeders func() int64 // piece bytes the seeders sent
}

// clusterProbe reads the counters of an in-process cluster's engines.
func clusterProbe(c *cluster.Cluster) swarmProbe {
	return swarmProbe{
		agents: len(c.Agents),
		agent: func(i int) nodeSample {
			st := c.Agents[i].Node.Engine.Stats()
			return nodeSample{received: st.BytesFromSeeders + st.BytesFromAgents, uploaded: st.BytesUploaded, peers: st.Peers}
		},
		seeders: func() int64 { return seedersSent(c) },
	}
}

func seedersSent(c *cluster.Cluster) int64 {
	var n int64
	for _, s := range c.Seeders {
		n += s.Uploaded()
	}
	return n
}

// metricsProbe reads each agent's counters from its /metrics endpoint
// (the agents of a -netns run are other processes). An agent that does not
// answer keeps its last sample.
func metricsProbe(ctx context.Context, c *cluster.Cluster, urls []string) swarmProbe {
	client := &http.Client{Timeout: time.Second}
	last := make([]nodeSample, len(urls))
	return swarmProbe{
		agents: len(urls),
		agent: func(i int) nodeSample {
			if s, err := scrapeNode(ctx, client, urls[i]+"/metrics"); err == nil {
				last[i] = s
			}
			return last[i]
		},
		seeders: func() int64 { return seedersSent(c) },
	}
}

// scrapeNode reads an agent's p2p counters from its metrics page.
func scrapeNode(ctx context.Context, client *http.Client, url string) (nodeSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nodeSample{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nodeSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nodeSample{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseNodeMetrics(resp.Body)
}

// parseNodeMetrics picks the p2p counters out of a Prometheus text page.
func parseNodeMetrics(r io.Reader) (nodeSample, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nodeSample{}, fmt.Errorf("metrics: %w", err)
	}
	sum := func(name string) float64 {
		var v float64
		if f, ok := fams[name]; ok {
			for _, m := range f.GetMetric() {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return v
	}
	for _, name := range []string{"eagle_p2p_received_bytes_total", "eagle_p2p_uploaded_bytes_total", "eagle_p2p_peers"} {
		if _, ok := fams[name]; !ok {
			return nodeSample{}, fmt.Errorf("metrics: no %s", name)
		}
	}
	return nodeSample{
		received: int64(sum("eagle_p2p_received_bytes_total")),
		uploaded: int64(sum("eagle_p2p_uploaded_bytes_total")),
		peers:    int(sum("eagle_p2p_peers")),
	}, nil
}

// traceSwarm prints, every interval until stop, the piece bytes the agents
// received (in total and the least any one did) and the seeders sent, and
// how many agents used under half their cap up (of all) and down (of
// those not done) in that interval; at the end, when each agent had
// received its first byte, half the blob and all of it.
func traceSwarm(w io.Writer, p swarmProbe, size, capBps int64, interval time.Duration) (stop func()) {
	start := time.Now()
	marks := make([][3]float64, p.agents)
	prev := make([]nodeSample, p.agents)
	last := start
	sample := func() {
		now := time.Since(start).Seconds()
		var total, least int64 = 0, math.MaxInt64
		leastPeers, slowUp, slowDown := 0, 0, 0
		// Half of what the interval since the last sample allowed.
		half := int64(float64(capBps) * time.Since(last).Seconds() / 2)
		last = time.Now()
		for i := range p.agents {
			s := p.agent(i)
			for j, at := range []int64{1, size / 2, size} {
				if marks[i][j] == 0 && s.received >= at {
					marks[i][j] = now
				}
			}
			total += s.received
			if s.received < least {
				least, leastPeers = s.received, s.peers
			}
			if s.uploaded-prev[i].uploaded < half {
				slowUp++
			}
			if s.received < size && s.received-prev[i].received < half {
				slowDown++
			}
			prev[i] = s
		}
		fmt.Fprintf(w, "trace: t=%.1fs agents_received=%d least=%d seeders_sent=%d least_peers=%d slow_up=%d slow_down=%d\n", now, total, least, p.seeders(), leastPeers, slowUp, slowDown)
	}
	return everyTick(interval, func() {
		sample() // so that the marks include the pull's end
		for i, m := range marks {
			fmt.Fprintf(w, "trace: agent=%d first_s=%.1f half_s=%.1f all_s=%.1f peers=%d\n", i, m[0], m[1], m[2], prev[i].peers)
		}
	}, sample)
}

// everyTick runs tick every interval on a goroutine of its own until stop
// is called, then last once, before stop returns.
func everyTick(interval time.Duration, last, tick func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				last()
				return
			case <-t.C:
				tick()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
