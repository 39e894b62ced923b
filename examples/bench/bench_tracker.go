package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/eagle-p2p/eagle/tracker"
)

// trackerBenchOptions are the flags of "bench tracker".
type trackerBenchOptions struct {
	swarms, peers int
	workers       int
	numWant       int
	duration      time.Duration
	inProcess     time.Duration
	cpuProfile    string
	fleet         fleetOptions
}

func runBenchTracker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench tracker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o trackerBenchOptions
	fs.IntVar(&o.swarms, "swarms", 1000, "number of swarms (blobs) preloaded")
	fs.IntVar(&o.peers, "peers", 100, "peers per swarm, preloaded")
	fs.IntVar(&o.workers, "workers", 32, "concurrent HTTP clients, each on its own keep-alive connection")
	fs.IntVar(&o.numWant, "numwant", 50, "numwant sent in every announce")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long the HTTP load runs")
	fs.DurationVar(&o.inProcess, "inprocess", 2*time.Second, "how long the in-process (no HTTP) load runs; 0 skips it")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the HTTP load (tracker and load generator) to this file")
	fs.IntVar(&o.fleet.nodes, "fleet-nodes", 1000, "nodes of the simulated fleet (0 skips the fleet)")
	fs.IntVar(&o.fleet.blobs, "fleet-blobs", 200, "blobs each node of the fleet caches")
	fs.Float64Var(&o.fleet.downloading, "fleet-downloading", 0.01, "fraction of the fleet's blobs being pulled (by every other node)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./examples/bench tracker [flags]\n\nStarts a tracker on 127.0.0.1 with an in-memory peer store, preloads\n"+
			"swarms × peers announces, then sends announces (compact, numwant, a random\n"+
			"peer of a random swarm, mostly event=none) from concurrent keep-alive HTTP\n"+
			"clients for a fixed duration. The load generator runs in this process and\n"+
			"shares the CPUs with the tracker.\n\n"+
			"First it simulates a fleet: every node announces every blob it caches,\n"+
			"a fraction of the blobs being pulled by every other node, and the\n"+
			"intervals the tracker answers add up to the announces per second the\n"+
			"fleet sends it\n"+
			"(fleet_announces_per_s), beside the same fleet told the downloaders'\n"+
			"interval for every entry (fleet_flat_per_s). Then 100 new nodes start\n"+
			"downloading and count the peers in their first answer\n"+
			"(fleet_first_peers_min): peers are found at once.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if o.swarms < 1 || o.peers < 2 || o.workers < 1 || o.numWant < 0 || o.duration <= 0 || o.inProcess < 0 {
		fmt.Fprintln(stderr, "bench tracker: -swarms, -workers and -duration must be positive, -peers at least 2, -numwant and -inprocess not negative")
		return errUsage
	}
	if o.fleet.nodes < 0 || o.fleet.nodes > 1<<24-101 || (o.fleet.nodes > 0 && (o.fleet.blobs < 1 || o.fleet.downloading <= 0 || o.fleet.downloading > 1)) {
		fmt.Fprintln(stderr, "bench tracker: -fleet-nodes must be 0 to 16777115; with a fleet, -fleet-blobs must be positive and -fleet-downloading in (0, 1]")
		return errUsage
	}
	return benchTracker(ctx, o, stdout)
}

// trackerPeer is one simulated peer: its announce query without the event.
type trackerPeer struct{ query string }

// trackerBenchLoad returns one announce query per peer of every swarm. A
// tenth of each swarm are seeders (left=0); the others have some bytes left.
func trackerBenchLoad(o trackerBenchOptions) []trackerPeer {
	load := make([]trackerPeer, 0, o.swarms*o.peers)
	for sw := range o.swarms {
		var ih [20]byte
		copy(ih[:], fmt.Sprintf("eagle-bench-%08d", sw))
		for p := range o.peers {
			var id [20]byte
			copy(id[:], fmt.Sprintf("-EG0001-%06d%06d", sw%1000000, p))
			left := 0
			if p%10 != 0 {
				left = 1 << 20 * (p + 1)
			}
			q := "info_hash=" + url.QueryEscape(string(ih[:])) + "&peer_id=" + url.QueryEscape(string(id[:])) +
				"&port=" + strconv.Itoa(10000+p) + "&uploaded=0&downloaded=0&left=" + strconv.Itoa(left) +
				"&compact=1&numwant=" + strconv.Itoa(o.numWant) + "&key=" + strconv.Itoa(sw*o.peers+p)
			load = append(load, trackerPeer{query: q})
		}
	}
	return load
}

// trackerEvent returns the event part of an announce: 98% none (the periodic
// re-announce), 1% started, 1% stopped.
func trackerEvent(r *rand.Rand) string {
	switch r.IntN(100) {
	case 0:
		return "&event=started"
	case 1:
		return "&event=stopped"
	}
	return ""
}

func benchTracker(ctx context.Context, o trackerBenchOptions, stdout io.Writer) error {
	var fleet, flat fleetResult
	if o.fleet.nodes > 0 {
		var err error
		if fleet, err = benchFleet(ctx, tracker.Config{}, o.fleet); err != nil {
			return err
		}
		// The same fleet with every entry told the downloaders' interval.
		if flat, err = benchFleet(ctx, tracker.Config{SeedInterval: tracker.DefaultInterval}, o.fleet); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "bench: tracker fleet nodes=%d blobs=%d blobs_downloading=%.3f entries=%d announces_per_s=%.0f (every entry at the downloaders' interval: %.0f) first_answer_peers_min=%d\n",
			o.fleet.nodes, o.fleet.blobs, o.fleet.downloading, fleet.entries, fleet.announcesPerSec, flat.announcesPerSec, fleet.firstPeersMin)
	}
	srv, err := tracker.New(tracker.Config{MaxSwarms: o.swarms, MaxPeers: o.swarms * o.peers, MaxPeersPerSwarm: o.peers}, nil)
	if err != nil {
		return err
	}
	defer srv.Close()
	load := trackerBenchLoad(o)

	start := time.Now()
	if err := trackerPreload(ctx, srv, load); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench: tracker preloaded %d swarms × %d peers (%d announces) in %.2fs\n",
		o.swarms, o.peers, len(load), time.Since(start).Seconds())

	if o.inProcess > 0 {
		n, err := trackerAnnounceInProcess(ctx, srv, load, o.inProcess)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "bench: tracker in-process (handler only, %d goroutines) announces_per_s=%.0f\n",
			runtime.GOMAXPROCS(0), float64(n)/o.inProcess.Seconds())
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench tracker: listen: %w", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(lis) }()
	defer func() {
		_ = hs.Close()
		<-served
	}()

	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	res, err := trackerAnnounceHTTP(ctx, "http://"+lis.Addr().String()+"/announce?", load, o.workers, o.duration)
	if err != nil {
		return err
	}
	rate := float64(res.n) / res.elapsed.Seconds()
	fmt.Fprintf(stdout, "bench: tracker http workers=%d duration=%.1fs announces=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f cpus=%d (load generator shares them)\n",
		o.workers, res.elapsed.Seconds(), res.n, millis(res.p50), millis(res.p99), millis(res.max), runtime.GOMAXPROCS(0))
	fmt.Fprintf(stdout, "bench: tracker announces_per_s=%.0f p99_ms=%.3f fleet_announces_per_s=%.0f fleet_flat_per_s=%.0f fleet_first_peers_min=%d cpu_busy=%.2f\n",
		rate, millis(res.p99), fleet.announcesPerSec, flat.announcesPerSec, fleet.firstPeersMin, res.cpuBusy)
	return nil
}

// startCPUProfile writes a CPU profile to path until the returned function
// is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// trackerPreload announces every peer once (event=started), through the
// handler, from all CPUs.
func trackerPreload(ctx context.Context, srv *tracker.Server, load []trackerPeer) error {
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rec := &trackerRecorder{h: make(http.Header)}
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/announce", nil)
			req.RemoteAddr = "127.0.0.1:50000"
			for i := w; i < len(load); i += workers {
				req.URL.RawQuery = load[i].query + "&event=started"
				srv.ServeHTTP(rec, req)
				if rec.status != http.StatusOK {
					errs[w] = fmt.Errorf("bench tracker: preload announce: status %d", rec.status)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// trackerAnnounceInProcess calls the handler directly from GOMAXPROCS goroutines
// for d and returns the number of announces served.
func trackerAnnounceInProcess(ctx context.Context, srv *tracker.Server, load []trackerPeer, d time.Duration) (int, error) {
	workers := runtime.GOMAXPROCS(0)
	counts := make([]int, workers)
	errs := make([]error, workers)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			rec := &trackerRecorder{h: make(http.Header)}
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/announce", nil)
			req.RemoteAddr = "127.0.0.1:50000"
			for n := 0; ; n++ {
				if n%256 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
					break
				}
				req.URL.RawQuery = load[r.IntN(len(load))].query + trackerEvent(r)
				srv.ServeHTTP(rec, req)
				if rec.status != http.StatusOK || rec.n == 0 {
					errs[w] = fmt.Errorf("bench tracker: in-process announce: status %d, %d bytes", rec.status, rec.n)
					return
				}
				counts[w]++
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("bench tracker: %w", err)
	}
	total := 0
	for _, c := range counts {
		total += c
	}
	return total, nil
}

// trackerRecorder is a ResponseWriter that keeps the status and byte count.
type trackerRecorder struct {
	h      http.Header
	status int
	n      int
}

func (w *trackerRecorder) Header() http.Header         { return w.h }
func (w *trackerRecorder) WriteHeader(status int)      { w.status = status }
func (w *trackerRecorder) Write(p []byte) (int, error) { w.n = len(p); return len(p), nil }

// trackerHTTPResult is the outcome of the HTTP load.
type trackerHTTPResult struct {
	n             int
	elapsed       time.Duration
	p50, p99, max time.Duration
	cpuBusy       float64 // fraction of the machine's cores busy meanwhile
}

// trackerAnnounceHTTP sends announces to base+query from workers concurrent
// clients on keep-alive connections for d, and measures each one's latency
// from sending the request to reading the whole response.
func trackerAnnounceHTTP(ctx context.Context, base string, load []trackerPeer, workers int, d time.Duration) (trackerHTTPResult, error) {
	tr := &http.Transport{
		MaxIdleConns:        workers,
		MaxIdleConnsPerHost: workers,
		MaxConnsPerHost:     workers,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	lats := make([][]time.Duration, workers)
	errs := make([]error, workers)
	meter := startCPU()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 2))
			lat := make([]time.Duration, 0, 1<<14)
			for {
				t0 := time.Now()
				if t0.After(deadline) {
					break
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet,
					base+load[r.IntN(len(load))].query+trackerEvent(r), nil)
				if err != nil {
					errs[w] = fmt.Errorf("bench tracker: %w", err)
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					errs[w] = fmt.Errorf("bench tracker: announce: %w", err)
					cancel()
					return
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || n == 0 {
					errs[w] = fmt.Errorf("bench tracker: announce: status %d, %d bytes, %v", resp.StatusCode, n, err)
					cancel()
					return
				}
				lat = append(lat, time.Since(t0))
			}
			lats[w] = lat
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	busy := meter.busy()
	if err := errors.Join(errs...); err != nil {
		return trackerHTTPResult{}, err
	}
	all := slices.Concat(lats...)
	if len(all) == 0 {
		return trackerHTTPResult{}, errors.New("bench tracker: no announce completed")
	}
	slices.Sort(all)
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return trackerHTTPResult{n: len(all), elapsed: elapsed, p50: q(0.50), p99: q(0.99), max: all[len(all)-1], cpuBusy: busy}, nil
}
