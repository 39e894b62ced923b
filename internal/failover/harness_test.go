package failover

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/eagle-p2p/eagle/internal/netns"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
)

// The shape of every test: each agent's link is capped at linkRate each
// way and each seeder's upload at linkRate (its download from the origin
// is not capped: seeders sit near the registry), and the image under test
// is one layer of layerSize plus its config, so that a pull lasts about
// layerSize/linkRate = 3 s and a fault can land in the middle of it.
const (
	linkRate  = 16 << 20
	layerSize = 48 << 20
	numAgents = 6

	trackerPort       = 7080
	seederPort        = 7070
	seederMetricsPort = 7071
	peerPort          = 6881
	// agentListen is each agent's registry endpoint, on the loopback of
	// its own namespace (as on a node, where the runtime is local).
	agentListen = "127.0.0.1:5000"
)

// options shape a cluster.
type options struct {
	// trackers is the number of trackers (1 or 2), all on one Redis.
	trackers int
	// agents is the number of agents started with the cluster.
	agents int
	// agentProxy is extra YAML under each agent's "proxy:" key, one key a
	// line, unindented.
	agentProxy string
	// seederYAML is extra top-level YAML of each seeder's config file.
	seederYAML string
	// agentTrackers, when set, replaces the tracker URLs the agents are
	// given.
	agentTrackers []string
	// seederPeerUnroutable makes seeder i's peer wire listen on
	// unroutablePeerIP(i), an address on its namespace's loopback that no
	// other host has a route to, instead of its host's address: the
	// seeder runs, answers metainfo and hands out that address, and no
	// agent can connect to it.
	seederPeerUnroutable bool
}

// unroutablePeerIP is seeder i's peer address with seederPeerUnroutable:
// outside the lab's 10.234.0.0/16, where the hosts have no route.
func unroutablePeerIP(i int) string { return fmt.Sprintf("10.235.0.%d", i+1) }

// cluster is an Eagle cluster whose parts each run in a namespace of
// their own on one lab network, with the origin registry in this process
// on the lab's bridge.
type cluster struct {
	t    *testing.T
	bin  string
	dir  string
	lab  *netns.Lab
	ca   *mtls.CA
	opts options

	origin *origin.Registry

	redis    *proc
	trackers []*proc
	seeders  []*proc
	agents   []*agent

	trackerURLs []string
	seederAddrs []string // gRPC host:port, as the agents dial them

	// root is an HTTP client of the root namespace (seeders' metrics).
	root *http.Client
}

// newCluster starts Redis, the trackers, two seeders and the agents, each
// in its own namespace, and waits until each listens. Everything is
// stopped and removed when the test ends.
func newCluster(t *testing.T, opts options) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: eagleBinary(t), dir: t.TempDir(), opts: opts}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lab, err := netns.NewLab(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.lab = lab
	// Registered first, so that it runs last: after every process is gone.
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	c.root = &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(c.root.CloseIdleConnections)
	if c.ca, err = mtls.NewCA("eagle-failover", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	c.origin, err = origin.Start(ctx, origin.Options{Dir: filepath.Join(c.dir, "origin"), ListenHost: lab.BridgeAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.origin.Close(); err != nil {
			t.Errorf("close origin: %v", err)
		}
	})

	redisHost := c.addHost(ctx, "redis", 0, 0)
	trackerHosts := make([]*netns.Host, opts.trackers)
	for i := range trackerHosts {
		trackerHosts[i] = c.addHost(ctx, fmt.Sprintf("tracker-%d", i), 0, 0)
		c.trackerURLs = append(c.trackerURLs, fmt.Sprintf("https://%s:%d/announce", trackerHosts[i].Addr, trackerPort))
	}
	seederHosts := make([]*netns.Host, 2)
	for i := range seederHosts {
		seederHosts[i] = c.addHost(ctx, fmt.Sprintf("seeder-%d", i), 0, linkRate)
		c.seederAddrs = append(c.seederAddrs, net.JoinHostPort(seederHosts[i].Addr, strconv.Itoa(seederPort)))
	}
	agentHosts := make([]*netns.Host, opts.agents)
	for i := range agentHosts {
		agentHosts[i] = c.addHost(ctx, fmt.Sprintf("agent-%d", i), linkRate, linkRate)
	}

	// Redis, the trackers and the seeders start at once (the trackers
	// wait for Redis on their own); the agents once those listen, so that
	// no agent starts with its seeders marked down.
	redisAddr := net.JoinHostPort(redisHost.Addr, "6379")
	redisDir := filepath.Join(c.dir, "redis")
	if err := os.MkdirAll(redisDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.redis = c.start(redisHost, "redis", redisAddr, "redis-server", "--port", "6379", "--bind", redisHost.Addr,
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", redisDir)
	for i, h := range trackerHosts {
		c.trackers = append(c.trackers, c.startTracker(h, i, redisAddr))
	}
	for i, h := range seederHosts {
		c.seeders = append(c.seeders, c.startSeeder(h, i))
	}
	for _, p := range c.procs() {
		p.waitListening(ctx)
	}
	for i, h := range agentHosts {
		c.agents = append(c.agents, c.startAgent(h, fmt.Sprintf("agent-%d", i)))
	}
	for _, a := range c.agents {
		a.proc.waitListening(ctx)
	}
	return c
}

// procs returns every process of the cluster.
func (c *cluster) procs() []*proc {
	ps := append([]*proc{c.redis}, c.trackers...)
	ps = append(ps, c.seeders...)
	for _, a := range c.agents {
		ps = append(ps, a.proc)
	}
	return ps
}

// addHost adds a host to the lab, its link capped at down and up bytes
// per second (0: uncapped).
func (c *cluster) addHost(ctx context.Context, name string, down, up int64) *netns.Host {
	c.t.Helper()
	h, err := c.lab.AddHost(ctx, name)
	if err != nil {
		c.t.Fatal(err)
	}
	if down > 0 || up > 0 {
		if err := h.Cap(ctx, down, up); err != nil {
			c.t.Fatal(err)
		}
	}
	return h
}

// member writes the cluster certificate of name and returns the flags
// that make a part use it.
func (c *cluster) member(name string) []string {
	c.t.Helper()
	m, err := c.ca.WriteMember(filepath.Join(c.dir, "tls"), name)
	if err != nil {
		c.t.Fatal(err)
	}
	return []string{"--tls-ca", m.CA, "--tls-cert", m.Cert, "--tls-key", m.Key}
}

// startTracker starts tracker i on h with the Redis peer store.
func (c *cluster) startTracker(h *netns.Host, i int, redisAddr string) *proc {
	name := fmt.Sprintf("tracker-%d", i)
	listen := net.JoinHostPort(h.Addr, strconv.Itoa(trackerPort))
	args := append([]string{"tracker", "--listen", listen, "--store", "redis", "--redis-addr", redisAddr}, c.member(name)...)
	return c.start(h, name, listen, c.bin, args...)
}

// startSeeder starts seeder i on h, announcing to every tracker and
// allowed to fetch from the origin.
func (c *cluster) startSeeder(h *netns.Host, i int) *proc {
	c.t.Helper()
	name := fmt.Sprintf("seeder-%d", i)
	dir := filepath.Join(c.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	cfg := filepath.Join(dir, "seeder.yaml")
	if err := os.WriteFile(cfg, []byte("log_level: "+logLevel()+"\n"+c.opts.seederYAML), 0o644); err != nil {
		c.t.Fatal(err)
	}
	peerIP := h.Addr
	if c.opts.seederPeerUnroutable {
		peerIP = unroutablePeerIP(i)
		if out, err := h.Command(c.t.Context(), "ip", "addr", "add", peerIP+"/32", "dev", "lo").CombinedOutput(); err != nil {
			c.t.Fatalf("add %s to %s: %v: %s", peerIP, name, err, out)
		}
	}
	listen := net.JoinHostPort(h.Addr, strconv.Itoa(seederPort))
	args := append([]string{"seeder", "--config", cfg,
		"--listen", listen,
		"--metrics-listen", net.JoinHostPort(h.Addr, strconv.Itoa(seederMetricsPort)),
		"--peer-listen", net.JoinHostPort(peerIP, strconv.Itoa(peerPort)),
		"--data-dir", filepath.Join(dir, "data"),
		"--tracker", strings.Join(c.trackerURLs, ","),
		"--allow-upstream", c.origin.Host,
	}, c.member(name)...)
	return c.start(h, name, listen, c.bin, args...)
}

// agent is an "eagle agent" in its own namespace, with an HTTP client
// whose connections are made there (so 127.0.0.1:5000 is this agent).
type agent struct {
	name   string
	host   *netns.Host
	proc   *proc
	client *http.Client
}

// startAgent starts an agent on h with the cluster's seeders, trackers
// and origin, and the options' proxy keys.
func (c *cluster) startAgent(h *netns.Host, name string) *agent {
	c.t.Helper()
	dir := filepath.Join(c.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	trackers := c.trackerURLs
	if c.opts.agentTrackers != nil {
		trackers = c.opts.agentTrackers
	}
	proxyKeys := ""
	for line := range strings.Lines(c.opts.agentProxy) {
		proxyKeys += "  " + line
	}
	yaml := fmt.Sprintf(`listen: %q
log_level: %s
data_dir: %q
seeders: [%s]
p2p:
  listen_addr: %q
  trackers: [%s]
proxy:
  default_upstream: %q
%s`, agentListen, logLevel(), filepath.Join(dir, "data"), quoteList(c.seederAddrs),
		net.JoinHostPort(h.Addr, strconv.Itoa(peerPort)), quoteList(trackers), c.origin.URL, proxyKeys)
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{"agent", "--config", cfg}, c.member(name)...)
	a := &agent{name: name, host: h, proc: c.start(h, name, agentListen, c.bin, args...)}
	tr := &http.Transport{DialContext: h.DialContext, DisableCompression: true, MaxIdleConnsPerHost: 8}
	a.client = &http.Client{Transport: tr}
	c.t.Cleanup(tr.CloseIdleConnections)
	return a
}

// addAgent starts one more agent, on a new host, and waits until it
// listens.
func (c *cluster) addAgent(ctx context.Context) *agent {
	c.t.Helper()
	name := fmt.Sprintf("agent-%d", len(c.agents))
	a := c.startAgent(c.addHost(ctx, name, linkRate, linkRate), name)
	a.proc.waitListening(ctx)
	c.agents = append(c.agents, a)
	return a
}

// logLevel is the seeders' and agents' log level: info, or
// EAGLE_FAILOVER_LOG_LEVEL (debug, to see why a pull was slow).
func logLevel() string {
	if l := os.Getenv("EAGLE_FAILOVER_LOG_LEVEL"); l != "" {
		return l
	}
	return "info"
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// proc is a process the test started in a host's namespace, in its own
// process group, its output in a file. The test's cleanup stops it
// (SIGTERM, then SIGKILL) and reaps it, and prints the end of its output
// if the test failed.
type proc struct {
	t      *testing.T
	name   string
	host   *netns.Host
	listen string // host:port it listens on when ready, dialed from its namespace
	path   string
	args   []string
	env    []string // nil: the test's environment
	log    string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result, set before done is closed
}

// start starts path with args on h as name; listen is the address that
// tells it is ready.
func (c *cluster) start(h *netns.Host, name, listen, path string, args ...string) *proc {
	c.t.Helper()
	return c.startEnv(h, name, listen, nil, path, args...)
}

// startEnv is start with the process's environment.
func (c *cluster) startEnv(h *netns.Host, name, listen string, env []string, path string, args ...string) *proc {
	c.t.Helper()
	p := &proc{t: c.t, name: name, host: h, listen: listen, path: path, args: args, env: env, log: filepath.Join(c.dir, name+".log")}
	p.run()
	c.t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if c.t.Failed() {
			p.printLog(60)
			p.keepLog()
		}
	})
	return p
}

// run starts the process (again, for a restart), appending to its log.
func (p *proc) run() {
	p.t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== %s start %s\n", time.Now().Format("15:04:05.000"), p.name)
	// The context only builds the command: the process's lifetime is the
	// test's business (stop, kill, restart).
	p.cmd = p.host.Command(context.Background(), p.path, p.args...)
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	cmd, done := p.cmd, p.done
	go func() {
		p.err = cmd.Wait()
		close(done)
	}()
}

// waitListening waits until the process accepts connections on its
// listen address, from inside its namespace; it fails the test if the
// process exits first or 30 s pass.
func (p *proc) waitListening(ctx context.Context) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := p.host.DialContext(dctx, "tcp", p.listen)
		cancel()
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-p.done:
			p.printLog(30)
			p.t.Fatalf("%s exited before it listened on %s: %v", p.name, p.listen, p.err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.printLog(30)
			p.t.Fatalf("%s does not listen on %s after 30s: %v", p.name, p.listen, err)
		}
	}
}

// stop sends sig to the process group, waits up to 20 s for the process
// to exit, then kills whatever is left of the group and reaps it. It
// returns how long the process took to exit.
func (p *proc) stop(sig syscall.Signal) time.Duration {
	select {
	case <-p.done:
		return 0
	default:
	}
	start := time.Now()
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Errorf("%s did not exit within 20s of %v; killing it", p.name, sig)
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.t.Errorf("kill %s's process group: %v", p.name, err)
	}
	<-p.done
	return time.Since(start)
}

// kill ends the process with SIGKILL, as a crash would.
func (p *proc) kill() { p.stop(syscall.SIGKILL) }

// keepLog copies the process's whole log into EAGLE_FAILOVER_KEEP_LOGS,
// when it is set, named after the test: the end printLog shows is not
// enough to tell why a pull was slow at debug level.
func (p *proc) keepLog() {
	dir := os.Getenv("EAGLE_FAILOVER_KEEP_LOGS")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(p.log)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		dst := filepath.Join(dir, strings.ReplaceAll(p.t.Name(), "/", "_")+"-"+p.name+".log")
		err = os.WriteFile(dst, b, 0o644)
	}
	if err != nil {
		p.t.Logf("keep %s's log: %v", p.name, err)
	}
}

// printLog logs the last n lines of the process's output.
func (p *proc) printLog(n int) {
	b, err := os.ReadFile(p.log)
	if err != nil {
		p.t.Logf("%s log: %v", p.name, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	p.t.Logf("%s log (last %d lines):\n%s", p.name, len(lines), strings.Join(lines, "\n"))
}

// push pushes an image of one layerSize layer (a new one for each seed:
// nothing of it is cached anywhere) and returns it.
func (c *cluster) push(ctx context.Context, repo string, seed int64, size int64) origin.Image {
	c.t.Helper()
	img, err := origin.PushRandomImage(ctx, nil, c.origin.URL, repo, "v1", []int64{size}, seed)
	if err != nil {
		c.t.Fatal(err)
	}
	return img
}

// imageBytes is the size of img's blobs together.
func imageBytes(img origin.Image) int64 {
	var n int64
	for _, b := range img.Blobs() {
		n += b.Size
	}
	return n
}

// copies is what the origin served of img since its counts were last
// reset, in copies of the image: every blob GET's bytes over the image's
// bytes, with the GETs of each blob.
func (c *cluster) copies(img origin.Image) (float64, []int) {
	gets := make([]int, 0, len(img.Blobs()))
	for _, b := range img.Blobs() {
		gets = append(gets, c.origin.BlobGETs(b.Digest))
	}
	return float64(c.origin.BlobBytes()) / float64(imageBytes(img)), gets
}

// checkCopies fails the test unless the origin served each blob of img at
// most max times and at least once, and logs what it served.
func (c *cluster) checkCopies(img origin.Image, maxGETs int) {
	c.t.Helper()
	copies, gets := c.copies(img)
	c.t.Logf("origin: %.2f copies of the image (blob GETs: config %d, layer %d)", copies, gets[0], gets[1])
	for i, n := range gets {
		if n < 1 || n > maxGETs {
			c.t.Errorf("origin served blob %s %d times, want 1..%d", img.Blobs()[i].Digest, n, maxGETs)
		}
	}
	if copies > float64(maxGETs)+0.001 {
		c.t.Errorf("origin served %.2f copies of the image, want at most %d", copies, maxGETs)
	}
}

// pullResult is one agent's pull in a wave.
type pullResult struct {
	agent   string
	dur     time.Duration // from the wave's start to the last verified byte
	err     error
	retries int
}

// wave is every pull of one image through a set of agents, started at
// once.
type wave struct {
	img      origin.Image
	agents   []*agent
	start    time.Time
	progress []atomic.Int64 // body bytes each pull has received
	received []float64      // each agent's eagle_p2p_received_bytes_total at the start
	results  []pullResult
	wg       sync.WaitGroup
	finished []atomic.Bool
}

// startWave starts a pull of img through each of agents. A pull whose
// agent is in retry retries a failed blob GET once, as a runtime does.
// The pulls end with ctx; the test's end waits for them.
func startWave(t *testing.T, ctx context.Context, agents []*agent, img origin.Image, retry ...*agent) *wave {
	t.Helper()
	w := &wave{img: img, agents: agents,
		progress: make([]atomic.Int64, len(agents)), received: make([]float64, len(agents)),
		results: make([]pullResult, len(agents)), finished: make([]atomic.Bool, len(agents))}
	for i, a := range agents {
		var err error
		if w.received[i], err = a.metric(ctx, receivedMetric, nil); err != nil {
			t.Fatalf("%s: %v", a.name, err)
		}
	}
	w.start = time.Now()
	t.Cleanup(w.wg.Wait)
	for i, a := range agents {
		w.wg.Go(func() {
			defer w.finished[i].Store(true)
			r := a.pull(ctx, img, &w.progress[i], slices.Contains(retry, a))
			r.dur = time.Since(w.start)
			w.results[i] = r
		})
	}
	return w
}

// wait waits for every pull and returns their results.
func (w *wave) wait() []pullResult {
	w.wg.Wait()
	return w.results
}

// receivedMetric counts the piece bytes an agent's engine has received,
// from any source: how far its download is, whatever its client has
// been sent yet (bytes reach the client in order).
const receivedMetric = "eagle_p2p_received_bytes_total"

// waitProgress waits until the downloads of agents (all of them if none
// are named) have received at least frac of the image each, on median,
// as their engines count it, and fails if one of the pulls ended first:
// the fault would not land mid-way.
func (w *wave) waitProgress(t *testing.T, ctx context.Context, frac float64, of ...*agent) {
	t.Helper()
	if len(of) == 0 {
		of = w.agents
	}
	want := int64(frac * float64(imageBytes(w.img)))
	for {
		var got, sent []int64
		for i, a := range w.agents {
			if !slices.Contains(of, a) {
				continue
			}
			if w.finished[i].Load() {
				t.Fatalf("%s's pull ended (%v) before the downloads reached %.0f%%: the fault would not land mid-download", a.name, w.results[i].err, 100*frac)
			}
			n, err := a.metric(ctx, receivedMetric, nil)
			if err != nil {
				t.Fatalf("%s: %v", a.name, err)
			}
			got = append(got, int64(n-w.received[i]))
			sent = append(sent, w.progress[i].Load())
		}
		sorted := slices.Sorted(slices.Values(got))
		if sorted[len(sorted)/2] >= want {
			t.Logf("fault at %.2fs: downloads at %s, clients sent %s of %d MiB", time.Since(w.start).Seconds(), fmtInts(got), fmtInts(sent), imageBytes(w.img)>>20)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the downloads did not reach %.0f%%: %v", 100*frac, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func fmtInts(v []int64) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.FormatInt(n>>20, 10) + "Mi"
	}
	return "[" + strings.Join(s, " ") + "]"
}

// pull GETs every blob of img through the agent, at once, and checks each
// body against its digest and size. progress counts the body bytes.
func (a *agent) pull(ctx context.Context, img origin.Image, progress *atomic.Int64, retry bool) pullResult {
	r := pullResult{agent: a.name}
	blobs := img.Blobs()
	errs := make([]error, len(blobs))
	retries := make([]int, len(blobs))
	var wg sync.WaitGroup
	for i, b := range blobs {
		wg.Go(func() {
			errs[i] = a.getBlob(ctx, img.Repository, b, progress)
			if errs[i] != nil && retry && ctx.Err() == nil {
				retries[i]++
				errs[i] = a.getBlob(ctx, img.Repository, b, progress)
			}
		})
	}
	wg.Wait()
	for i := range blobs {
		r.retries += retries[i]
	}
	r.err = errors.Join(errs...)
	return r
}

// getBlob GETs one blob through the agent and verifies it.
func (a *agent) getBlob(ctx context.Context, repo string, d ocispec.Descriptor, progress *atomic.Int64) error {
	resp, err := a.get(ctx, "/v2/"+repo+"/blobs/"+d.Digest.String())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(body))}
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(h, progressWriter{progress}), resp.Body)
	if err != nil {
		return fmt.Errorf("blob %s: after %d of %d bytes: %w", d.Digest, n, d.Size, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != d.Size || got != d.Digest.String() {
		return fmt.Errorf("blob %s: got %d bytes with digest %s, want %d bytes", d.Digest, n, got, d.Size)
	}
	return nil
}

// get GETs path from the agent's registry endpoint.
func (a *agent) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+agentListen+path, nil)
	if err != nil {
		return nil, err
	}
	return a.client.Do(req)
}

type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.code, e.body) }

type progressWriter struct{ n *atomic.Int64 }

func (p progressWriter) Write(b []byte) (int, error) {
	p.n.Add(int64(len(b)))
	return len(b), nil
}

// check fails the test for every pull of res that failed, except those of
// the agents in skip (logged only), and returns the slowest of the others.
func check(t *testing.T, label string, res []pullResult, skip ...*agent) time.Duration {
	t.Helper()
	var slowest time.Duration
	var times []string
	for _, r := range res {
		if slices.ContainsFunc(skip, func(a *agent) bool { return a.name == r.agent }) {
			times = append(times, fmt.Sprintf("%s=(not judged here: %.2fs, %v)", r.agent, r.dur.Seconds(), short(r.err)))
			continue
		}
		if r.err != nil {
			t.Errorf("%s: %s's pull failed after %.2fs: %v", label, r.agent, r.dur.Seconds(), r.err)
			continue
		}
		slowest = max(slowest, r.dur)
		s := fmt.Sprintf("%s=%.2fs", r.agent, r.dur.Seconds())
		if r.retries > 0 {
			s += fmt.Sprintf("(%d retries)", r.retries)
		}
		times = append(times, s)
	}
	t.Logf("%s: slowest %.2fs: %s", label, slowest.Seconds(), strings.Join(times, " "))
	return slowest
}

func short(err error) string {
	if err == nil {
		return "completed"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// baseline pushes two images, pulls the first (small: it opens the
// connections every later pull uses) and then the second through every
// agent, fault-free, checks them, and returns the slowest pull of the
// second.
func (c *cluster) baseline(ctx context.Context, repo string) (time.Duration, origin.Image) {
	c.t.Helper()
	warm := c.push(ctx, repo, 1, 1<<20)
	img := c.push(ctx, repo, 2, layerSize)
	check(c.t, "warm-up", startWave(c.t, ctx, c.agents, warm).wait())
	c.origin.ResetCounts()
	d := check(c.t, "fault-free", startWave(c.t, ctx, c.agents, img).wait())
	c.checkCopies(img, 1)
	if c.t.Failed() {
		c.t.FailNow()
	}
	return d, img
}

// metric returns the sum of the samples of metric name whose labels
// include labels, from the Prometheus text at url fetched with client.
func metric(ctx context.Context, client *http.Client, url, name string, labels map[string]string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	fam, ok := fams[name]
	if !ok {
		return 0, nil
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		have := make(map[string]string)
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			if have[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, nil
}

// agentMetric reads a metric of the agent's /metrics.
func (a *agent) metric(ctx context.Context, name string, labels map[string]string) (float64, error) {
	return metric(ctx, a.client, "http://"+agentListen+"/metrics", name, labels)
}

// seederMetric reads a metric of seeder i's metrics port.
func (c *cluster) seederMetric(ctx context.Context, i int, name string, labels map[string]string) (float64, error) {
	host, _, _ := net.SplitHostPort(c.seederAddrs[i])
	return metric(ctx, c.root, fmt.Sprintf("http://%s/metrics", net.JoinHostPort(host, strconv.Itoa(seederMetricsPort))), name, labels)
}

// ratio checks got ≤ bound × base and logs it.
func checkRatio(t *testing.T, what string, got, base time.Duration, bound float64) {
	t.Helper()
	r := got.Seconds() / base.Seconds()
	t.Logf("%s: %.2fs / fault-free %.2fs = %.2f (bound %.2f)", what, got.Seconds(), base.Seconds(), r, bound)
	if r > bound {
		t.Errorf("%s took %.2fs, %.2f × the fault-free %.2fs (bound %.2f ×)", what, got.Seconds(), r, base.Seconds(), bound)
	}
}

// infoHash returns the infohash of the torrent Eagle makes of blob d: the
// metainfo a seeder builds, built here from the origin's bytes (a blob
// GET the origin counts).
func (c *cluster) infoHash(ctx context.Context, repo string, d ocispec.Descriptor) metainfo.Hash {
	c.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.origin.URL+"/v2/"+repo+"/blobs/"+d.Digest.String(), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.root.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	ih := p2p.NewInfoHasher(d.Digest, d.Size)
	if _, err := io.Copy(ih, resp.Body); err != nil {
		c.t.Fatal(err)
	}
	raw, err := ih.MetaInfo()
	if err != nil {
		c.t.Fatal(err)
	}
	mi, _, err := p2p.ParseMetaInfo(d.Digest, raw)
	if err != nil {
		c.t.Fatal(err)
	}
	return mi.HashInfoBytes()
}

// prober announces to trackers as a new cluster member from a host of
// its own, the way a new agent's engine does (mutual TLS, compact peers).
type prober struct {
	host   *netns.Host
	client *http.Client
}

// newProber adds a host with a member certificate of its own.
func (c *cluster) newProber(ctx context.Context) *prober {
	c.t.Helper()
	h := c.addHost(ctx, "probe", 0, 0)
	m, err := c.ca.WriteMember(filepath.Join(c.dir, "tls"), "probe")
	if err != nil {
		c.t.Fatal(err)
	}
	creds, err := mtls.Load(m)
	if err != nil {
		c.t.Fatal(err)
	}
	tr := &http.Transport{DialContext: h.DialContext, TLSClientConfig: creds.ClientConfig(), ForceAttemptHTTP2: false}
	c.t.Cleanup(tr.CloseIdleConnections)
	return &prober{host: h, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// announce announces a new peer of the torrent ih, with left bytes to
// download, to the tracker at announceURL, and returns the peers handed
// out.
func (p *prober) announce(ctx context.Context, announceURL string, ih metainfo.Hash, left int64) ([]netip.AddrPort, error) {
	var peerID [20]byte
	copy(peerID[:], "-FO0001-")
	if _, err := rand.Read(peerID[8:]); err != nil {
		return nil, err
	}
	q := url.Values{
		"info_hash":  {string(ih[:])},
		"peer_id":    {string(peerID[:])},
		"port":       {strconv.Itoa(peerPort)},
		"uploaded":   {"0"},
		"downloaded": {"0"},
		"left":       {strconv.FormatInt(left, 10)},
		"compact":    {"1"},
		"numwant":    {"50"},
		"event":      {"started"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, announceURL+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("announce: %s: %q", resp.Status, body)
	}
	var ar struct {
		FailureReason string `bencode:"failure reason"`
		Peers         []byte `bencode:"peers"`
	}
	if err := bencode.Unmarshal(body, &ar); err != nil {
		return nil, fmt.Errorf("announce: %w: %q", err, body)
	}
	if ar.FailureReason != "" {
		return nil, fmt.Errorf("announce: failure reason %q", ar.FailureReason)
	}
	if len(ar.Peers)%6 != 0 {
		return nil, fmt.Errorf("announce: %d bytes of compact peers", len(ar.Peers))
	}
	var peers []netip.AddrPort
	for b := ar.Peers; len(b) > 0; b = b[6:] {
		peers = append(peers, netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), binary.BigEndian.Uint16(b[4:6])))
	}
	return peers, nil
}
