package tracker_test

import (
	"fmt"
	"log"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"

	"github.com/eagle-p2p/eagle/tracker"
)

// The tracker is an http.Handler in one call: the zero Config takes every
// default and keeps its peers in memory. In a cluster, serve it over TLS
// with its announces for members only (mtls.Credentials.RequireMember); here
// one announce goes straight to the handler.
func ExampleNew() {
	h, err := tracker.New(tracker.Config{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	q := url.Values{
		"info_hash": {strings.Repeat("\x01", 20)},
		"peer_id":   {"-EA0100-example00000"},
		"port":      {"6881"},
		"left":      {"0"},
	}
	req := httptest.NewRequest("GET", "/announce?"+q.Encode(), nil)
	req.RemoteAddr = "192.0.2.10:40000"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	// A bencoded answer: the swarm has one complete peer (the one that
	// announced, with nothing left), which is to announce again in 300s,
	// the seed interval (a downloading one would be told 10s), and no
	// other peer to connect to, in IPv4 (peers) or IPv6 (peers6) compact
	// form.
	fmt.Println(rec.Code, rec.Body.String())
	// Output: 200 d8:completei1e10:incompletei0e8:intervali300e12:min intervali5e5:peers0:6:peers60:e
}

// A TopologyPolicy hands an asker its own location's peers first, and,
// to a location's border peers only, the nearest remote peers that hold
// more than the location does. In the eagle binary: policy: topology.
func ExampleNewTopologyPolicy() {
	policy := tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: 2})
	peer := func(n byte, loc string, left int64) tracker.Peer {
		return tracker.Peer{ID: tracker.PeerID{n}, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, n}), 6881), Left: left, Location: loc}
	}
	self := peer(1, "eu/a/r1", 1000)
	candidates := []tracker.Peer{
		peer(2, "us/a/r1", 0),   // a seeder in another region
		peer(3, "eu/a/r2", 900), // the next rack, holding less than self's rack
		peer(4, "eu/b/r1", 0),   // a seeder in the same region
		peer(5, "eu/a/r1", 500), // self's rack
	}
	// Self's rack has two members, so with Remote 2 both are its border
	// peers.
	for _, p := range policy.Order(tracker.InfoHash{}, self, candidates) {
		fmt.Println(p.Addr.Addr(), p.Location, p.Left)
	}
	// Output:
	// 10.0.0.5 eu/a/r1 500
	// 10.0.0.4 eu/b/r1 0
	// 10.0.0.2 us/a/r1 0
}
