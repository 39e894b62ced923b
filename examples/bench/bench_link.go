package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/storage"
)

// linkOptions are the flags of "bench link".
type linkOptions struct {
	size     storage.Size
	peers    int
	runs     int
	insecure bool
	verbose  bool
	// disableDirect: see agentOptions.
	disableDirect bool
	eagleBin      string
}

func runBenchLink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := linkOptions{size: 1 << 30}
	fs := flag.NewFlagSet("bench link", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&o.size, "size", "blob size (L), e.g. 1GiB")
	fs.IntVar(&o.peers, "peers", 4, "warm agents the last pull of each run reads from (0: skip that pull)")
	fs.IntVar(&o.runs, "runs", 3, "repeat the measurement this many times and report the median and the range")
	fs.BoolVar(&o.insecure, "insecure", false, "run the internal planes (seeder gRPC, peer wire, tracker) in plaintext instead of mutual TLS")
	fs.BoolVar(&o.verbose, "v", false, "log every component to stderr")
	fs.BoolVar(&o.disableDirect, "disable-direct", false, "turn the agents' direct transfers off (p2p.disable_direct): every byte over the BitTorrent peer wire")
	fs.StringVar(&o.eagleBin, "eagle", "", "the eagle binary the agents run (default: built from "+eaglePackage+" with the go command)")
	timeout := fs.Duration("timeout", 20*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./examples/bench link [flags]\n\n"+
			"How fast one node pulls one blob over a link with no cap, against plain\n"+
			"HTTP over the same link. Agent 0 runs as an \"eagle agent\" process in\n"+
			"its own network namespace, joined by an uncapped veth pair to a bridge\n"+
			"where this process runs the origin, the tracker, one seeder and a plain\n"+
			"HTTP file server. Each run pushes fresh blobs and measures, from agent\n"+
			"0's namespace, with the same client (which checks size and digest):\n\n"+
			"  http    a GET of the blob from the file server (sendfile from the page\n"+
			"          cache), the link's own speed;\n"+
			"  eagle   a GET through agent 0 of the same blob, which the seeder holds\n"+
			"          (warmed beforehand) and no agent does;\n"+
			"  agents  a GET through agent 0 of a second blob that -peers other agents\n"+
			"          (each in its own namespace) pulled first; the seeder holds it\n"+
			"          too.\n\n"+
			"cpu_busy is the fraction of the machine's cores busy, every process\n"+
			"counted, during a pull; near 1 the figure is CPU-bound. Needs root, ip\n"+
			"and tc.")
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
		fmt.Fprintf(stderr, "bench link: unexpected arguments %q\n", fs.Args())
		return errUsage
	case o.size < 1:
		fmt.Fprintln(stderr, "bench link: -size must be positive")
		return errUsage
	case o.peers < 0 || o.peers > netnsMaxNodes-1:
		fmt.Fprintf(stderr, "bench link: -peers must be 0 to %d\n", netnsMaxNodes-1)
		return errUsage
	case o.runs < 1:
		fmt.Fprintln(stderr, "bench link: -runs must be at least 1")
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
	return benchLink(ctx, o, stdout, stderr)
}

// linkRun is what one run of "bench link" measured: throughputs in MiB/s
// and the fraction of the cores busy during each pull.
type linkRun struct {
	http, eagle, agents             float64
	httpBusy, eagleBusy, agentsBusy float64
}

func benchLink(ctx context.Context, o linkOptions, stdout, stderr io.Writer) (err error) {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench link: own binary: %w", err)
	}
	log := slog.New(slog.DiscardHandler)
	if o.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	L := int64(o.size)
	fmt.Fprintf(stdout, "bench link: size=%s peers=%d runs=%d tls=%t cores=%d (no cap on any link)\n", o.size, o.peers, o.runs, !o.insecure, numCPU())

	dir, err := os.MkdirTemp("", "eagle-bench-link-")
	if err != nil {
		return fmt.Errorf("bench link: %w", err)
	}
	defer os.RemoveAll(dir)
	lab, err := newNetnsLab(ctx, 1+o.peers, 0)
	if lab != nil {
		defer func() {
			if cerr := lab.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
	}
	if err != nil {
		return fmt.Errorf("bench link: %w", err)
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Dir: filepath.Join(dir, "cluster"), Seeders: 1, AnnounceInterval: 2 * time.Second, Logger: log,
		ListenHost: netnsBridgeAddr, Insecure: o.insecure,
	})
	if err != nil {
		return fmt.Errorf("bench link: start cluster: %w", err)
	}
	defer c.Close()

	// The plain HTTP server: the blob files under files/, served with
	// http.ServeContent (sendfile) on the bridge address.
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o755); err != nil {
		return fmt.Errorf("bench link: %w", err)
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(netnsBridgeAddr, "0"))
	if err != nil {
		return fmt.Errorf("bench link: %w", err)
	}
	fileSrv := &http.Server{Handler: http.FileServer(http.Dir(files)), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		fileSrv.Serve(lis)
	}()
	defer func() {
		fileSrv.Close()
		<-served
	}()
	fileURL := "http://" + lis.Addr().String()

	agents, err := startNetnsAgents(ctx, c, o.eagleBin, lab, 1+o.peers, dir, agentOptions{verbose: o.verbose, log: stderr, disableDirect: o.disableDirect})
	defer stopNetnsAgents(agents)
	if err != nil {
		return fmt.Errorf("bench link: %w", err)
	}

	runs := make([]linkRun, o.runs)
	for k := range runs {
		if runs[k], err = linkOnce(ctx, c, self, agents, files, fileURL, L, k); err != nil {
			return fmt.Errorf("bench link: run %d: %w", k+1, err)
		}
		r := runs[k]
		fmt.Fprintf(stdout, "run %d:   http=%.1f MiB/s (cpu_busy %.2f) eagle=%.1f MiB/s (cpu_busy %.2f, ratio %.3f)", k+1, r.http, r.httpBusy, r.eagle, r.eagleBusy, r.eagle/r.http)
		if o.peers > 0 {
			fmt.Fprintf(stdout, " agents=%.1f MiB/s (cpu_busy %.2f, ratio %.3f)", r.agents, r.agentsBusy, r.agents/r.http)
		}
		fmt.Fprintln(stdout)
	}
	httpS, eagleS := column(runs, func(r linkRun) float64 { return r.http }), column(runs, func(r linkRun) float64 { return r.eagle })
	ratios := column(runs, func(r linkRun) float64 { return r.eagle / r.http })
	busy := column(runs, func(r linkRun) float64 { return r.eagleBusy })
	fmt.Fprintf(stdout, "median of %d runs [range]: http=%s MiB/s eagle=%s MiB/s ratio=%s cpu_busy=%s\n",
		o.runs, spread(httpS, "%.1f"), spread(eagleS, "%.1f"), spread(ratios, "%.3f"), spread(busy, "%.2f"))
	agentsS, agentRatios, agentBusy := column(runs, func(r linkRun) float64 { return r.agents }), column(runs, func(r linkRun) float64 { return r.agents / r.http }), column(runs, func(r linkRun) float64 { return r.agentsBusy })
	if o.peers > 0 {
		fmt.Fprintf(stdout, "median of %d runs [range]: agents=%s MiB/s ratio_agents=%s cpu_busy=%s (from %d warm agents and the seeder)\n",
			o.runs, spread(agentsS, "%.1f"), spread(agentRatios, "%.3f"), spread(agentBusy, "%.2f"), o.peers)
	}
	fmt.Fprintf(stdout, "bench: link size=%d eagle_mib_s=%.1f http_mib_s=%.1f ratio=%.3f cpu_cores=%.2f agents_mib_s=%.1f ratio_agents=%.3f cpu_busy=%.2f runs=%d tls=%t\n",
		L, median(eagleS), median(httpS), median(ratios), cores(median(busy)), median(agentsS), median(agentRatios), median(busy), o.runs, !o.insecure)
	return nil
}

// linkOnce is one run of "bench link" on fresh blobs.
func linkOnce(ctx context.Context, c *cluster.Cluster, self string, agents []*netnsAgent, files, fileURL string, L int64, k int) (linkRun, error) {
	var r linkRun
	sizes := []int64{L}
	if len(agents) > 1 {
		sizes = append(sizes, L)
	}
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "bench/link", fmt.Sprintf("run%d", k), sizes, time.Now().UnixNano())
	if err != nil {
		return r, fmt.Errorf("push: %w", err)
	}
	blobPath := func(d digest.Digest) string { return "/v2/" + img.Repository + "/blobs/" + d.String() }
	// The file server's copy of the first blob, read from the origin.
	a := img.Layers[0].Digest
	if err := saveBlob(ctx, c.Origin.URL+blobPath(a), filepath.Join(files, a.Encoded()), a); err != nil {
		return r, err
	}
	defer os.Remove(filepath.Join(files, a.Encoded()))
	// Warm the seeder with every blob through an agent of this process,
	// then stop that agent: the seeder is then the only peer holding them.
	warm, err := c.AddAgent(ctx)
	if err != nil {
		return r, err
	}
	for _, l := range img.Layers {
		if err := pullOne(ctx, http.DefaultClient, warm.URL+blobPath(l.Digest), l.Digest, L); err != nil {
			warm.Close()
			return r, fmt.Errorf("warm the seeder: %w", err)
		}
	}
	if err := warm.Close(); err != nil {
		return r, err
	}
	mibs := func(t []float64) float64 { return float64(L) / (1 << 20) / t[0] }
	// Each pull starts with no dirty pages left by the set-up (the pushes,
	// the copies above): on a disk slower than the link, the kernel would
	// otherwise throttle the pull's writes for the set-up's.
	syscall.Sync()

	t, busy, err := fetchAllNetns(ctx, self, []fetchTarget{{ns: agents[0].ns, url: fileURL + "/" + a.Encoded()}}, a, L)
	if err != nil {
		return r, fmt.Errorf("http: %w", err)
	}
	r.http, r.httpBusy = mibs(t), busy
	syscall.Sync()
	if t, busy, err = fetchAllNetns(ctx, self, []fetchTarget{{ns: agents[0].ns, url: agents[0].url + blobPath(a)}}, a, L); err != nil {
		return r, fmt.Errorf("eagle: %w", err)
	}
	r.eagle, r.eagleBusy = mibs(t), busy
	if len(agents) == 1 {
		return r, nil
	}
	b := img.Layers[1].Digest
	if _, _, err := fetchAllNetns(ctx, self, agentTargets(agents[1:], blobPath(b)), b, L); err != nil {
		return r, fmt.Errorf("warm the agents: %w", err)
	}
	syscall.Sync()
	if t, busy, err = fetchAllNetns(ctx, self, []fetchTarget{{ns: agents[0].ns, url: agents[0].url + blobPath(b)}}, b, L); err != nil {
		return r, fmt.Errorf("eagle from agents: %w", err)
	}
	r.agents, r.agentsBusy = mibs(t), busy
	return r, nil
}

// saveBlob GETs url into the file path, checking the body against want.
func saveBlob(ctx context.Context, url, path string, want digest.Digest) (err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	v := want.Verifier()
	if _, err := io.Copy(io.MultiWriter(f, v), resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if !v.Verified() {
		return fmt.Errorf("GET %s: body does not match %s", url, want)
	}
	return nil
}

// median is the median of xs (the mean of the middle two for an even
// count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	lo, hi := percentile(xs, 50), percentile(xs, 100*float64(len(xs)/2+1)/float64(len(xs)))
	if len(xs)%2 == 1 {
		return lo
	}
	return (lo + hi) / 2
}

// spread formats the median of xs and, for more than one value, their
// range: "12.3 [11.0–13.1]".
func spread(xs []float64, format string) string {
	m := fmt.Sprintf(format, median(xs))
	if len(xs) < 2 {
		return m
	}
	var b strings.Builder
	b.WriteString(m)
	fmt.Fprintf(&b, " ["+format+"–"+format+"]", percentile(xs, 0), percentile(xs, 100))
	return b.String()
}
