package tracker_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eagle-p2p/eagle/tracker"
)

const (
	benchSwarms        = 1000
	benchPeersPerSwarm = 100
)

type benchAnnounce struct {
	query  string
	remote string
}

// benchAnnounces is one announce per peer of 1,000 swarms of 100 peers, a
// tenth of them seeders. It is built once: b.N ramp-ups reuse it.
var benchAnnounces = sync.OnceValue(func() []benchAnnounce {
	load := make([]benchAnnounce, 0, benchSwarms*benchPeersPerSwarm)
	for sw := range benchSwarms {
		var ih [20]byte
		copy(ih[:], fmt.Sprintf("bench-swarm-%08d", sw))
		for p := range benchPeersPerSwarm {
			var id [20]byte
			copy(id[:], fmt.Sprintf("-EG0001-%06d%06d", sw, p))
			left := 0
			if p%10 != 0 {
				left = 1 << 20 * p
			}
			q := url.Values{
				"info_hash": {string(ih[:])}, "peer_id": {string(id[:])},
				"port": {strconv.Itoa(6881 + p)}, "uploaded": {"0"}, "downloaded": {"0"},
				"left": {strconv.Itoa(left)}, "compact": {"1"}, "key": {"12345"},
			}
			n := sw*benchPeersPerSwarm + p
			load = append(load, benchAnnounce{
				query:  q.Encode(),
				remote: fmt.Sprintf("127.%d.%d.%d:40000", n>>16&255, n>>8&255, n&255),
			})
		}
	}
	return load
})

// benchLoad returns a server that has already seen every peer of
// benchAnnounces, and the announces.
func benchLoad(b *testing.B) (*tracker.Server, []benchAnnounce) {
	b.Helper()
	return benchLoadWith(b, tracker.Config{}, benchAnnounces())
}

// benchLoadWith returns a server with cfg that has already seen every
// peer of load.
func benchLoadWith(b *testing.B, cfg tracker.Config, load []benchAnnounce) (*tracker.Server, []benchAnnounce) {
	b.Helper()
	s := newServer(b, cfg)
	w := &discardWriter{h: make(http.Header)}
	req := httptest.NewRequest(http.MethodGet, "/announce", nil)
	for _, a := range load {
		req.URL.RawQuery, req.RemoteAddr = a.query, a.remote
		s.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("warm-up announce failed: %d", w.status)
		}
	}
	return s, load
}

type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// BenchmarkAnnounce measures the handler alone: parse, store, policy, encode,
// with 1,000 swarms of 100 peers and numwant defaulting to 50.
func BenchmarkAnnounce(b *testing.B) {
	s, load := benchLoad(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: make(http.Header)}
		req := httptest.NewRequest(http.MethodGet, "/announce", nil)
		for pb.Next() {
			a := load[rand.IntN(len(load))]
			req.URL.RawQuery, req.RemoteAddr = a.query, a.remote
			s.ServeHTTP(w, req)
			if w.status != http.StatusOK {
				b.Errorf("announce status %d", w.status)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "announces/s")
}

// BenchmarkAnnounceTopology is BenchmarkAnnounce with TopologyPolicy and
// every peer in one of 4 locations, sent in the announce: each announce
// orders its whole swarm (100 peers) and records its handouts.
func BenchmarkAnnounceTopology(b *testing.B) {
	load := slices.Clone(benchAnnounces())
	for i := range load {
		load[i].query += "&location=region%2Fdc" + strconv.Itoa(i%4)
	}
	s, load := benchLoadWith(b, tracker.Config{Policy: tracker.NewTopologyPolicy(tracker.TopologyConfig{})}, load)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: make(http.Header)}
		req := httptest.NewRequest(http.MethodGet, "/announce", nil)
		for pb.Next() {
			a := load[rand.IntN(len(load))]
			req.URL.RawQuery, req.RemoteAddr = a.query, a.remote
			s.ServeHTTP(w, req)
			if w.status != http.StatusOK {
				b.Errorf("announce status %d", w.status)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "announces/s")
}

// BenchmarkAnnounceHTTP is BenchmarkAnnounce through net/http on loopback,
// with keep-alive connections, as a tracker replica would serve it.
func BenchmarkAnnounceHTTP(b *testing.B) {
	s, load := benchLoad(b)
	ts := httptest.NewServer(s)
	defer ts.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var failed atomic.Bool
	b.SetParallelism(16) // many clients, as in a cluster
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(ts.URL + "/announce?" + load[rand.IntN(len(load))].query)
			if err != nil {
				if failed.CompareAndSwap(false, true) {
					b.Error(err)
				}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "announces/s")
}
