package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage"
)

// The netns mode's private network: a bridge in the root namespace holding
// netnsBridgeAddr, and agent i (0-based) at 10.213.<i+1>.2 in its own
// namespace. These addresses exist only on links the bench creates.
const (
	netnsSubnet     = "10.213.0.0/16"
	netnsBridgeAddr = "10.213.0.1"
	netnsMaxNodes   = 254
)

// checkNetnsHost refuses the netns mode where it cannot run.
func checkNetnsHost() error {
	if os.Geteuid() != 0 {
		return errors.New("bench swarm -netns: must run as root (it creates network namespaces, veths, a bridge and tc qdiscs)")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("bench swarm -netns: %s (iproute2) is required: %w", tool, err)
		}
	}
	return nil
}

// eaglePackage is the node binary's package, which the -netns mode's
// agents run.
const eaglePackage = "github.com/eagle-p2p/eagle/examples/eagle"

// eagleBinary returns the absolute path of the eagle binary the -netns
// agents run: path if given, else one built now from eaglePackage with the
// go command (from within this module), which cleanup removes.
func eagleBinary(ctx context.Context, path string, stderr io.Writer) (bin string, cleanup func(), err error) {
	if path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", nil, fmt.Errorf("bench swarm -netns: -eagle: %w", err)
		}
		if fi, err := os.Stat(abs); err != nil {
			return "", nil, fmt.Errorf("bench swarm -netns: -eagle: %w", err)
		} else if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return "", nil, fmt.Errorf("bench swarm -netns: -eagle: %s is not an executable file", abs)
		}
		return abs, func() {}, nil
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", nil, fmt.Errorf("bench swarm -netns: no go command to build the agents' binary; build it (go build -o eagle ./examples/eagle) and pass -eagle: %w", err)
	}
	dir, err := os.MkdirTemp("", "eagle-bench-bin-")
	if err != nil {
		return "", nil, fmt.Errorf("bench swarm -netns: %w", err)
	}
	bin = filepath.Join(dir, "eagle")
	fmt.Fprintf(stderr, "bench swarm -netns: building the agents' binary: go build -o %s %s\n", bin, eaglePackage)
	if out, err := exec.CommandContext(ctx, goCmd, "build", "-o", bin, eaglePackage).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("bench swarm -netns: go build %s (run from within the module, or pass -eagle): %w\n%s", eaglePackage, err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

func benchSwarmNetns(ctx context.Context, o swarmOptions, stdout, stderr io.Writer) (figs swarmFigures, err error) {
	// Each node's HTTP client is this binary's hidden "fetch".
	self, err := os.Executable()
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm -netns: own binary: %w", err)
	}
	log := slog.New(slog.DiscardHandler)
	if o.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	L, C := int64(o.size), float64(o.cap)
	floor := float64(L) / C
	fmt.Fprintf(stdout, "bench swarm -netns: nodes=%d seeders=%d size=%s cap=%s seeder_cap=%s floor=%.2fs tls=%t\n", o.nodes, o.seeders, o.size, o.cap, cmp.Or(o.seederCap, o.cap), floor, !o.insecure)

	dir, err := os.MkdirTemp("", "eagle-bench-netns-")
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm -netns: %w", err)
	}
	defer os.RemoveAll(dir)
	lab, err := newNetnsLab(ctx, o.nodes, o.cap)
	if lab != nil {
		defer func() {
			if cerr := lab.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
	}
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm -netns: %w", err)
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Dir: filepath.Join(dir, "cluster"), Seeders: o.seeders, AnnounceInterval: o.announce, Logger: log,
		UploadLimit: o.cap, DownloadLimit: o.cap, SeederUploadLimit: o.seederCap, ListenHost: netnsBridgeAddr,
		Insecure: o.insecure, PeerStore: o.peerStore,
		SeederConfig: seeder.Config{StreamFanout: streamFanout(!o.cutThrough && !o.relay), StreamRelay: o.relay},
	})
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm -netns: start cluster: %w", err)
	}
	defer c.Close()
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "bench/swarm", "latest", []int64{L}, time.Now().UnixNano())
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm -netns: push: %w", err)
	}
	layer := img.Layers[0]
	path := "/v2/" + img.Repository + "/blobs/" + layer.Digest.String()

	agents, err := startNetnsAgents(ctx, c, o.eagleBin, lab, o.nodes, dir, agentOptions{verbose: o.verbose, log: stderr, disableDirect: o.disableDirect})
	defer stopNetnsAgents(agents)
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm -netns: %w", err)
	}

	var r swarmResult
	c.Origin.ResetCounts()
	stopTrace := func() {}
	if o.verbose {
		urls := make([]string, len(agents))
		for i, a := range agents {
			urls[i] = a.url
		}
		// Each sample is an HTTP request to every agent: every 250 ms.
		stopTrace = traceSwarm(stderr, metricsProbe(ctx, c, urls), L, int64(o.cap), 250*time.Millisecond)
	}
	r.eagle, r.cpuBusy, err = fetchAllNetns(ctx, self, agentTargets(agents, path), layer.Digest, L)
	stopTrace()
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm -netns: eagle pull: %w", err)
	}
	rss := make([]int64, len(agents))
	for i, a := range agents {
		if rss[i], err = processPeakRSS(a.cmd.Process.Pid); err != nil {
			return swarmFigures{}, fmt.Errorf("bench swarm -netns: agent %d: %w", i, err)
		}
		r.peakRSS = max(r.peakRSS, rss[i])
	}
	r.originBytes = c.Origin.BlobBytes()
	for _, s := range c.Seeders {
		r.seederUpload += s.Uploaded()
	}
	for i, a := range agents {
		a.stop()
		agents[i] = nil
	}

	c.Origin.ResetCounts()
	if !o.central {
		r.central = make([]float64, o.nodes)
	} else if r.central, err = benchCentral(ctx, c.Origin.URL, path, layer.Digest, L, o.nodes, o.cap); err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm -netns: central cache: %w", err)
	}
	r.centralOrigin = c.Origin.BlobBytes()

	csvPath, chartPath, err := writeSwarmOutputs(o.out, r.eagle, r.central, floor)
	if err != nil {
		return swarmFigures{}, fmt.Errorf("bench swarm -netns: %w", err)
	}
	slowest, p50, p90 := percentile(r.eagle, 100), percentile(r.eagle, 50), percentile(r.eagle, 90)
	central := percentile(r.central, 100)
	rssMiB := float64(r.peakRSS) / (1 << 20)
	fmt.Fprintf(stdout, "eagle:   slowest=%.2fs p50=%.2fs p90=%.2fs fastest=%.2fs\n", slowest, p50, p90, percentile(r.eagle, 0))
	fmt.Fprintf(stdout, "central: slowest=%.2fs p50=%.2fs expected≈N·L/C=%.2fs origin_copies=%.2f (in this process, uplink paced at C)\n",
		central, percentile(r.central, 50), float64(o.nodes)*floor, float64(r.centralOrigin)/float64(L))
	fmt.Fprintf(stdout, "bytes:   origin=%d (%.2f copies) seeder_upload=%d (%.2f copies)\n",
		r.originBytes, float64(r.originBytes)/float64(L), r.seederUpload, float64(r.seederUpload)/float64(L))
	fmt.Fprintf(stdout, "memory:  peak RSS (VmHWM) per agent process, MiB:")
	for _, b := range rss {
		fmt.Fprintf(stdout, " %.1f", float64(b)/(1<<20))
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "output:  %s %s\n", csvPath, chartPath)
	fmt.Fprintf(stdout, "cpu:     %.2f of %d cores busy during the Eagle pull\n", r.cpuBusy, numCPU())
	return swarmFigures{floor: floor, slowest: slowest, p50: p50, originCopies: float64(r.originBytes) / float64(L), central: central, rssMiB: rssMiB, cpuBusy: r.cpuBusy}, nil
}

// netnsLab is the bench's private network: one bridge in the root
// namespace and, per node, a namespace joined to it by a veth pair whose
// both ends' egress is capped by tc tbf (not capped when the rate is 0).
type netnsLab struct {
	bridge     string
	namespaces []string
}

// newNetnsLab creates the bridge and n namespaces, every veth capped at
// capRate (uncapped when capRate is 0). On error the returned
// lab (if not nil) holds what was created, for Close to remove.
func newNetnsLab(ctx context.Context, n int, capRate p2p.Rate) (*netnsLab, error) {
	if out, err := runTool(ctx, "ip", "-o", "addr", "show", "to", netnsSubnet); err != nil {
		return nil, err
	} else if strings.TrimSpace(out) != "" {
		return nil, fmt.Errorf("%s is already in use (another bench -netns run, or leftovers):\n%s", netnsSubnet, out)
	}
	pid := os.Getpid()
	l := &netnsLab{bridge: fmt.Sprintf("eb%d", pid)}
	if _, err := runTool(ctx, "ip", "link", "add", l.bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	rate := strconv.FormatInt(int64(capRate)*8, 10) + "bit"
	// A burst of 20 ms at C, and never less than a 64 KiB GSO segment.
	burst := strconv.FormatInt(max(int64(capRate)/50, 64<<10), 10)
	steps := [][]string{
		{"ip", "addr", "add", netnsBridgeAddr + "/16", "dev", l.bridge},
		{"ip", "link", "set", l.bridge, "up"},
	}
	for _, s := range steps {
		if _, err := runTool(ctx, s[0], s[1:]...); err != nil {
			return l, err
		}
	}
	for i := range n {
		ns := fmt.Sprintf("eaglebench-%d-%d", pid, i)
		if _, err := runTool(ctx, "ip", "netns", "add", ns); err != nil {
			return l, err
		}
		l.namespaces = append(l.namespaces, ns)
		host, peer := fmt.Sprintf("eb%dh%d", pid, i), fmt.Sprintf("eb%dn%d", pid, i)
		tbf := []string{"root", "tbf", "rate", rate, "burst", burst, "latency", "50ms"}
		steps := [][]string{
			{"ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns},
			{"ip", "link", "set", host, "master", l.bridge},
			{"ip", "link", "set", host, "up"},
			{"ip", "-n", ns, "addr", "add", netnsAgentAddr(i) + "/16", "dev", peer},
			{"ip", "-n", ns, "link", "set", peer, "up"},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
		}
		if capRate > 0 {
			steps = append(steps,
				append([]string{"tc", "qdisc", "add", "dev", host}, tbf...),           // the node's download
				append([]string{"tc", "-n", ns, "qdisc", "add", "dev", peer}, tbf...), // the node's upload
			)
		}
		for _, s := range steps {
			if _, err := runTool(ctx, s[0], s[1:]...); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

// netnsAgentAddr is node i's address in its namespace.
func netnsAgentAddr(i int) string { return fmt.Sprintf("10.213.%d.2", i+1) }

// Close deletes the namespaces (and with them their veth pairs) and the
// bridge. It runs even when the bench's context has ended.
func (l *netnsLab) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, ns := range l.namespaces {
		if _, err := runTool(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := runTool(ctx, "ip", "link", "del", l.bridge); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// runTool runs an iproute2 command and returns its standard output; its
// error names the command and carries its output.
func runTool(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// netnsAgent is one "eagle agent" process in its namespace.
type netnsAgent struct {
	ns   string
	url  string
	cmd  *exec.Cmd
	done chan struct{} // closed when its log reader ends
	once sync.Once
}

// startNetnsAgents starts n agent processes, agent i in lab's namespace i
// with its files under dir/agent-<i>, each a member of c with credentials
// of its own (an insecure config when c runs without TLS). It returns the
// agents it started, also on error: stopNetnsAgents stops them.
func startNetnsAgents(ctx context.Context, c *cluster.Cluster, bin string, lab *netnsLab, n int, dir string, ao agentOptions) ([]*netnsAgent, error) {
	agents := make([]*netnsAgent, n)
	for i := range agents {
		name := fmt.Sprintf("agent-%d", i)
		membership, err := c.Member(name)
		if err != nil {
			return agents, err
		}
		if agents[i], err = startNetnsAgent(ctx, bin, lab.namespaces[i], netnsAgentAddr(i), i, filepath.Join(dir, name), c.SeederAddrs(), c.TrackerURL, c.Origin.URL, membership, ao); err != nil {
			return agents, err
		}
	}
	return agents, nil
}

// stopNetnsAgents stops every agent of agents not stopped yet (nil).
func stopNetnsAgents(agents []*netnsAgent) {
	for _, a := range agents {
		if a != nil {
			a.stop()
		}
	}
}

// agentOptions are the settings of a benchmark's agent processes.
type agentOptions struct {
	verbose bool      // copy their logs to log
	log     io.Writer // where verbose logs go
	// disableDirect turns their direct transfers off (p2p.disable_direct),
	// so that every byte moves over the BitTorrent peer wire.
	disableDirect bool
	// location is their p2p.location; empty leaves it out.
	location string
	// firstByteTimeout and stallTimeout are their
	// proxy.first_byte_timeout and proxy.stall_timeout; 0 leaves the
	// default.
	firstByteTimeout, stallTimeout time.Duration
}

// startNetnsAgent writes agent i's config under dir, starts it in the
// namespace ns, listening on addr, as the cluster member membership (its
// --tls-* flags) and waits until its registry endpoint listens.
func startNetnsAgent(ctx context.Context, bin, ns, addr string, i int, dir string, seeders []string, trackerURL, originURL string, membership mtls.Config, ao agentOptions) (*netnsAgent, error) {
	verbose, logw := ao.verbose, ao.log
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("agent %d: %w", i, err)
	}
	q := func(s string) string { return strconv.Quote(s) }
	seederList := make([]string, len(seeders))
	for j, s := range seeders {
		seederList[j] = q(s)
	}
	location := ""
	if ao.location != "" {
		location = "  location: " + q(ao.location) + "\n"
	}
	cfg := fmt.Sprintf("listen: %s\nlog_level: info\ndata_dir: %s\nseeders: [%s]\np2p:\n  listen_addr: %s\n  trackers: [%s]\n  disable_direct: %t\n%sproxy:\n  default_upstream: %s\n",
		q(addr+":5000"), q(filepath.Join(dir, "data")), strings.Join(seederList, ", "), q(addr+":6881"), q(trackerURL), ao.disableDirect, location, q(originURL))
	if ao.firstByteTimeout != 0 {
		cfg += "  first_byte_timeout: " + q(ao.firstByteTimeout.String()) + "\n"
	}
	if ao.stallTimeout != 0 {
		cfg += "  stall_timeout: " + q(ao.stallTimeout.String()) + "\n"
	}
	cfgPath := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("agent %d: %w", i, err)
	}
	args := []string{"netns", "exec", ns, bin, "agent", "--config", cfgPath}
	if membership.Insecure {
		args = append(args, "--tls-insecure")
	} else {
		// The certificates name localhost, not the namespace's address:
		// members check each other's chain to the cluster CA, not names.
		args = append(args, "--tls-ca", membership.CA, "--tls-cert", membership.Cert, "--tls-key", membership.Key)
	}
	cmd := exec.Command("ip", args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("agent %d: %w", i, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("agent %d: %w", i, err)
	}
	a := &netnsAgent{ns: ns, cmd: cmd, done: make(chan struct{})}
	listening := make(chan string, 1)
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if verbose {
				fmt.Fprintf(logw, "agent-%d: %s\n", i, sc.Bytes())
			}
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" && rec.Addr != "" {
				select {
				case listening <- rec.Addr:
				default:
				}
			}
		}
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case l := <-listening:
		a.url = "http://" + l
		return a, nil
	case <-a.done:
		a.stop()
		return nil, fmt.Errorf("agent %d exited before listening: %v", i, cmd.ProcessState)
	case <-t.C:
		a.stop()
		return nil, fmt.Errorf("agent %d did not listen within 30s", i)
	case <-ctx.Done():
		a.stop()
		return nil, fmt.Errorf("agent %d: %w", i, ctx.Err())
	}
}

// stop kills the agent and waits for it and its log reader.
func (a *netnsAgent) stop() {
	a.once.Do(func() {
		a.cmd.Process.Kill()
		<-a.done
		a.cmd.Wait()
	})
}

// fetchTarget is one "bench fetch" to run: in namespace ns, GET url,
// delay after the common start (its time still counts from that start).
type fetchTarget struct {
	ns, url string
	delay   time.Duration
}

// agentTargets is a fetch of path from each agent, in its own namespace.
func agentTargets(agents []*netnsAgent, path string) []fetchTarget {
	ts := make([]fetchTarget, len(agents))
	for i, a := range agents {
		ts[i] = fetchTarget{ns: a.ns, url: a.url + path}
	}
	return ts
}

// fetchAllNetns starts "bench fetch" (bin is this binary) for each target
// in its namespace, all told to begin at one common instant (plus their
// delay), and returns each one's completion time in seconds from that
// instant, and the fraction of the machine's cores busy from that instant
// until the last one completed.
func fetchAllNetns(ctx context.Context, bin string, targets []fetchTarget, want digest.Digest, size int64) (times []float64, cpuBusy float64, err error) {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Every client process starts first, then waits for the instant.
	start := time.Now().Add(time.Second + time.Duration(len(targets))*20*time.Millisecond)
	meter := make(chan cpuMeter, 1)
	go func() {
		time.Sleep(time.Until(start))
		meter <- startCPU()
	}()
	times = make([]float64, len(targets))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error // the failure that stopped the others
	)
	for i, tg := range targets {
		wg.Go(func() {
			out, err := runTool(ctx, "ip", "netns", "exec", tg.ns, bin, "fetch",
				"-start", strconv.FormatInt(start.Add(tg.delay).UnixNano(), 10), "-digest", want.String(), "-size", strconv.FormatInt(size, 10), tg.url)
			if err == nil {
				times[i], err = parseFetchOutput(out)
				times[i] += tg.delay.Seconds()
			}
			if err != nil {
				mu.Lock()
				if firstErr == nil && ctx.Err() == nil {
					firstErr = fmt.Errorf("%s: %w", tg.url, err)
				}
				mu.Unlock()
				cancel() // one failure fails the run; do not wait for the rest
			}
		})
	}
	wg.Wait()
	if err := parent.Err(); err != nil {
		return nil, 0, err
	}
	if firstErr != nil {
		return nil, 0, firstErr
	}
	return times, (<-meter).busy(), nil
}

// parseFetchOutput reads "fetch: seconds=<s>" from the last line of out.
func parseFetchOutput(out string) (float64, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	v, ok := strings.CutPrefix(lines[len(lines)-1], "fetch: seconds=")
	if !ok {
		return 0, fmt.Errorf("bench fetch: unexpected output %q", out)
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("bench fetch: %w", err)
	}
	return s, nil
}

// runBenchFetch is the hidden "bench fetch": it waits until -start,
// GETs the URL, checks size and digest and prints "fetch: seconds=<s>",
// the completion time from -start.
func runBenchFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench fetch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	startNs := fs.Int64("start", 0, "Unix time in nanoseconds at which to start the GET (0: now)")
	want := fs.String("digest", "", "expected digest of the body")
	var size storage.Size
	fs.Var(&size, "size", "expected size of the body")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: bench fetch -digest D -size N [-start UNIXNANO] URL")
		return errUsage
	}
	d, err := digest.Parse(*want)
	if err != nil {
		fmt.Fprintf(stderr, "bench fetch: -digest: %v\n", err)
		return errUsage
	}
	if size < 1 {
		fmt.Fprintln(stderr, "bench fetch: -size must be positive")
		return errUsage
	}
	start := time.Now()
	if *startNs != 0 {
		start = time.Unix(0, *startNs)
		t := time.NewTimer(time.Until(start))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("bench fetch: %w", ctx.Err())
		}
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	if err := pullOne(ctx, &http.Client{Transport: tr}, fs.Arg(0), d, int64(size)); err != nil {
		return fmt.Errorf("bench fetch: %w", err)
	}
	fmt.Fprintf(stdout, "fetch: seconds=%.6f\n", time.Since(start).Seconds())
	return nil
}
