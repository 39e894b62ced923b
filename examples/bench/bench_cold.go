package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/proxy"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/seeder/preheat"
	"github.com/eagle-p2p/eagle/storage"
)

// coldOptions are the flags of "bench cold".
type coldOptions struct {
	nodes, seeders, runs int
	size                 storage.Size
	cap                  p2p.Rate
	insecure, verbose    bool
	disableCutThrough    bool
	relay                bool
}

// streamFanout is the seeders' stream_fanout for a benchmark: 1 (cut-through
// on, the product's default) unless it is off (-1).
func streamFanout(off bool) int {
	if off {
		return -1
	}
	return 1
}

func runBenchCold(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := coldOptions{size: 128 << 20, cap: 16 << 20}
	fs := flag.NewFlagSet("bench cold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.nodes, "nodes", 8, "agents pulling the blob at once in the swarm measurement (N)")
	fs.IntVar(&o.seeders, "seeders", 3, "number of seeders")
	fs.IntVar(&o.runs, "runs", 3, "repeat the measurement this many times and report the median and the range")
	fs.Var(&o.size, "size", "blob size (L), e.g. 128MiB")
	fs.Var(&o.cap, "cap", "the origin's uplink and every node's cap up and down (C), e.g. 16MiB/s")
	fs.BoolVar(&o.insecure, "insecure", false, "run the internal planes (seeder gRPC, peer wire, tracker) in plaintext instead of mutual TLS")
	fs.BoolVar(&o.disableCutThrough, "disable-cut-through", false, "make the agents wait for the seeder's whole origin fetch instead of taking the bytes as they arrive (seeder.stream_fanout: -1; by default the seeders stream to one agent, as the product's default seeder.stream_fanout: 1 does)")
	fs.BoolVar(&o.relay, "relay", false, "chain the agents that ask after the streamed one, each relaying to the next (seeder.stream_relay)")
	fs.BoolVar(&o.verbose, "v", false, "log every component to stderr")
	timeout := fs.Duration("timeout", 20*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./examples/bench cold [flags]\n\n"+
			"How much the cold path costs: the first pull of a blob no Eagle node\n"+
			"holds yet. Starts in this process an origin behind a relay that paces\n"+
			"its uplink at C (all connections together), a tracker, the seeders and\n"+
			"N agents, every seeder and agent capped at C up and down by Eagle's own\n"+
			"limits; the seeders reach the origin only through the relay. Each run\n"+
			"pushes fresh blobs and measures:\n\n"+
			"  direct     one client GETs the blob from the origin through the relay\n"+
			"             (about L/C);\n"+
			"  eagle_one  one agent GETs a second cold blob through Eagle;\n"+
			"  swarm      all N agents GET a third cold blob at once; the slowest.\n"+
			"  preheated  a fourth blob's image is preheated first (seeder/preheat,\n"+
			"             as a registry notification would); then all N agents GET\n"+
			"             it at once: the first wave's slowest with preheat.\n\n"+
			"ratio_one is eagle_one/direct; ratio_swarm is the slowest over L/C;\n"+
			"ratio_preheated the preheated wave's slowest over L/C (preheat_s, the\n"+
			"preheat itself, comes before the wave and is not counted in it).\n"+
			"cpu_busy is the fraction of the machine's cores busy, every process\n"+
			"counted, during the swarm pull.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "bench cold: unexpected arguments %q\n", fs.Args())
		return errUsage
	case o.nodes < 1 || o.seeders < 1:
		fmt.Fprintln(stderr, "bench cold: -nodes and -seeders must be at least 1")
		return errUsage
	case o.size < 1:
		fmt.Fprintln(stderr, "bench cold: -size must be positive")
		return errUsage
	case o.cap <= 0:
		fmt.Fprintln(stderr, "bench cold: -cap must be a positive rate")
		return errUsage
	case o.runs < 1:
		fmt.Fprintln(stderr, "bench cold: -runs must be at least 1")
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	return benchCold(ctx, o, stdout, stderr)
}

// coldRun is what one run of "bench cold" measured, in seconds.
type coldRun struct {
	direct, one, slowest, p50, busy float64
	originCopies                    float64 // during the swarm pull
	// The preheated wave: the preheat's time, the wave's slowest and
	// median, and the origin copies during the wave (0 when warm).
	preheat, preSlowest, preP50, preCopies float64
}

func benchCold(ctx context.Context, o coldOptions, stdout, stderr io.Writer) error {
	log := slog.New(slog.DiscardHandler)
	if o.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	L, C := int64(o.size), float64(o.cap)
	floor := float64(L) / C
	fmt.Fprintf(stdout, "bench cold: nodes=%d seeders=%d size=%s cap=%s floor=L/C=%.2fs runs=%d tls=%t cut_through=%t relay=%t\n", o.nodes, o.seeders, o.size, o.cap, floor, o.runs, !o.insecure, !o.disableCutThrough, o.relay)

	rl, err := newRelay("127.0.0.1:0", int64(o.cap))
	if err != nil {
		return fmt.Errorf("bench cold: relay: %w", err)
	}
	defer rl.Close()
	upstream := "http://" + rl.Addr()
	c, err := cluster.Start(ctx, cluster.Options{
		Seeders: o.seeders, Agents: o.nodes, Logger: log,
		UploadLimit: o.cap, DownloadLimit: o.cap, Insecure: o.insecure, DisableCutThrough: o.disableCutThrough,
		SeederConfig: seeder.Config{AllowedUpstreams: []string{rl.Addr()}, StreamFanout: streamFanout(o.disableCutThrough), StreamRelay: o.relay},
		ProxyConfig:  proxy.Config{DefaultUpstream: upstream},
	})
	if err != nil {
		return fmt.Errorf("bench cold: start cluster: %w", err)
	}
	defer c.Close()
	rl.setTarget(c.Origin.Host)

	// The preheat service, as an eagle seeder with a preheat: section runs
	// it: warming through the cluster's seeders.
	member, err := c.Member("bench-preheat")
	if err != nil {
		return fmt.Errorf("bench cold: %w", err)
	}
	creds, err := mtls.Load(member)
	if err != nil {
		return fmt.Errorf("bench cold: %w", err)
	}
	pc, err := seeder.NewClient(seeder.ClientConfig{Seeders: c.SeederAddrs(), Credentials: creds})
	if err != nil {
		return fmt.Errorf("bench cold: %w", err)
	}
	defer pc.Close()
	ph, err := preheat.New(preheat.Config{AllowedUpstreams: []string{rl.Addr()}, Registries: []preheat.Registry{{Host: rl.Addr(), PlainHTTP: true}}}, pc)
	if err != nil {
		return fmt.Errorf("bench cold: %w", err)
	}
	defer ph.Close()

	runs := make([]coldRun, o.runs)
	for k := range runs {
		if runs[k], err = coldOnce(ctx, c, ph, rl.Addr(), upstream, L, k); err != nil {
			return fmt.Errorf("bench cold: run %d: %w", k+1, err)
		}
		r := runs[k]
		fmt.Fprintf(stdout, "run %d:   direct=%.2fs eagle_one=%.2fs (ratio %.3f) swarm slowest=%.2fs p50=%.2fs (ratio %.3f) origin_copies=%.2f cpu_busy=%.2f | preheat=%.2fs, then swarm slowest=%.2fs p50=%.2fs (ratio %.3f) origin_copies=%.2f\n",
			k+1, r.direct, r.one, r.one/r.direct, r.slowest, r.p50, r.slowest/floor, r.originCopies, r.busy, r.preheat, r.preSlowest, r.preP50, r.preSlowest/floor, r.preCopies)
	}
	direct, one, slowest := column(runs, func(r coldRun) float64 { return r.direct }), column(runs, func(r coldRun) float64 { return r.one }), column(runs, func(r coldRun) float64 { return r.slowest })
	ratioOne, ratioSwarm := column(runs, func(r coldRun) float64 { return r.one / r.direct }), column(runs, func(r coldRun) float64 { return r.slowest / floor })
	busy, copies := column(runs, func(r coldRun) float64 { return r.busy }), column(runs, func(r coldRun) float64 { return r.originCopies })
	preheatS, preSlowest := column(runs, func(r coldRun) float64 { return r.preheat }), column(runs, func(r coldRun) float64 { return r.preSlowest })
	ratioPre, preCopies := column(runs, func(r coldRun) float64 { return r.preSlowest / floor }), column(runs, func(r coldRun) float64 { return r.preCopies })
	fmt.Fprintf(stdout, "median of %d runs [range]: direct=%ss eagle_one=%ss ratio_one=%s eagle_slowest=%ss ratio_swarm=%s cpu_busy=%s\n",
		o.runs, spread(direct, "%.2f"), spread(one, "%.2f"), spread(ratioOne, "%.3f"), spread(slowest, "%.2f"), spread(ratioSwarm, "%.3f"), spread(busy, "%.2f"))
	fmt.Fprintf(stdout, "first wave, slowest of %d [range]: without preheat=%ss (ratio %s)   with preheat=%ss (ratio %s, after a preheat of %ss)\n",
		o.nodes, spread(slowest, "%.2f"), spread(ratioSwarm, "%.3f"), spread(preSlowest, "%.2f"), spread(ratioPre, "%.3f"), spread(preheatS, "%.2f"))
	fmt.Fprintf(stdout, "bench: cold nodes=%d size=%d cap=%d direct_s=%.3f eagle_one_s=%.3f ratio_one=%.3f eagle_slowest_s=%.3f ratio_swarm=%.3f origin_copies=%.2f cpu_busy=%.2f runs=%d tls=%t cut_through=%t relay=%t preheat_s=%.3f preheated_slowest_s=%.3f ratio_preheated=%.3f preheated_origin_copies=%.2f\n",
		o.nodes, L, int64(o.cap), median(direct), median(one), median(ratioOne), median(slowest), median(ratioSwarm), median(copies), median(busy), o.runs, !o.insecure, !o.disableCutThrough, o.relay,
		median(preheatS), median(preSlowest), median(ratioPre), median(preCopies))
	return nil
}

// coldOnce is one run of "bench cold" on three fresh blobs, and a fourth
// in an image of its own that is preheated (through the relay at relayHost)
// before the wave.
func coldOnce(ctx context.Context, c *cluster.Cluster, ph *preheat.Service, relayHost, upstream string, L int64, k int) (coldRun, error) {
	var r coldRun
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "bench/cold", fmt.Sprintf("run%d", k), []int64{L, L, L}, time.Now().UnixNano())
	if err != nil {
		return r, fmt.Errorf("push: %w", err)
	}
	path := func(i int) string { return "/v2/" + img.Repository + "/blobs/" + img.Layers[i].Digest.String() }
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()

	start := time.Now()
	if err := pullOne(ctx, client, upstream+path(0), img.Layers[0].Digest, L); err != nil {
		return r, fmt.Errorf("direct: %w", err)
	}
	r.direct = time.Since(start).Seconds()

	start = time.Now()
	if err := pullOne(ctx, client, c.Agents[0].URL+path(1), img.Layers[1].Digest, L); err != nil {
		return r, fmt.Errorf("one agent: %w", err)
	}
	r.one = time.Since(start).Seconds()

	urls := make([]string, len(c.Agents))
	for i, a := range c.Agents {
		urls[i] = a.URL + path(2)
	}
	c.Origin.ResetCounts()
	meter := startCPU()
	times, err := pullAll(ctx, urls, img.Layers[2].Digest, L)
	if err != nil {
		return r, fmt.Errorf("swarm: %w", err)
	}
	r.busy = meter.busy()
	r.slowest, r.p50 = percentile(times, 100), percentile(times, 50)
	r.originCopies = float64(c.Origin.BlobBytes()) / float64(L)

	// The same wave on a blob preheated first.
	pimg, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "bench/cold-preheat", fmt.Sprintf("run%d", k), []int64{L}, time.Now().UnixNano())
	if err != nil {
		return r, fmt.Errorf("push: %w", err)
	}
	start = time.Now()
	job, err := ph.Preheat(preheat.Request{Image: relayHost + "/" + pimg.Repository + "@" + pimg.Manifest.Digest.String()})
	if err != nil {
		return r, fmt.Errorf("preheat: %w", err)
	}
	if job, err = ph.Wait(ctx, job.ID); err != nil {
		return r, fmt.Errorf("preheat: %w", err)
	}
	if job.State != preheat.StateDone {
		return r, fmt.Errorf("preheat: job %s: %s", job.State, job.Error)
	}
	r.preheat = time.Since(start).Seconds()
	for i, a := range c.Agents {
		urls[i] = a.URL + "/v2/" + pimg.Repository + "/blobs/" + pimg.Layers[0].Digest.String()
	}
	c.Origin.ResetCounts()
	times, err = pullAll(ctx, urls, pimg.Layers[0].Digest, L)
	if err != nil {
		return r, fmt.Errorf("preheated swarm: %w", err)
	}
	r.preSlowest, r.preP50 = percentile(times, 100), percentile(times, 50)
	r.preCopies = float64(c.Origin.BlobBytes()) / float64(L)
	return r, nil
}
