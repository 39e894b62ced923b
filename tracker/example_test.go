package tracker_test

import (
	"fmt"
	"log"
	"net/http/httptest"
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
