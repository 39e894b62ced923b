package seeder

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
)

// newClientOpts is newClient with options, for a list of addresses.
func newClientOpts(t *testing.T, addrs []string, opts ...func(*ClientConfig)) *Client {
	t.Helper()
	cfg := ClientConfig{Seeders: addrs, Logger: testLogger(t), Credentials: testtls.Credentials(t, "agent")}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually waits up to timeout for cond, and returns how long it took.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// waitClosed waits up to timeout for ch to close, and returns how long it
// took.
func waitClosed(t *testing.T, ch <-chan struct{}, timeout time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-ch:
		return time.Since(start)
	case <-time.After(timeout):
		t.Fatalf("%s: not within %v", what, timeout)
		return 0
	}
}

// pushRankedFirst pushes an image whose layers have the given sizes,
// redrawing its content until Rank puts first before other for its first
// layer, and returns its layers. The addresses are fixed and each draw is
// an independent coin toss, so 40 draws all losing is a one-in-10¹² event
// (redrawing addresses instead would fail whenever other's score happens
// to be near the top: one run in 41).
func pushRankedFirst(t *testing.T, seed int64, first, other string, sizes ...int64) []ocispec.Descriptor {
	t.Helper()
	for i := range int64(40) {
		layers := pushImage(t, seed+i*1000, sizes...)
		if Rank([]string{other, first}, layers[0].Digest)[0] == first {
			return layers
		}
	}
	t.Fatalf("no draw ranks %s before %s", first, other)
	return nil
}

// hungListener accepts TCP connections and never answers on them, like a
// process whose listen queue the kernel still fills. Cleanup closes it.
func hungListener(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return lis.Addr().String()
}

// freezer is a TCP proxy in front of a seeder that can stop forwarding
// anything, in either direction, on the connections it has and on new
// ones, which it still accepts: what the agents see of a seeder process
// that was stopped (SIGSTOP) or cut off.
type freezer struct {
	lis     net.Listener
	backend string
	done    chan struct{}
	wg      sync.WaitGroup

	mu    sync.Mutex
	gate  chan struct{} // closed while bytes flow
	conns []net.Conn
}

func startFreezer(t *testing.T, backend string) *freezer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{lis: lis, backend: backend, done: make(chan struct{}), gate: closedChan}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(f.close)
	return f
}

func (f *freezer) addr() string { return f.lis.Addr().String() }

func (f *freezer) serve() {
	defer f.wg.Done()
	for {
		c, err := f.lis.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", f.backend)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, c, b)
		f.mu.Unlock()
		f.wg.Add(2)
		go f.pipe(b, c)
		go f.pipe(c, b)
	}
}

func (f *freezer) pipe(dst, src net.Conn) {
	defer f.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		f.mu.Lock()
		gate := f.gate
		f.mu.Unlock()
		select {
		case <-gate:
		case <-f.done:
			return
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate = make(chan struct{})
}

func (f *freezer) close() {
	select {
	case <-f.done:
		return
	default:
	}
	close(f.done)
	f.lis.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// A seeder whose gRPC server is stopped (its listener and connections
// closed) is reported unhealthy at once, and the next call for a blob it
// ranked first goes to the next seeder without delay.
func TestClientFailoverStoppedSeeder(t *testing.T) {
	layer := pushImage(t, 40, 300<<10)[0]
	seeders := map[string]*testSeeder{}
	var addrs []string
	for range 3 {
		ts := startSeeder(t, Config{}, nil)
		seeders[ts.addr] = ts
		addrs = append(addrs, ts.addr)
	}
	c := newClient(t, addrs...)
	eventually(t, 5*time.Second, "all seeders healthy", func() bool {
		return c.Healthy(addrs[0]) && c.Healthy(addrs[1]) && c.Healthy(addrs[2])
	})
	order := Rank(c.Seeders(), layer.Digest)
	gone := c.Unhealthy(order[0])
	select {
	case <-gone:
		t.Fatal("Unhealthy is closed for a healthy seeder")
	default:
	}

	stopped := time.Now()
	seeders[order[0]].stop()
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}
	mi, from, _, err := c.MetaInfoWithPeers(context.Background(), ref)
	took := time.Since(stopped)
	if err != nil {
		t.Fatalf("with the first seeder stopped: %v", err)
	}
	if from != order[1] {
		t.Errorf("answered by %s, want the second-ranked %s", from, order[1])
	}
	checkMetaInfo(t, seeders[order[1]].store, layer, mi)
	noticed := waitClosed(t, gone, 5*time.Second, "Unhealthy of the stopped seeder") + took
	t.Logf("stopped seeder: call answered by the next %v after the stop (origin fetch included); reported unhealthy %v after", took, noticed)
	if took > time.Second {
		t.Errorf("failover took %v, want well under a second", took)
	}
	if noticed > time.Second {
		t.Errorf("stopped seeder reported unhealthy after %v, want under a second", noticed)
	}
	if c.Healthy(order[0]) {
		t.Error("Healthy(stopped seeder) = true")
	}
	if !c.Healthy(order[1]) {
		t.Error("Healthy(answering seeder) = false")
	}
}

// A seeder that accepts connections and never answers holds a call no
// longer than the connect timeout, and later calls try it last.
func TestClientFailoverHungListener(t *testing.T) {
	good := startSeeder(t, Config{}, nil)
	hung := hungListener(t)
	layers := pushRankedFirst(t, 41, hung, good.addr, 200<<10, 210<<10)
	c := newClientOpts(t, []string{hung, good.addr}, func(c *ClientConfig) { c.ConnectTimeout = DefaultConnectTimeout })

	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layers[0].Digest}
	start := time.Now()
	_, from, _, err := c.MetaInfoWithPeers(context.Background(), ref)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if from != good.addr {
		t.Errorf("answered by %s, want %s", from, good.addr)
	}
	if took < DefaultConnectTimeout || took > DefaultConnectTimeout+time.Second {
		t.Errorf("first call took %v, want the connect timeout %v and little more", took, DefaultConnectTimeout)
	}
	// Now known down, the hung seeder is tried last, whatever the ranking.
	ref.Digest = layers[1].Digest
	start = time.Now()
	if _, from, _, err = c.MetaInfoWithPeers(context.Background(), ref); err != nil || from != good.addr {
		t.Fatalf("second call: %s, %v; want an answer from %s", from, err, good.addr)
	}
	second := time.Since(start)
	t.Logf("seeder accepting and never answering: first call %v (connect timeout %v), next call %v", took, DefaultConnectTimeout, second)
	if second > 500*time.Millisecond {
		t.Errorf("second call took %v: the hung seeder was not tried last", second)
	}
	if c.Healthy(hung) {
		t.Error("Healthy(hung) = true")
	}
}

// A seeder that stops answering on the connection it has (a stopped
// process, a network cut) is noticed by its health checks within about
// two seconds, and a call waiting on it moves on to the next seeder.
func TestClientFailoverFrozenSeeder(t *testing.T) {
	// The first GET is the frozen seeder's: it waits, so that the call is
	// in flight when the seeder freezes. The next is the good seeder's.
	var gets atomic.Int64
	gw := startGateway(t, getsOnly(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if gets.Add(1) == 1 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Second):
			}
		}
		next.ServeHTTP(w, r)
	}))
	good := startSeeder(t, Config{}, nil)
	frozen := startSeeder(t, Config{}, nil)
	proxy := startFreezer(t, frozen.addr)
	front := proxy.addr()
	layer := pushRankedFirst(t, 42, front, good.addr, 300<<10)[0]
	c := newClientOpts(t, []string{front, good.addr})
	eventually(t, 5*time.Second, "frozen seeder healthy", func() bool { return c.Healthy(front) })
	gone := c.Unhealthy(front)

	ref := blob.Ref{Upstream: gw.URL, Repository: testRepo(t), Digest: layer.Digest}
	type answer struct {
		from string
		err  error
		at   time.Time
	}
	answers := make(chan answer, 1)
	go func() {
		_, from, _, err := c.MetaInfoWithPeers(context.Background(), ref)
		answers <- answer{from, err, time.Now()}
	}()
	eventually(t, 5*time.Second, "origin fetch started", func() bool { return gets.Load() == 1 })
	froze := time.Now()
	proxy.freeze()
	noticed := waitClosed(t, gone, 5*time.Second, "Unhealthy of the frozen seeder")
	var a answer
	select {
	case a = <-answers:
	case <-time.After(10 * time.Second):
		t.Fatal("the call waiting on the frozen seeder did not move on")
	}
	if a.err != nil || a.from != good.addr {
		t.Fatalf("call: answered by %s, %v; want %s", a.from, a.err, good.addr)
	}
	answered := a.at.Sub(froze)
	t.Logf("frozen seeder (health check %v/%v): reported unhealthy %v after the freeze; the call in flight answered by the next %v after",
		DefaultHealthInterval, DefaultHealthTimeout, noticed, answered)
	if bound := DefaultHealthInterval + DefaultHealthTimeout + 500*time.Millisecond; noticed > bound {
		t.Errorf("noticed after %v, want under %v", noticed, bound)
	}
	if c.Healthy(front) {
		t.Error("Healthy(frozen) = true")
	}
}

// A seeder that is alive but whose handler never answers holds a call no
// longer than the attempt timeout, when there is one; without one, the
// caller's context decides.
func TestClientFailoverBlockedHandler(t *testing.T) {
	good := startSeeder(t, Config{}, nil)
	blocked := startBlockingSeeder(t)
	layer := pushRankedFirst(t, 43, blocked, good.addr, 200<<10)[0]
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}

	const bound = 500 * time.Millisecond
	c := newClientOpts(t, []string{blocked, good.addr}, func(c *ClientConfig) { c.AttemptTimeout = bound })
	start := time.Now()
	_, from, _, err := c.MetaInfoWithPeers(context.Background(), ref)
	took := time.Since(start)
	if err != nil || from != good.addr {
		t.Fatalf("answered by %s, %v; want %s", from, err, good.addr)
	}
	t.Logf("blocked handler with attempt timeout %v: answered by the next after %v", bound, took)
	if took < bound || took > bound+time.Second {
		t.Errorf("took %v, want the attempt timeout %v and little more", took, bound)
	}
	if !c.Healthy(blocked) {
		t.Error("a seeder that answers its health checks is not healthy")
	}

	plain := newClientOpts(t, []string{blocked, good.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := plain.MetaInfo(ctx, ref); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no attempt timeout: %v, want the caller's context.DeadlineExceeded", err)
	}
}

// blockingSeeder is a live seeder whose GetMetaInfo never answers.
type blockingSeeder struct {
	seederpb.UnimplementedMetaInfoServiceServer
}

func (blockingSeeder) GetMetaInfo(ctx context.Context, _ *seederpb.GetMetaInfoRequest) (*seederpb.GetMetaInfoResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func startBlockingSeeder(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(append(ServerOptions(), grpc.Creds(credentials.NewTLS(testtls.Credentials(t, "seeder").ServerConfig())))...)
	seederpb.RegisterMetaInfoServiceServer(g, blockingSeeder{})
	hs := health.NewServer()
	hs.SetServingStatus(seederpb.MetaInfoService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Serve(lis)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
	return lis.Addr().String()
}

// helperSeederEnv makes the test binary a seeder process (see
// runHelperSeeder) for the tests that stop and kill one.
const helperSeederEnv = "EAGLE_SEEDER_TEST_HELPER"

// runHelperSeeder serves the health service, as a seeder does, in
// plaintext on loopback, with ServerOptions; it prints its address and
// runs until killed or its stdin closes.
func runHelperSeeder() int {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	g := grpc.NewServer(ServerOptions()...)
	hs := health.NewServer()
	hs.SetServingStatus(seederpb.MetaInfoService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	go g.Serve(lis)
	fmt.Println(lis.Addr().String())
	io.Copy(io.Discard, os.Stdin)
	g.Stop()
	return 0
}

// A real seeder process: stopped (SIGSTOP), it is reported unhealthy
// within the health check's interval and timeout; continued, healthy
// again; killed, unhealthy at once.
func TestClientHealthOfStoppedAndKilledProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperSeederEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper seeder: %v", err)
	}
	addr := strings.TrimSpace(line)
	c, err := NewClient(ClientConfig{Seeders: []string{addr}, Logger: testLogger(t), DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, 5*time.Second, "helper seeder healthy", func() bool { return c.Healthy(addr) })

	gone := c.Unhealthy(addr)
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := waitClosed(t, gone, 5*time.Second, "Unhealthy after SIGSTOP")
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	back := eventually(t, 10*time.Second, "healthy after SIGCONT", func() bool { return c.Healthy(addr) })

	gone = c.Unhealthy(addr)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := waitClosed(t, gone, 5*time.Second, "Unhealthy after SIGKILL")
	t.Logf("seeder process: unhealthy %v after SIGSTOP (health check %v/%v), healthy %v after SIGCONT, unhealthy %v after SIGKILL",
		stopped, DefaultHealthInterval, DefaultHealthTimeout, back, killed)
	if bound := DefaultHealthInterval + DefaultHealthTimeout + 500*time.Millisecond; stopped > bound {
		t.Errorf("stopped process noticed after %v, want under %v", stopped, bound)
	}
	if killed > 500*time.Millisecond {
		t.Errorf("killed process noticed after %v, want at once", killed)
	}
}

// fakeDNS answers lookups from a table the test changes: there is no DNS
// server here. The seeders it names are real.
type fakeDNS struct {
	mu      sync.Mutex
	hosts   map[string][]netip.Addr
	lookups int
}

func newFakeDNS() *fakeDNS { return &fakeDNS{hosts: map[string][]netip.Addr{}} }

func (f *fakeDNS) set(host string, ips ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var addrs []netip.Addr
	for _, ip := range ips {
		addrs = append(addrs, netip.MustParseAddr(ip))
	}
	f.hosts[host] = addrs
}

func (f *fakeDNS) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	addrs, ok := f.hosts[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return slices.Clone(addrs), nil
}

func (f *fakeDNS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

// listenSamePort listens on every ip at one port, as the seeders behind a
// headless Service do; it returns the listeners and the port.
func listenSamePort(t *testing.T, ips ...string) ([]net.Listener, string) {
	t.Helper()
	for range 20 {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(first.Addr().(*net.TCPAddr).Port)
		ls := []net.Listener{first}
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		if len(ls) == len(ips) {
			return ls, port
		}
		for _, l := range ls {
			l.Close()
		}
	}
	t.Fatalf("no port free on all of %v", ips)
	return nil, ""
}

// A name stands for every seeder it resolves to; the Client ranks their
// addresses, so clients given the name, the addresses or other names for
// them pick the same seeder per blob; a seeder added to the name is used
// without a new Client, and one taken out is dropped.
func TestClientResolvesName(t *testing.T) {
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	ls, port := listenSamePort(t, ips...)
	announce := testenv.Tracker(t, testLogger(t))
	byAddr := map[string]*testSeeder{}
	start := func(i int) *testSeeder {
		ts := startSeederWith(t, Config{}, seederSetup{lis: ls[i], ip: ips[i], announce: announce})
		byAddr[ts.addr] = ts
		return ts
	}
	s2, s3 := start(0), start(1)
	dns := newFakeDNS()
	dns.set("seeders.eagle.test", ips[0], ips[1])
	dns.set("seeder-2.eagle.test", ips[0])
	const interval = 100 * time.Millisecond
	byName := newClientOpts(t, []string{"seeders.eagle.test:" + port}, func(c *ClientConfig) { c.Lookup, c.ResolveInterval = dns.lookup, interval })
	static := newClientOpts(t, []string{s3.addr, s2.addr})
	mixed := newClientOpts(t, []string{"seeder-2.eagle.test:" + port, s3.addr, "seeders.eagle.test:" + port}, func(c *ClientConfig) { c.Lookup, c.ResolveInterval = dns.lookup, interval })
	want := []string{s2.addr, s3.addr}
	for _, c := range []*Client{byName, static, mixed} {
		if got := c.Seeders(); !slices.Equal(got, want) {
			t.Fatalf("Seeders() = %v, want %v", got, want)
		}
	}

	layers := pushImage(t, 44, 3000, 3100, 3200, 3300, 3400, 3500, 3600, 3700, 3800, 3900, 4000, 4100, 4200, 4300, 4400, 4500)
	ref := func(i int) blob.Ref {
		return blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layers[i].Digest}
	}
	for i := range 4 {
		// Counted from here: with -count, an earlier run fetched it too.
		before := testOrigin.BlobGETs(layers[i].Digest)
		first := Rank(want, layers[i].Digest)[0]
		for _, c := range []*Client{byName, static, mixed} {
			_, from, _, err := c.MetaInfoWithPeers(context.Background(), ref(i))
			if err != nil {
				t.Fatal(err)
			}
			if from != first {
				t.Errorf("layer %d: answered by %s, want the rendezvous-first %s", i, from, first)
			}
		}
		if got := testOrigin.BlobGETs(layers[i].Digest) - before; got != 1 {
			t.Errorf("layer %d: origin blob GETs = %d, want 1", i, got)
		}
	}

	// A third seeder joins the name.
	s4 := start(2)
	dns.set("seeders.eagle.test", ips...)
	want = []string{s2.addr, s3.addr, s4.addr}
	took := eventually(t, 2*time.Second, "third seeder seen", func() bool { return slices.Equal(byName.Seeders(), want) })
	t.Logf("third seeder seen %v after it joined the name (resolve interval %v)", took, interval)
	ranksS4 := func(l ocispec.Descriptor) bool { return Rank(want, l.Digest)[0] == s4.addr }
	for seed := int64(100); !slices.ContainsFunc(layers[4:], ranksS4); seed++ {
		// Unlucky ports: push more.
		if seed == 110 {
			t.Fatal("no layer ranks the third seeder first")
		}
		layers = append(layers, pushImage(t, seed, 5000, 5100, 5200, 5300)...)
	}
	i := 4 + slices.IndexFunc(layers[4:], ranksS4)
	_, from, _, err := byName.MetaInfoWithPeers(context.Background(), ref(i))
	if err != nil || from != s4.addr {
		t.Fatalf("layer ranked first by the new seeder: answered by %s, %v; want %s", from, err, s4.addr)
	}
	if _, err := s4.store.Stat(context.Background(), layers[i].Digest); err != nil {
		t.Errorf("the new seeder does not hold its blob: %v", err)
	}

	// The first leaves it (still running, as a pod does while it
	// terminates).
	gone := byName.Unhealthy(s2.addr)
	dns.set("seeders.eagle.test", ips[1], ips[2])
	want = []string{s3.addr, s4.addr}
	eventually(t, 2*time.Second, "removed seeder dropped", func() bool { return slices.Equal(byName.Seeders(), want) })
	waitClosed(t, gone, time.Second, "Unhealthy of the removed seeder")
	if byName.Healthy(s2.addr) {
		t.Error("Healthy(removed seeder) = true")
	}
	for j := i + 1; j < len(layers); j++ {
		_, from, _, err := byName.MetaInfoWithPeers(context.Background(), ref(j))
		if err != nil {
			t.Fatal(err)
		}
		if first := Rank(want, layers[j].Digest)[0]; from != first {
			t.Errorf("layer %d after the removal: answered by %s, want %s", j, from, first)
		}
	}
	if n := s2.srv.Stats().OriginFetches; n == 0 {
		t.Log("the removed seeder was never ranked first")
	}
}

// A call whose seeders all failed looks the name up again and tries the
// seeders that appeared, without waiting for the resolve interval: a
// seeder pod restarted at a new address.
func TestClientFailoverToReplacedSeeder(t *testing.T) {
	ips := []string{"127.0.0.6", "127.0.0.7"}
	ls, port := listenSamePort(t, ips...)
	announce := testenv.Tracker(t, testLogger(t))
	old := startSeederWith(t, Config{}, seederSetup{lis: ls[0], ip: ips[0], announce: announce})
	dns := newFakeDNS()
	dns.set("seeder.eagle.test", ips[0])
	c := newClientOpts(t, []string{"seeder.eagle.test:" + port}, func(c *ClientConfig) { c.Lookup, c.ResolveInterval = dns.lookup, time.Hour })
	layers := pushImage(t, 45, 100<<10, 110<<10)
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layers[0].Digest}
	if _, from, _, err := c.MetaInfoWithPeers(context.Background(), ref); err != nil || from != old.addr {
		t.Fatalf("answered by %s, %v; want %s", from, err, old.addr)
	}

	replacement := startSeederWith(t, Config{}, seederSetup{lis: ls[1], ip: ips[1], announce: announce})
	dns.set("seeder.eagle.test", ips[1])
	lookups := dns.count()
	start := time.Now()
	old.stop()
	ref.Digest = layers[1].Digest
	_, from, _, err := c.MetaInfoWithPeers(context.Background(), ref)
	took := time.Since(start)
	if err != nil || from != replacement.addr {
		t.Fatalf("after the replacement: answered by %s, %v; want %s", from, err, replacement.addr)
	}
	t.Logf("seeder replaced at a new address: call answered by the new one %v after the old one stopped (%d lookups)", took, dns.count()-lookups)
	if took > 2*time.Second+maxLookupWait {
		t.Errorf("took %v", took)
	}
	if got := c.Seeders(); !slices.Equal(got, []string{replacement.addr}) {
		t.Errorf("Seeders() = %v, want only the replacement", got)
	}
}

// A name that does not resolve is not an error until a call needs a
// seeder; once it resolves, calls find the seeders.
func TestClientNameNotYetResolvable(t *testing.T) {
	dns := newFakeDNS()
	ts := startSeeder(t, Config{}, nil)
	_, port, _ := net.SplitHostPort(ts.addr)
	c := newClientOpts(t, []string{"late.eagle.test:" + port}, func(c *ClientConfig) { c.Lookup, c.ResolveInterval = dns.lookup, 50*time.Millisecond })
	if got := c.Seeders(); len(got) != 0 {
		t.Fatalf("Seeders() = %v, want none", got)
	}
	layer := pushImage(t, 46, 50<<10)[0]
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}
	if _, err := c.MetaInfo(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "resolve to none") {
		t.Fatalf("no seeder resolved: %v, want an error saying so", err)
	}
	dns.set("late.eagle.test", "127.0.0.1")
	eventually(t, 2*time.Second, "name resolved", func() bool { return len(c.Seeders()) == 1 })
	if _, err := c.MetaInfo(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	// A failed lookup keeps the last addresses.
	dns.mu.Lock()
	delete(dns.hosts, "late.eagle.test")
	dns.mu.Unlock()
	n := dns.count()
	eventually(t, 2*time.Second, "looked up again", func() bool { return dns.count() > n+1 })
	if got := c.Seeders(); !slices.Equal(got, []string{ts.addr}) {
		t.Errorf("after failed lookups Seeders() = %v, want the last good %v", got, ts.addr)
	}
}

func TestNewClientAddresses(t *testing.T) {
	for _, bad := range []string{"seeder", "seeder:0", "seeder:http", ":7070", "127.0.0.1:99999", "a b:7070"} {
		if c, err := NewClient(ClientConfig{Seeders: []string{bad}}); err == nil {
			c.Close()
			t.Errorf("NewClient(%q) succeeded", bad)
		}
	}
	c, err := NewClient(ClientConfig{Seeders: []string{"10.0.0.1:7070", "[::ffff:10.0.0.2]:7070", "[2001:db8::1]:7070", "unix:///run/eagle/seeder.sock"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []string{"10.0.0.1:7070", "10.0.0.2:7070", "[2001:db8::1]:7070", "unix:///run/eagle/seeder.sock"}
	if got := c.Seeders(); !slices.Equal(got, want) {
		t.Errorf("Seeders() = %v, want %v", got, want)
	}

	// Credentials with a server name of their own do not stop a name's
	// seeders from being dialed (grpc refuses an authority beside them).
	dns := newFakeDNS()
	dns.set("seeders.eagle.test", "10.0.0.1", "10.0.0.2")
	named, err := NewClient(ClientConfig{Seeders: []string{"seeders.eagle.test:7070"}, Lookup: dns.lookup,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{ServerName: "seeder.example"}))}})
	if err != nil {
		t.Fatal(err)
	}
	defer named.Close()
	if got := named.Seeders(); !slices.Equal(got, want[:2]) {
		t.Errorf("Seeders() = %v, want %v", got, want[:2])
	}
}

// Every answer carries the answering seeder's peer-wire address, as the
// caller can dial it.
func TestClientPeers(t *testing.T) {
	layer := pushImage(t, 47, 100<<10)[0]
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}

	plain := startSeeder(t, Config{}, nil)
	_, from, peers, err := newClient(t, plain.addr).MetaInfoWithPeers(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if from != plain.addr || len(peers) != 1 || peers[0].String() != plain.peer {
		t.Errorf("answered by %s with peers %v, want %s with [%s]", from, peers, plain.addr, plain.peer)
	}

	// An engine on all interfaces is advertised at the address the caller
	// reached the seeder at.
	for _, any := range []string{"0.0.0.0", "::"} {
		t.Run(any, func(t *testing.T) {
			var enginePort atomic.Int64
			cfg := Config{PeerAddr: func() net.Addr {
				return &net.TCPAddr{IP: net.ParseIP(any), Port: int(enginePort.Load())}
			}}
			ts := startSeederWith(t, cfg, seederSetup{ip: "127.0.0.5"})
			_, p, _ := net.SplitHostPort(ts.peer)
			n, _ := strconv.Atoi(p)
			enginePort.Store(int64(n))
			_, _, peers, err := newClient(t, ts.addr).MetaInfoWithPeers(context.Background(), ref)
			if err != nil {
				t.Fatal(err)
			}
			if len(peers) != 1 || peers[0].String() != ts.peer {
				t.Fatalf("peers %v, want [%s]", peers, ts.peer)
			}
			conn, err := net.Dial("tcp", peers[0].String())
			if err != nil {
				t.Fatalf("peer address not dialable: %v", err)
			}
			conn.Close()
		})
	}

	noPeer := startSeeder(t, Config{PeerAddr: func() net.Addr { return nil }}, nil)
	if _, _, peers, err := newClient(t, noPeer.addr).MetaInfoWithPeers(context.Background(), ref); err != nil || len(peers) != 0 {
		t.Errorf("seeder without a peer address: peers %v, %v; want none", peers, err)
	}
}

// The client keeps only dialable peer addresses, without duplicates, at
// most MaxPeers.
func TestClientValidatesPeers(t *testing.T) {
	dgst := digest.FromString("0123456789")
	ih := p2p.NewInfoHasher(dgst, 10)
	ih.Write([]byte("0123456789"))
	mi, err := ih.MetaInfo()
	if err != nil {
		t.Fatal(err)
	}
	sent := []string{
		"0.0.0.0:6881", "10.0.0.1:0", "seeder.example:6881", "[::]:6881", "224.0.0.1:6881",
		"255.255.255.255:6881", "[fe80::1%eth0]:6881", "garbage", "10.0.0.1",
		"10.0.0.1:6881", "10.0.0.1:6881", "[::ffff:10.0.0.1]:6881", "[2001:db8::1]:6881",
	}
	for i := range 20 {
		sent = append(sent, fmt.Sprintf("10.1.0.%d:6881", i))
	}
	bad := startBadSeederPeers(t, mi, 10, sent)
	_, _, peers, err := newClient(t, bad).MetaInfoWithPeers(context.Background(), blob.Ref{Upstream: "http://127.0.0.1:1", Repository: "a", Digest: dgst})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.1:6881", "[2001:db8::1]:6881"}
	for i := range MaxPeers - 2 {
		want = append(want, fmt.Sprintf("10.1.0.%d:6881", i))
	}
	var got []string
	for _, p := range peers {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("peers %v, want %v", got, want)
	}
}

// Close ends the calls in flight at once, and the Client's goroutines
// (the leak check of TestMain sees them).
func TestClientCloseEndsCalls(t *testing.T) {
	blocked := startBlockingSeeder(t)
	dns := newFakeDNS()
	dns.set("blocked.eagle.test", "127.0.0.1")
	_, port, _ := net.SplitHostPort(blocked)
	c, err := NewClient(ClientConfig{Seeders: []string{"blocked.eagle.test:" + port, blocked}, Logger: testLogger(t),
		Credentials: testtls.Credentials(t, "agent"), Lookup: dns.lookup})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Seeders(); !slices.Equal(got, []string{blocked}) {
		t.Fatalf("Seeders() = %v: a name and an address for one seeder are one seeder", got)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.MetaInfo(context.Background(), blob.Ref{Upstream: "http://127.0.0.1:1", Repository: "a", Digest: digest.FromString("x")})
		done <- err
	}()
	eventually(t, 5*time.Second, "seeder healthy", func() bool { return c.Healthy(blocked) })
	time.Sleep(100 * time.Millisecond)
	closed := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("call cut by Close: %v, want an error saying the client closed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("the call in flight did not end with Close")
	}
	if took := time.Since(closed); took > 500*time.Millisecond {
		t.Errorf("Close and the call's end took %v", took)
	}
	if c.Healthy(blocked) || len(c.Seeders()) != 0 {
		t.Error("a closed client still reports seeders")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
