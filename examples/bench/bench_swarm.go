package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/redisstore"
	"github.com/eagle-p2p/eagle/tracker/redisstore/redistest"
)

// swarmOptions are the flags of "bench swarm".
type swarmOptions struct {
	nodes, seeders int
	// runs is how many times the measurement repeats, each on a fresh
	// cluster and blob; the last line gives the medians.
	runs      int
	size      storage.Size
	cap       p2p.Rate
	seederCap p2p.Rate
	out       string
	announce  time.Duration
	verbose   bool
	central   bool
	// disableDirect turns the agents' direct transfers off.
	disableDirect bool
	// cutThrough has the seeders stream the cold blob to one agent
	// (seeder.stream_fanout: 1, the product's default). Off unless asked
	// for, so that the swarm's figures stay comparable with those measured
	// before it was the default: the benchmark measures the swarm, and
	// bench cold the cold path.
	cutThrough bool
	// relay has the seeders chain the agents after the streamed one.
	relay      bool
	cpuProfile string
	// insecure runs the cluster's internal planes (seeder gRPC, peer wire,
	// tracker) without mutual TLS, for comparison with the default.
	insecure bool
	// trackerStore is the tracker's peer store, memory or redis; redisAddr
	// the Redis of the redis store, a private redis-server when empty.
	trackerStore, redisAddr string
	// peerStore makes the tracker's store: nil for the memory store.
	peerStore func(tracker.StoreConfig) (tracker.PeerStore, error)
	// eagleBin is the node binary (examples/eagle) that the -netns mode
	// runs as "eagle agent" in every namespace.
	eagleBin string
}

func runBenchSwarm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The in-process defaults fit a 2-core machine: 8 agents and 3 seeders
	// at 8 MiB/s each, over mutual TLS, leave the cores half idle (the
	// last line's cpu_busy says so), so the figure is the swarm's and not
	// the CPU's. At 32 MiB/s the same swarm is CPU-bound.
	o := swarmOptions{size: 64 << 20, cap: 8 << 20}
	fs := flag.NewFlagSet("bench swarm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	netns := fs.Bool("netns", false, "run every agent as its own \"eagle agent\" process in its own network namespace, capped by tc tbf (root only; defaults -size 32MiB)")
	fs.IntVar(&o.nodes, "nodes", 8, "number of agents pulling the blob at once (N)")
	fs.IntVar(&o.seeders, "seeders", 3, "number of seeders (S)")
	fs.IntVar(&o.runs, "runs", 1, "repeat the measurement this many times, each on a fresh cluster and blob, and report the median and the range")
	fs.Var(&o.size, "size", "blob size (L), e.g. 256MiB")
	fs.Var(&o.cap, "cap", "upload and download cap of every host (C), e.g. 32MiB/s")
	fs.Var(&o.seederCap, "seeder-cap", "upload cap of the seeders (default, or 0: the same as -cap)")
	fs.StringVar(&o.out, "out", ".", "directory for bench-swarm.csv and bench-swarm.svg (each run overwrites them)")
	fs.DurationVar(&o.announce, "announce", 2*time.Second, "tracker announce interval")
	fs.BoolVar(&o.verbose, "v", false, "log every component to stderr")
	fs.BoolVar(&o.disableDirect, "disable-direct", false, "turn the agents' direct transfers off (p2p.disable_direct): every byte over the BitTorrent peer wire")
	fs.BoolVar(&o.cutThrough, "cut-through", false, "have the seeders stream the cold blob to the first agent as the origin sends it (seeder.stream_fanout: 1, the product's default; without it this benchmark sets -1, store-and-forward, and measures the swarm alone)")
	fs.BoolVar(&o.relay, "relay", false, "with -cut-through, have the seeders chain the agents that ask after the streamed one, each relaying to the next (seeder.stream_relay)")
	fs.BoolVar(&o.central, "central", true, "also measure the central cache (false: central_s=0, for quick tuning runs)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the Eagle pull to this file")
	fs.BoolVar(&o.insecure, "insecure", false, "run the internal planes (seeder gRPC, peer wire, tracker) in plaintext instead of mutual TLS from the cluster's own CA")
	fs.StringVar(&o.trackerStore, "tracker-store", tracker.StoreMemory, "the tracker's peer store: memory or redis")
	fs.StringVar(&o.redisAddr, "redis-addr", "", "Redis host:port for -tracker-store redis (default: a private redis-server on 127.0.0.1)")
	fs.StringVar(&o.eagleBin, "eagle", "", "with -netns, the eagle binary the agents run (default: built from "+eaglePackage+" with the go command)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./examples/bench swarm [flags]\n\nStarts in this process an origin, a tracker, S seeders and N agents on\n"+
			"127.0.0.1, every seeder and agent capped at C up and down by Eagle's own\n"+
			"host-wide limits; pushes one cold blob of L bytes; all N agents GET it at\n"+
			"once through their registry endpoint. Then the same N clients GET it at\n"+
			"once through a central pull-through cache (distribution/v3 proxy mode)\n"+
			"whose uplink is capped at C. Writes a CSV and an SVG chart of per-node\n"+
			"completion times.\n\n"+
			"The cluster makes its own CA and every seeder, agent and the tracker is a\n"+
			"member: the seeders' gRPC, the peer wire and the announces run over mutual\n"+
			"TLS, as in production, unless -insecure.\n\n"+
			"With -netns every agent is a separate \"eagle agent\" process (the node\n"+
			"binary, -eagle, built from examples/eagle unless given) in its own\n"+
			"network namespace (eaglebench-<pid>-<i>), joined to a bridge by a veth\n"+
			"pair whose both directions are capped at C by tc tbf; Eagle's own limits\n"+
			"are off in the agents. The origin, tracker and seeders run in this process\n"+
			"on the bridge address "+netnsBridgeAddr+"; each node's HTTP client runs inside\n"+
			"its namespace. Needs root, ip and tc.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if *netns {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["size"] {
			o.size = 32 << 20
		}
	}
	maxNodes := math.MaxInt
	if *netns {
		maxNodes = netnsMaxNodes
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "bench swarm: unexpected arguments %q\n", fs.Args())
		return errUsage
	case o.nodes < 1 || o.nodes > maxNodes || o.seeders < 1:
		fmt.Fprintf(stderr, "bench swarm: -nodes must be 1 to %d and -seeders at least 1\n", maxNodes)
		return errUsage
	case o.size < 1:
		fmt.Fprintln(stderr, "bench swarm: -size must be positive")
		return errUsage
	case o.runs < 1:
		fmt.Fprintln(stderr, "bench swarm: -runs must be at least 1")
		return errUsage
	case o.cap <= 0:
		fmt.Fprintln(stderr, "bench swarm: -cap must be a positive rate: the floor L/C needs one")
		return errUsage
	case o.announce < time.Second:
		fmt.Fprintln(stderr, "bench swarm: -announce must be at least 1s")
		return errUsage
	case o.trackerStore != tracker.StoreMemory && o.trackerStore != tracker.StoreRedis:
		fmt.Fprintln(stderr, "bench swarm: -tracker-store must be memory or redis")
		return errUsage
	case o.redisAddr != "" && o.trackerStore != tracker.StoreRedis:
		fmt.Fprintln(stderr, "bench swarm: -redis-addr goes with -tracker-store redis")
		return errUsage
	case o.eagleBin != "" && !*netns:
		fmt.Fprintln(stderr, "bench swarm: -eagle goes with -netns")
		return errUsage
	}
	if *netns {
		if err := checkNetnsHost(); err != nil {
			return err
		}
		// Before the timeout starts: a cold build can take a while.
		bin, cleanup, err := eagleBinary(ctx, o.eagleBin, stderr)
		if err != nil {
			return err
		}
		defer cleanup()
		o.eagleBin = bin
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("bench swarm: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if o.trackerStore == tracker.StoreRedis {
		stop, err := benchRedisStore(ctx, &o, stdout)
		if err != nil {
			return fmt.Errorf("bench swarm: %w", err)
		}
		defer stop()
	}
	if *netns {
	}
	figs := make([]swarmFigures, o.runs)
	for k := range figs {
		if o.runs > 1 {
			fmt.Fprintf(stdout, "run %d of %d\n", k+1, o.runs)
		}
		var err error
		if *netns {
			figs[k], err = benchSwarmNetns(ctx, o, stdout, stderr)
		} else {
			figs[k], err = benchSwarm(ctx, o, stdout, stderr)
		}
		if err != nil {
			return err
		}
	}
	printSwarmLine(stdout, o, figs)
	return nil
}

// benchRedisStore sets o.peerStore to make Redis stores on o.redisAddr, or
// on a redis-server of its own that stop stops, under a key prefix of
// their own, so that runs sharing a Redis do not meet.
func benchRedisStore(ctx context.Context, o *swarmOptions, stdout io.Writer) (stop func(), err error) {
	stop = func() {}
	addr, what := o.redisAddr, "given"
	if addr == "" {
		dir, err := os.MkdirTemp("", "eagle-bench-redis-")
		if err != nil {
			return nil, err
		}
		srv, err := redistest.Start(ctx, redistest.Options{Dir: dir})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		stop = func() {
			srv.Close()
			os.RemoveAll(dir)
		}
		addr, what = srv.Addr, "private redis-server"
	}
	prefix := fmt.Sprintf("eaglebench:%d:%d:", os.Getpid(), time.Now().UnixNano())
	o.peerStore = func(sc tracker.StoreConfig) (tracker.PeerStore, error) {
		return redisstore.New(ctx, tracker.RedisConfig{Addr: addr, KeyPrefix: prefix}, sc)
	}
	fmt.Fprintf(stdout, "bench swarm: tracker_store=redis redis=%s (%s) key_prefix=%s\n", addr, what, prefix)
	return stop, nil
}

// swarmResult is what one run measured.
type swarmResult struct {
	eagle, central []float64 // per-node completion, seconds from the common start
	originBytes    int64     // origin blob bytes during the Eagle pull
	centralOrigin  int64     // origin blob bytes during the central pull
	seederUpload   int64
	fromSeeders    int64
	fromAgents     int64
	agentUpload    int64
	peakRSS        int64   // whole process, during the Eagle pull
	cpuBusy        float64 // fraction of the machine's cores busy during the Eagle pull
}

func benchSwarm(ctx context.Context, o swarmOptions, stdout, stderr io.Writer) (swarmFigures, error) {
	log := slog.New(slog.DiscardHandler)
	if o.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	L, C := int64(o.size), float64(o.cap)
	floor := float64(L) / C
	fmt.Fprintf(stdout, "bench swarm: nodes=%d seeders=%d size=%s cap=%s seeder_cap=%s floor=%.2fs tls=%t cut_through=%t relay=%t\n", o.nodes, o.seeders, o.size, o.cap, cmp.Or(o.seederCap, o.cap), floor, !o.insecure, o.cutThrough || o.relay, o.relay)
	c, err := cluster.Start(ctx, cluster.Options{
		Seeders: o.seeders, Agents: o.nodes, AnnounceInterval: o.announce, Logger: log,
		UploadLimit: o.cap, DownloadLimit: o.cap, SeederUploadLimit: o.seederCap,
		Insecure: o.insecure, PeerStore: o.peerStore, DisableDirect: o.disableDirect,
		SeederConfig: seeder.Config{StreamFanout: streamFanout(!o.cutThrough && !o.relay), StreamRelay: o.relay},
	})
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm: start cluster: %w", err)
	}
	defer c.Close()
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "bench/swarm", "latest", []int64{L}, time.Now().UnixNano())
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm: push: %w", err)
	}
	layer := img.Layers[0]
	path := "/v2/" + img.Repository + "/blobs/" + layer.Digest.String()

	var r swarmResult
	c.Origin.ResetCounts()
	resetPeakRSS()
	urls := make([]string, len(c.Agents))
	for i, a := range c.Agents {
		urls[i] = a.URL + path
	}
	stopProfile := func() {}
	if o.cpuProfile != "" {
		if stopProfile, err = startCPUProfile(o.cpuProfile); err != nil {
			return swarmFigures{}, fmt.Errorf("bench swarm: %w", err)
		}
	}
	stopTrace := func() {}
	if o.verbose {
		stopTrace = traceSwarm(stderr, clusterProbe(c), L, int64(o.cap), 100*time.Millisecond)
	}
	meter := startCPU()
	r.eagle, err = pullAll(ctx, urls, layer.Digest, L)
	r.cpuBusy = meter.busy()
	stopTrace()
	stopProfile()
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm: eagle pull: %w", err)
	}
	if r.peakRSS, err = peakRSS(); err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm: %w", err)
	}
	r.originBytes = c.Origin.BlobBytes()
	for _, s := range c.Seeders {
		r.seederUpload += s.Uploaded()
	}
	for _, a := range c.Agents {
		st := a.Node.Engine.Stats()
		r.fromSeeders += st.BytesFromSeeders
		r.fromAgents += st.BytesFromAgents
		r.agentUpload += st.BytesUploaded
	}
	// The agents would only idle from here on; stop them so that the
	// central run has the machine to itself.
	for _, a := range c.Agents {
		if err := a.Close(); err != nil {
			return swarmFigures{}, fmt.Errorf("bench swarm: stop %s: %w", a.Name, err)
		}
	}

	c.Origin.ResetCounts()
	if !o.central {
		r.central = make([]float64, o.nodes)
	} else if r.central, err = benchCentral(ctx, c.Origin.URL, path, layer.Digest, L, o.nodes, o.cap); err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm: central cache: %w", err)
	}
	r.centralOrigin = c.Origin.BlobBytes()

	csvPath, chartPath, err := writeSwarmOutputs(o.out, r.eagle, r.central, floor)
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm: %w", err)
	}
	return reportSwarm(stdout, o, r, floor, csvPath, chartPath), nil
}

func reportSwarm(w io.Writer, o swarmOptions, r swarmResult, floor float64, csvPath, chartPath string) swarmFigures {
	L := float64(o.size)
	slowest, p50, p90 := percentile(r.eagle, 100), percentile(r.eagle, 50), percentile(r.eagle, 90)
	central := percentile(r.central, 100)
	fmt.Fprintf(w, "eagle:   slowest=%.2fs p50=%.2fs p90=%.2fs fastest=%.2fs\n", slowest, p50, p90, percentile(r.eagle, 0))
	fmt.Fprintf(w, "central: slowest=%.2fs p50=%.2fs expected≈N·L/C=%.2fs origin_copies=%.2f\n",
		central, percentile(r.central, 50), float64(o.nodes)*floor, float64(r.centralOrigin)/L)
	fmt.Fprintf(w, "bytes:   origin=%d (%.2f copies) seeder_upload=%d (%.2f copies) agents_from_seeders=%d agents_from_agents=%d agent_upload=%d\n",
		r.originBytes, float64(r.originBytes)/L, r.seederUpload, float64(r.seederUpload)/L, r.fromSeeders, r.fromAgents, r.agentUpload)
	rss := float64(r.peakRSS) / (1 << 20)
	fmt.Fprintf(w, "memory:  peak RSS of the whole process (origin, tracker, %d seeders, %d agents, %d clients) during the Eagle pull: %.0f MiB (%.1f MiB per host)\n",
		o.seeders, o.nodes, o.nodes, rss, rss/float64(o.nodes+o.seeders))
	fmt.Fprintf(w, "cpu:     %.2f of %d cores busy during the Eagle pull\n", r.cpuBusy, numCPU())
	fmt.Fprintf(w, "output:  %s %s\n", csvPath, chartPath)
	return swarmFigures{floor: floor, slowest: slowest, p50: p50, originCopies: float64(r.originBytes) / L, central: central, rssMiB: rss, cpuBusy: r.cpuBusy}
}

// swarmFigures are the figures of one run that the last line reports.
type swarmFigures struct {
	floor, slowest, p50, originCopies, central, rssMiB, cpuBusy float64
}

// printSwarmLine prints the benchmark's last line, "bench: swarm ...",
// from the median of each figure over the runs, after a line with each
// figure's median and range when there was more than one run. Its fields
// keep their names and order; new ones go at the end.
func printSwarmLine(w io.Writer, o swarmOptions, figs []swarmFigures) {
	slowest, p50 := column(figs, func(g swarmFigures) float64 { return g.slowest / g.floor }), column(figs, func(g swarmFigures) float64 { return g.p50 / g.floor })
	busy := column(figs, func(g swarmFigures) float64 { return g.cpuBusy })
	if len(figs) > 1 {
		fmt.Fprintf(w, "median of %d runs [range]: ratio_slowest=%s ratio_p50=%s cpu_busy=%s\n", len(figs), spread(slowest, "%.3f"), spread(p50, "%.3f"), spread(busy, "%.2f"))
	}
	m := func(f func(swarmFigures) float64) float64 { return median(column(figs, f)) }
	floor := figs[0].floor
	fmt.Fprintf(w, "bench: swarm nodes=%d size=%d cap=%d floor_s=%.3f slowest_s=%.3f p50_s=%.3f ratio_slowest=%.3f ratio_p50=%.3f origin_copies=%.2f central_s=%.3f rss_max_mib=%.1f tls=%t cpu_busy=%.2f runs=%d\n",
		o.nodes, int64(o.size), int64(o.cap), floor, m(func(g swarmFigures) float64 { return g.slowest }), m(func(g swarmFigures) float64 { return g.p50 }),
		median(slowest), median(p50), m(func(g swarmFigures) float64 { return g.originCopies }), m(func(g swarmFigures) float64 { return g.central }),
		m(func(g swarmFigures) float64 { return g.rssMiB }), !o.insecure, median(busy), len(figs))
}

// pullAll GETs every URL at once, each by its own client connection, reads
// each body through sha256 and returns each one's completion time in
// seconds from the common start. Any failure or wrong digest fails the run.
func pullAll(ctx context.Context, urls []string, want digest.Digest, size int64) ([]float64, error) {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	times := make([]float64, len(urls))
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	start := time.Now()
	for i, u := range urls {
		wg.Go(func() {
			if errs[i] = pullOne(ctx, client, u, want, size); errs[i] != nil {
				cancel() // one failure fails the run; do not wait for the rest
			}
			times[i] = time.Since(start).Seconds()
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
	}
	return times, nil
}

func pullOne(ctx context.Context, client *http.Client, url string, want digest.Digest, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: after %d bytes: %w", url, n, err)
	}
	if n != size {
		return fmt.Errorf("GET %s: got %d bytes, want %d", url, n, size)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != want {
		return fmt.Errorf("GET %s: digest %s, want %s", url, got, want)
	}
	return nil
}

// resetPeakRSS resets the kernel's peak RSS (VmHWM) of this process, so
// that peakRSS reports the peak from now on. Kernels without it keep the
// peak since start, which can only overstate.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}
