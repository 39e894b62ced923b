package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
)

// hitBenchOptions are the flags of "bench hit".
type hitBenchOptions struct {
	size    int64
	rounds  int
	timeout time.Duration
}

func runBenchHit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench hit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o hitBenchOptions
	fs.Int64Var(&o.size, "size", 512<<20, "blob size in bytes")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds; each GETs the blob once through the agent and once from the registry")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./examples/bench hit [flags]\n\nStarts a cluster (origin registry with its filesystem driver, tracker,\n"+
			"one seeder, one agent) on 127.0.0.1, pushes one blob, warms it into the\n"+
			"agent's cache with one GET, then, in interleaved rounds, GETs the whole blob\n"+
			"through the agent (warm local hit) and from the registry directly. Reports\n"+
			"the median throughput of the rounds and the proxy's median time to first byte.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if o.size < 1 || o.rounds < 1 || o.timeout <= 0 {
		fmt.Fprintln(stderr, "bench hit: -size, -rounds and -timeout must be positive")
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return benchHit(ctx, o, stdout)
}

// hitGet is the outcome of one timed GET.
type hitGet struct {
	elapsed time.Duration // request sent to last byte read
	ttfb    time.Duration // request sent to first body byte read
	busy    float64       // fraction of the machine's cores busy meanwhile
}

func benchHit(ctx context.Context, o hitBenchOptions, stdout io.Writer) error {
	c, err := cluster.Start(ctx, cluster.Options{Seeders: 1, Agents: 1})
	if err != nil {
		return fmt.Errorf("bench hit: %w", err)
	}
	defer c.Close()
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "bench/hit", "latest", []int64{o.size}, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("bench hit: push: %w", err)
	}
	layer := img.Layers[0]
	path := "/v2/" + img.Repository + "/blobs/" + layer.Digest.String()
	agentURL := c.Agents[0].URL + path + "?ns=" + c.Origin.Host
	originURL := c.Origin.URL + path
	fmt.Fprintf(stdout, "bench: hit pushed %s (%d bytes) to %s\n", layer.Digest, layer.Size, c.Origin.Host)

	tr := &http.Transport{DisableCompression: true, ReadBufferSize: 256 << 10, MaxIdleConnsPerHost: 2}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	buf := make([]byte, 1<<20)

	// The warm-up GET makes the agent fetch the blob through its seeder;
	// its bytes are checked against the digest here too.
	start := time.Now()
	if _, err := hitGET(ctx, client, agentURL, layer.Size, layer.Digest, buf); err != nil {
		return fmt.Errorf("bench hit: warm-up through the agent: %w", err)
	}
	fmt.Fprintf(stdout, "bench: hit warm-up (cold fetch through the agent, digest verified) %.2fs\n", time.Since(start).Seconds())

	var proxy, registry []hitGet
	for i := range o.rounds {
		// Alternate which goes first, so that neither always runs on
		// the page cache and CPU state the other left behind.
		order := []string{agentURL, originURL}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, u := range order {
			meter := startCPU()
			g, err := hitGET(ctx, client, u, layer.Size, "", buf)
			if err != nil {
				return fmt.Errorf("bench hit: round %d: %w", i+1, err)
			}
			g.busy = meter.busy()
			if u == agentURL {
				proxy = append(proxy, g)
			} else {
				registry = append(registry, g)
			}
		}
		fmt.Fprintf(stdout, "bench: hit round %d proxy_mib_s=%.1f registry_mib_s=%.1f proxy_ttfb_ms=%.3f registry_ttfb_ms=%.3f\n",
			i+1, hitRate(layer.Size, proxy[i].elapsed), hitRate(layer.Size, registry[i].elapsed),
			millis(proxy[i].ttfb), millis(registry[i].ttfb))
	}
	if n := c.Origin.BlobGETs(layer.Digest); n != 1+o.rounds {
		// The seeder fetched it once, the rounds once each.
		return fmt.Errorf("bench hit: origin served the blob %d times, want %d: the proxy did not serve from its cache", n, 1+o.rounds)
	}
	pm, rm := hitMedian(proxy, o.size), hitMedian(registry, o.size)
	ttfb := medianDuration(proxy, func(g hitGet) time.Duration { return g.ttfb })
	fmt.Fprintf(stdout, "bench: hit size=%d rounds=%d median of rounds; best proxy_mib_s=%.1f registry_mib_s=%.1f\n",
		o.size, o.rounds, hitBest(proxy, o.size), hitBest(registry, o.size))
	busy := column(proxy, func(g hitGet) float64 { return g.busy })
	fmt.Fprintf(stdout, "bench: hit proxy_mib_s=%.1f registry_mib_s=%.1f ratio=%.3f ttfb_ms=%.3f cpu_busy=%.2f\n", pm, rm, pm/rm, millis(ttfb), median(busy))
	return nil
}

// hitGET GETs u, reads the whole body and checks its length (and its digest
// unless want is empty).
func hitGET(ctx context.Context, client *http.Client, u string, size int64, want digest.Digest, buf []byte) (hitGet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return hitGet{}, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return hitGet{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return hitGet{}, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var g hitGet
	var w io.Writer = discardOnly{}
	var v digest.Verifier
	if want != "" {
		v = want.Verifier()
		w = v
	}
	var n int64
	for {
		k, rerr := resp.Body.Read(buf)
		if k > 0 {
			if n == 0 {
				g.ttfb = time.Since(start)
			}
			n += int64(k)
			if _, err := w.Write(buf[:k]); err != nil {
				return hitGet{}, err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return hitGet{}, fmt.Errorf("GET %s: after %d bytes: %w", u, n, rerr)
		}
	}
	g.elapsed = time.Since(start)
	if n != size {
		return hitGet{}, fmt.Errorf("GET %s: %d bytes, want %d", u, n, size)
	}
	if v != nil && !v.Verified() {
		return hitGet{}, fmt.Errorf("GET %s: body does not match %s", u, want)
	}
	return g, nil
}

// discardOnly drops what is written to it. Unlike io.Discard it has no
// ReadFrom, so that both sides of the benchmark are read the same way.
type discardOnly struct{}

func (discardOnly) Write(p []byte) (int, error) { return len(p), nil }

func hitRate(size int64, d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }

func hitMedian(gs []hitGet, size int64) float64 {
	return hitRate(size, medianDuration(gs, func(g hitGet) time.Duration { return g.elapsed }))
}

func hitBest(gs []hitGet, size int64) float64 {
	return hitRate(size, slices.MinFunc(gs, func(a, b hitGet) int { return cmp.Compare(a.elapsed, b.elapsed) }).elapsed)
}

// medianDuration returns the median of f over gs (the lower middle for an
// even count).
func medianDuration(gs []hitGet, f func(hitGet) time.Duration) time.Duration {
	ds := make([]time.Duration, len(gs))
	for i, g := range gs {
		ds[i] = f(g)
	}
	slices.Sort(ds)
	return ds[(len(ds)-1)/2]
}
