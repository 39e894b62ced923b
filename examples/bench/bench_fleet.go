package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"time"

	"github.com/eagle-p2p/eagle/tracker"
)

// fleetOptions describe the simulated fleet of "bench tracker": nodes
// nodes, each caching blobs blobs, a fraction downloading of the blobs
// being pulled by half of the nodes.
type fleetOptions struct {
	nodes, blobs int
	downloading  float64
}

// fleetResult is what the tracker makes of a fleet: the announces per
// second its intervals ask for once every entry announced, and the fewest
// peers a node that starts downloading got in its first answer.
type fleetResult struct {
	announcesPerSec float64
	firstPeersMin   int
	entries         int
}

// benchFleet announces every (node, blob) entry of the fleet twice,
// through the handler of a tracker built from cfg, each node from its own
// address, and adds up the rate the second round's intervals ask for: the
// steady load the fleet puts on the tracker. In one blob in
// 1/downloading, every other node is still downloading. Then 100 new
// nodes start downloading a blob each and count the peers of their first
// answer.
func benchFleet(ctx context.Context, cfg tracker.Config, o fleetOptions) (fleetResult, error) {
	cfg.MaxSwarms = o.blobs
	cfg.MaxPeers = (o.nodes + 100) * o.blobs
	cfg.MaxPeersPerSwarm = o.nodes + 100
	srv, err := tracker.New(cfg, nil)
	if err != nil {
		return fleetResult{}, err
	}
	defer srv.Close()
	rec := &fleetRecorder{h: make(http.Header)}
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/announce", nil)
	announce := func(node, blob int, left int64, event string) (interval time.Duration, peers int, err error) {
		var ih, id [20]byte
		copy(ih[:], fmt.Sprintf("eagle-fleet-%08d", blob))
		copy(id[:], fmt.Sprintf("-EG0001-%012d", node))
		req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:50000", node>>16&0xff, node>>8&0xff, node&0xff)
		req.URL.RawQuery = "info_hash=" + url.QueryEscape(string(ih[:])) + "&peer_id=" + url.QueryEscape(string(id[:])) +
			"&port=6881&uploaded=0&downloaded=0&left=" + strconv.FormatInt(left, 10) + "&compact=1&numwant=50" + event
		rec.body.Reset()
		srv.ServeHTTP(rec, req)
		if rec.status != http.StatusOK {
			return 0, 0, fmt.Errorf("bench tracker: fleet announce: status %d: %s", rec.status, rec.body.Bytes())
		}
		return parseFleetAnswer(rec.body.Bytes())
	}
	var r fleetResult
	every := max(1, int(math.Round(1/o.downloading))) // one blob in every is being pulled
	for round := range 2 {
		event := "&event=started"
		if round > 0 {
			event = ""
		}
		for node := range o.nodes {
			for blob := range o.blobs {
				if err := ctx.Err(); err != nil {
					return fleetResult{}, err
				}
				left := int64(0)
				if blob%every == 0 && node%2 == 1 {
					left = 64 << 20
				}
				iv, _, err := announce(node, blob, left, event)
				if err != nil {
					return fleetResult{}, err
				}
				if round > 0 {
					r.announcesPerSec += 1 / iv.Seconds()
					r.entries++
				}
			}
		}
	}
	r.firstPeersMin = -1
	for i := range 100 {
		_, peers, err := announce(o.nodes+i, i*7%o.blobs, 64<<20, "&event=started")
		if err != nil {
			return fleetResult{}, err
		}
		if r.firstPeersMin < 0 || peers < r.firstPeersMin {
			r.firstPeersMin = peers
		}
	}
	return r, nil
}

// parseFleetAnswer reads the interval and the number of compact IPv4
// peers of a bencoded announce answer.
func parseFleetAnswer(b []byte) (time.Duration, int, error) {
	_, rest, ok := bytes.Cut(b, []byte("8:intervali"))
	digits, _, ok2 := bytes.Cut(rest, []byte("e"))
	secs, err := strconv.Atoi(string(digits))
	if !ok || !ok2 || err != nil || secs <= 0 {
		return 0, 0, fmt.Errorf("bench tracker: no interval in %q", b)
	}
	_, rest, ok = bytes.Cut(b, []byte("5:peers"))
	digits, _, ok2 = bytes.Cut(rest, []byte(":"))
	n, err := strconv.Atoi(string(digits))
	if !ok || !ok2 || err != nil || n%6 != 0 {
		return 0, 0, fmt.Errorf("bench tracker: no compact peers in %q", b)
	}
	return time.Duration(secs) * time.Second, n / 6, nil
}

// fleetRecorder is a ResponseWriter that keeps the status and the body.
type fleetRecorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *fleetRecorder) Header() http.Header         { return w.h }
func (w *fleetRecorder) WriteHeader(status int)      { w.status = status }
func (w *fleetRecorder) Write(p []byte) (int, error) { return w.body.Write(p) }
