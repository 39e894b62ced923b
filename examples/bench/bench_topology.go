package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/tracker"
)

// topoOptions are the flags of "bench topology".
type topoOptions struct {
	dcs, perDC, seeders, runs int
	remote                    int // the topology policy's TopologyConfig.Remote
	size                      storage.Size
	cap, borderCap, seederCap p2p.Rate
	stagger, announce         time.Duration
	agentTimeout              time.Duration
	trace                     time.Duration // 0: no trace
	policies                  []string
	insecure, verbose         bool
	eagleBin                  string
}

// topoPolicies are the tracker policies "bench topology" compares, by the
// names the eagle binary's tracker YAML gives them.
var topoPolicies = map[string]func(o topoOptions) tracker.Policy{
	"random":       func(topoOptions) tracker.Policy { return tracker.RandomPolicy{} },
	"completeness": func(topoOptions) tracker.Policy { return tracker.CompletenessPolicy{} },
	// -remote border peers per datacenter (the product's default, 2),
	// each handed as many remote peers.
	"topology": func(o topoOptions) tracker.Policy {
		return tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: o.remote})
	},
}

// topoDefaultPolicies is the order of the side-by-side table.
var topoDefaultPolicies = []string{"random", "completeness", "topology"}

func runBenchTopology(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// 24 agent processes and 24 clients on 2 cores: at 4 MiB/s each the
	// swarm moves up to 96 MiB/s, which leaves cores to spare (cpu_busy
	// says how many); at 16 MiB/s the figures would measure the CPU.
	// A border of 8 MiB/s is a quarter of a datacenter's 8 agents' links
	// together and twice one agent's, as a datacenter's uplink is to its
	// hosts' NICs. Below one agent's link (3 MiB/s, the default until
	// 2026-12-07) the late datacenter's own floor, stagger+L/B, leaves no
	// room under staggered_ok's bound, 1.25×(stagger+L/C), for the headers
	// of one copy on the wire (docs/topology.md).
	o := topoOptions{size: 32 << 20, cap: 4 << 20, borderCap: 8 << 20}
	fs := flag.NewFlagSet("bench topology", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.dcs, "dcs", 3, "number of datacenters (K)")
	fs.IntVar(&o.perDC, "agents-per-dc", 8, "agents in each datacenter (M)")
	fs.IntVar(&o.seeders, "seeders", 2, "number of seeders, all in datacenter 0")
	fs.Var(&o.seederCap, "seeder-cap", "upload cap of each seeder (Eagle's own limit; default, or 0: the same as -cap)")
	fs.IntVar(&o.runs, "runs", 1, "repeat the measurements this many times, each with fresh blobs, and report the median and the range")
	fs.Var(&o.size, "size", "blob size (L)")
	fs.Var(&o.cap, "cap", "upload and download cap of every agent's link (C)")
	fs.Var(&o.borderCap, "border-cap", "cap of each datacenter's link to the router, each way (B); tighter than the datacenter's agents' links together (M·C)")
	fs.DurationVar(&o.stagger, "stagger", 5*time.Second, "how late the last datacenter starts in the staggered case")
	policies := fs.String("policies", strings.Join(topoDefaultPolicies, ","), "tracker policies to measure side by side, comma-separated")
	fs.IntVar(&o.remote, "remote", tracker.DefaultTopologyRemote, "the topology policy's border peers per datacenter (tracker.topology.remote)")
	fs.DurationVar(&o.announce, "announce", 2*time.Second, "tracker announce interval")
	fs.DurationVar(&o.agentTimeout, "agent-timeout", time.Minute, "the agents' proxy.first_byte_timeout and proxy.stall_timeout (0: the product's defaults, 5s and 15s, which can answer 503 or cut a pull behind a congested border, where a runtime would fall back to the origin)")
	fs.BoolVar(&o.insecure, "insecure", false, "run the internal planes (seeder gRPC, peer wire, tracker) in plaintext instead of mutual TLS")
	fs.BoolVar(&o.verbose, "v", false, "log every component to stderr")
	fs.DurationVar(&o.trace, "trace", 0, "print to stderr, this often during each pull, each datacenter's bytes in across its border, from its border peers' upstream peers and received by its agents, and the seeders' bytes sent, in copies of L (0: off; each sample reads every agent's /metrics, which costs CPU)")
	fs.StringVar(&o.eagleBin, "eagle", "", "the eagle binary the agents run (default: built from "+eaglePackage+" with the go command)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./examples/bench topology [flags]\n\n"+
			"How much each tracker policy makes cross datacenter borders, and how fast\n"+
			"every node still gets the blob. K datacenters are each a bridge with M\n"+
			"\"eagle agent\" processes in network namespaces on it (location\n"+
			"bench/dc<k>), each agent's veth capped at C both ways by tc tbf; one\n"+
			"router namespace joins the datacenters, each through a veth capped at B\n"+
			"both ways. This process (origin, tracker, seeders, location bench/dc0)\n"+
			"sits in datacenter 0 and reaches the others through the router.\n\n"+
			"For each policy the tracker restarts with it and all K·M agents GET one\n"+
			"fresh blob of L bytes at once; then, under topology, datacenters 0..K-2\n"+
			"start at once and datacenter K-1 -stagger later. Cross-datacenter bytes\n"+
			"are what the router forwarded (its interfaces' counters: every byte on\n"+
			"the wire, headers and the small tracker and gRPC traffic included).\n"+
			"Needs root, ip, tc and sysctl.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	for _, p := range strings.Split(*policies, ",") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(o.policies, p) {
			o.policies = append(o.policies, p)
		}
	}
	known := slices.Sorted(func(yield func(string) bool) {
		for name := range topoPolicies {
			if !yield(name) {
				return
			}
		}
	})
	bad := slices.DeleteFunc(slices.Clone(o.policies), func(p string) bool { return topoPolicies[p] != nil })
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "bench topology: unexpected arguments %q\n", fs.Args())
		return errUsage
	case o.dcs < 2 || o.dcs > topoMaxDCs || o.perDC < 1 || o.perDC > topoMaxPerDC:
		fmt.Fprintf(stderr, "bench topology: -dcs must be 2 to %d and -agents-per-dc 1 to %d\n", topoMaxDCs, topoMaxPerDC)
		return errUsage
	case o.seeders < 1 || o.runs < 1 || o.size < 1:
		fmt.Fprintln(stderr, "bench topology: -seeders, -runs and -size must be positive")
		return errUsage
	case o.cap <= 0 || o.borderCap <= 0 || o.seederCap < 0:
		fmt.Fprintln(stderr, "bench topology: -cap and -border-cap must be positive rates")
		return errUsage
	case o.stagger < 0 || o.announce < time.Second || o.agentTimeout < 0:
		fmt.Fprintln(stderr, "bench topology: -stagger and -agent-timeout must not be negative and -announce must be at least 1s")
		return errUsage
	case len(o.policies) == 0 || len(bad) > 0:
		fmt.Fprintf(stderr, "bench topology: -policies %q: want some of %s\n", *policies, strings.Join(known, ", "))
		return errUsage
	}
	if err := checkNetnsHost(); err != nil {
		return err
	}
	bin, cleanup, err := eagleBinary(ctx, o.eagleBin, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	o.eagleBin = bin
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	return benchTopology(ctx, o, stdout, stderr)
}

// topoMeasure is what one pull of one blob by every agent measured.
type topoMeasure struct {
	policy    string
	staggered bool
	// times are each agent's completion, seconds from the common start,
	// by datacenter.
	times [][]float64
	// cross is the bytes the router forwarded; in and out what it sent
	// into and received from each datacenter.
	cross   int64
	in, out []int64
	// dropped is the packets the border's qdisc dropped on their way
	// into each datacenter (each resent, and counted in in, once more).
	dropped []int64
	// fromSeeders and fromAgents are the piece bytes each datacenter's
	// agents received from the seeders and from other agents.
	fromSeeders, fromAgents []int64
	// wasted is the piece bytes each datacenter's agents received and did
	// not need (eagle_p2p_wasted_bytes_total).
	wasted []int64
	// upstream is the piece bytes each datacenter's agents received from
	// their upstream peers (eagle_p2p_upstream_bytes_total).
	upstream   []int64
	originGETs int
	// seederFetches is how many origin fetches each seeder ended.
	seederFetches []int
	originBytes   int64
	seederUpload  int64
	cpuBusy       float64
}

// all is every agent's completion time.
func (m topoMeasure) all() []float64 { return slices.Concat(m.times...) }

// topoRun is one run: one measurement per policy, then the staggered one.
type topoRun struct {
	byPolicy  map[string]topoMeasure
	staggered topoMeasure
}

func benchTopology(ctx context.Context, o topoOptions, stdout, stderr io.Writer) (err error) {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench topology: own binary: %w", err)
	}
	log := slog.New(slog.DiscardHandler)
	if o.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	L := float64(o.size)
	floor, borderFloor := L/float64(o.cap), L/float64(min(o.cap, o.borderCap))
	fmt.Fprintf(stdout, "bench topology: dcs=%d agents_per_dc=%d seeders=%d seeder_cap=%s size=%s cap=%s border_cap=%s stagger=%s floor=%.2fs border_floor=%.2fs policies=%s agent_timeout=%s tls=%t\n",
		o.dcs, o.perDC, o.seeders, cmp.Or(o.seederCap, o.cap), o.size, o.cap, o.borderCap, o.stagger, floor, borderFloor, strings.Join(o.policies, ","), o.agentTimeout, !o.insecure)

	dir, err := os.MkdirTemp("", "eagle-bench-topology-")
	if err != nil {
		return fmt.Errorf("bench topology: %w", err)
	}
	defer os.RemoveAll(dir)
	lab, err := newTopoLab(ctx, o.dcs, o.perDC, o.cap, o.borderCap)
	if lab != nil {
		defer func() {
			if cerr := lab.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
	}
	if err != nil {
		return fmt.Errorf("bench topology: %w", err)
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Dir: filepath.Join(dir, "cluster"), Seeders: o.seeders, AnnounceInterval: o.announce, Logger: log,
		UploadLimit: o.cap, DownloadLimit: o.cap, SeederUploadLimit: o.seederCap, ListenHost: topoRootAddr, Insecure: o.insecure,
		SeederLocation: topoLocation(0), TrackerPolicy: topoPolicies[o.policies[0]](o),
	})
	if err != nil {
		return fmt.Errorf("bench topology: start cluster: %w", err)
	}
	defer c.Close()
	agents, err := startTopoAgents(ctx, c, o.eagleBin, lab, dir, agentOptions{verbose: o.verbose, log: stderr, firstByteTimeout: o.agentTimeout, stallTimeout: o.agentTimeout})
	defer stopNetnsAgents(slices.Concat(agents...))
	if err != nil {
		return fmt.Errorf("bench topology: %w", err)
	}

	runs := make([]topoRun, o.runs)
	for k := range runs {
		if o.runs > 1 {
			fmt.Fprintf(stdout, "run %d of %d\n", k+1, o.runs)
		}
		runs[k].byPolicy = map[string]topoMeasure{}
		for _, p := range o.policies {
			m, err := measureTopology(ctx, stderr, o, c, lab, agents, self, p, 0)
			if err != nil {
				return fmt.Errorf("bench topology: run %d, %s: %w", k+1, p, err)
			}
			printTopoMeasure(stdout, o, m)
			runs[k].byPolicy[p] = m
		}
		late := "topology"
		if !slices.Contains(o.policies, late) {
			late = o.policies[len(o.policies)-1]
		}
		m, err := measureTopology(ctx, stderr, o, c, lab, agents, self, late, o.stagger)
		if err != nil {
			return fmt.Errorf("bench topology: run %d, %s staggered: %w", k+1, late, err)
		}
		printTopoMeasure(stdout, o, m)
		runs[k].staggered = m
	}
	printTopoSummary(stdout, o, runs)
	return nil
}

// topoLocation is the location of datacenter k's hosts.
func topoLocation(k int) string { return fmt.Sprintf("bench/dc%d", k) }

// startTopoAgents starts one agent process with options ao in each of the
// lab's agent namespaces, located in its datacenter. It returns the
// agents it started, also on error (nil where none started).
func startTopoAgents(ctx context.Context, c *cluster.Cluster, bin string, lab *topoLab, dir string, ao agentOptions) ([][]*netnsAgent, error) {
	agents := make([][]*netnsAgent, len(lab.agents))
	j := 0
	for k, nss := range lab.agents {
		agents[k] = make([]*netnsAgent, len(nss))
		for i, ns := range nss {
			name := fmt.Sprintf("agent-%d", j)
			membership, err := c.Member(name)
			if err != nil {
				return agents, err
			}
			ao.location = topoLocation(k)
			a, err := startNetnsAgent(ctx, bin, ns, topoAgentAddr(k, i), j, filepath.Join(dir, name), c.SeederAddrs(), c.TrackerURL, c.Origin.URL, membership, ao)
			if err != nil {
				return agents, fmt.Errorf("datacenter %d: %w", k, err)
			}
			agents[k][i] = a
			j++
		}
	}
	return agents, nil
}

// measureTopology restarts the tracker with policy, pushes a fresh blob
// and has every agent GET it, datacenter K-1 stagger after the others,
// and reads what crossed the router meanwhile; with -trace it prints a
// trace of the pull to stderr.
func measureTopology(ctx context.Context, stderr io.Writer, o topoOptions, c *cluster.Cluster, lab *topoLab, agents [][]*netnsAgent, self, policy string, stagger time.Duration) (topoMeasure, error) {
	m := topoMeasure{policy: policy, staggered: stagger > 0}
	if err := c.RestartTracker(topoPolicies[policy](o)); err != nil {
		return m, err
	}
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "bench/topology", policy, []int64{int64(o.size)}, time.Now().UnixNano())
	if err != nil {
		return m, fmt.Errorf("push: %w", err)
	}
	layer := img.Layers[0]
	path := "/v2/" + img.Repository + "/blobs/" + layer.Digest.String()
	var targets []fetchTarget
	for k, dc := range agents {
		for _, a := range dc {
			tg := fetchTarget{ns: a.ns, url: a.url + path}
			if k == len(agents)-1 {
				tg.delay = stagger
			}
			targets = append(targets, tg)
		}
	}
	// No dirty pages of the push left for the agents' writes to wait on.
	syscall.Sync()
	seedersBefore, fetchesBefore := seedersSent(c), seederFetches(c)
	recvBefore, err := scrapeReceived(ctx, agents)
	if err != nil {
		return m, err
	}
	before, err := lab.counters(ctx)
	if err != nil {
		return m, err
	}
	c.Origin.ResetCounts()
	var stopTrace func()
	if o.trace > 0 {
		stopTrace = traceTopology(ctx, stderr, o, c, lab, agents, policy, stagger, before, recvBefore, seedersBefore)
	}
	times, busy, err := fetchAllNetns(ctx, self, targets, layer.Digest, int64(o.size))
	if stopTrace != nil {
		stopTrace()
	}
	if err != nil {
		return m, fmt.Errorf("pull: %w", err)
	}
	after, err := lab.counters(ctx)
	if err != nil {
		return m, err
	}
	m.originGETs, m.originBytes = c.Origin.BlobGETs(layer.Digest), c.Origin.BlobBytes()
	m.seederUpload = seedersSent(c) - seedersBefore
	for i, n := range seederFetches(c) {
		m.seederFetches = append(m.seederFetches, n-fetchesBefore[i])
	}
	m.cpuBusy = busy
	m.cross = after.crossed(before)
	recvAfter, err := scrapeReceived(ctx, agents)
	if err != nil {
		return m, err
	}
	for k, dc := range agents {
		m.times = append(m.times, times[:len(dc)])
		times = times[len(dc):]
		m.in = append(m.in, after.tx[k]-before.tx[k])
		m.out = append(m.out, after.rx[k]-before.rx[k])
		m.dropped = append(m.dropped, after.drops[k]-before.drops[k])
		m.fromSeeders = append(m.fromSeeders, recvAfter[k].seeder-recvBefore[k].seeder)
		m.fromAgents = append(m.fromAgents, recvAfter[k].agent-recvBefore[k].agent)
		m.wasted = append(m.wasted, recvAfter[k].wasted-recvBefore[k].wasted)
		m.upstream = append(m.upstream, recvAfter[k].upstream-recvBefore[k].upstream)
	}
	return m, nil
}

// seederFetches is how many origin fetches each seeder has ended
// (eagle_seeder_origin_fetches_total, every result), -1 where unread.
func seederFetches(c *cluster.Cluster) []int {
	ns := make([]int, len(c.Seeders))
	for i, s := range c.Seeders {
		fams, err := s.Metrics.Gather()
		if err != nil {
			ns[i] = -1
			continue
		}
		for _, f := range fams {
			if f.GetName() == "eagle_seeder_origin_fetches_total" {
				for _, m := range f.GetMetric() {
					ns[i] += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return ns
}

// received is the piece bytes agents received, by the kind of peer, and
// the piece bytes they received and did not need.
type received struct{ seeder, agent, wasted, upstream int64 }

// scrapeReceived reads eagle_p2p_received_bytes_total of every agent from
// its /metrics, summed by datacenter.
func scrapeReceived(ctx context.Context, agents [][]*netnsAgent) ([]received, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	sums := make([]received, len(agents))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for k, dc := range agents {
		for _, a := range dc {
			wg.Go(func() {
				r, err := scrapeAgentReceived(ctx, client, a.url+"/metrics")
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if first == nil {
						first = err
					}
					return
				}
				sums[k].seeder += r.seeder
				sums[k].agent += r.agent
				sums[k].wasted += r.wasted
				sums[k].upstream += r.upstream
			})
		}
	}
	wg.Wait()
	return sums, first
}

// scrapeAgentReceived reads one agent's eagle_p2p_received_bytes_total by
// its from label.
func scrapeAgentReceived(ctx context.Context, client *http.Client, url string) (received, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return received{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return received{}, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return received{}, fmt.Errorf("metrics: GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return received{}, fmt.Errorf("metrics: %s: %w", url, err)
	}
	var r received
	f, ok := fams["eagle_p2p_received_bytes_total"]
	if !ok {
		return received{}, fmt.Errorf("metrics: %s: no eagle_p2p_received_bytes_total", url)
	}
	for _, mt := range f.GetMetric() {
		for _, lp := range mt.GetLabel() {
			if lp.GetName() != "from" {
				continue
			}
			switch lp.GetValue() {
			case "seeder":
				r.seeder += int64(mt.GetCounter().GetValue())
			case "agent":
				r.agent += int64(mt.GetCounter().GetValue())
			}
		}
	}
	if f, ok := fams["eagle_p2p_upstream_bytes_total"]; ok {
		for _, mt := range f.GetMetric() {
			r.upstream += int64(mt.GetCounter().GetValue())
		}
	}
	if f, ok := fams["eagle_p2p_wasted_bytes_total"]; ok {
		for _, mt := range f.GetMetric() {
			r.wasted += int64(mt.GetCounter().GetValue())
		}
	}
	return r, nil
}

// traceTopology prints, every o.trace until stop, what crossed each
// datacenter's border into it, what its agents took from upstream peers
// and received in all, and what the seeders sent since the pull began, in
// copies of L: where a datacenter's import stalls, and behind what.
func traceTopology(ctx context.Context, w io.Writer, o topoOptions, c *cluster.Cluster, lab *topoLab, agents [][]*netnsAgent, policy string, stagger time.Duration, before routerCounters, recvBefore []received, seedersBefore int64) (stop func()) {
	start := time.Now()
	name := policy
	if stagger > 0 {
		name += ",staggered"
	}
	copies := func(n int64) float64 { return float64(n) / float64(o.size) }
	return everyTick(o.trace, func() {}, func() {
		line := fmt.Sprintf("trace: policy=%s t=%.1fs", name, time.Since(start).Seconds())
		rc, err := lab.counters(ctx)
		var rs []received
		if err == nil {
			rs, err = scrapeReceived(ctx, agents)
		}
		if err != nil {
			// One sample lost; the measurement reads its counters at the end.
			fmt.Fprintf(w, "%s unread: %v\n", line, err)
			return
		}
		line += fmt.Sprintf(" seeders_sent=%.2f", copies(seedersSent(c)-seedersBefore))
		for k := range agents {
			got := rs[k].seeder + rs[k].agent - recvBefore[k].seeder - recvBefore[k].agent
			line += fmt.Sprintf(" dc%d_in=%.2f dc%d_upstream=%.2f dc%d_received=%.2f", k, copies(rc.tx[k]-before.tx[k]), k, copies(rs[k].upstream-recvBefore[k].upstream), k, copies(got))
		}
		fmt.Fprintln(w, line)
	})
}
