package tracker_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/anacrolix/torrent/bencode"

	"github.com/eagle-p2p/eagle/tracker"
)

// FuzzServeAnnounce drives arbitrary queries through the whole handler: every
// answer must be a bencoded dictionary, either a lone failure reason or a
// complete announce response, with HTTP 200, or 503 for "tracker full". The
// server is shared by all inputs and holds at most 4 peers per swarm, so
// that the seeds, run in order, reach the full and the conflict paths. It
// hands out peers by TopologyPolicy, with location rules.
func FuzzServeAnnounce(f *testing.F) {
	const a = "info_hash=aaaaaaaaaaaaaaaaaaaa"
	f.Add(a + "&peer_id=bbbbbbbbbbbbbbbbbbbb&port=6881&left=0")
	f.Add(a + "&peer_id=cccccccccccccccccccc&port=6882&left=7&numwant=3&ip=::1")
	f.Add(a + "&peer_id=bbbbbbbbbbbbbbbbbbbb&port=6881&left=0&event=stopped")
	f.Add("info_hash=%%%&port=x")
	// Peer c is ::1's: from another address it is refused, stop included.
	f.Add(a + "&peer_id=cccccccccccccccccccc&port=6882&left=0&ip=127.0.0.9")
	f.Add(a + "&peer_id=cccccccccccccccccccc&port=6882&left=7&event=stopped")
	// Peers d, e, f fill swarm a with c; g finds it full.
	f.Add(a + "&peer_id=dddddddddddddddddddd&port=6883&left=1")
	f.Add(a + "&peer_id=eeeeeeeeeeeeeeeeeeee&port=6884&left=1&ip=127.0.0.5")
	f.Add(a + "&peer_id=ffffffffffffffffffff&port=6885&left=0&event=started")
	f.Add(a + "&peer_id=gggggggggggggggggggg&port=6886&left=1")
	// Locations, announced or from the rules, for the topology policy.
	const b = "info_hash=bbbbbbbbbbbbbbbbbbbb"
	f.Add(b + "&peer_id=hhhhhhhhhhhhhhhhhhhh&port=6887&left=0&location=dc0")
	f.Add(b + "&peer_id=iiiiiiiiiiiiiiiiiiii&port=6888&left=9&location=eu%2Fa&ip=127.0.0.2")
	f.Add(b + "&peer_id=jjjjjjjjjjjjjjjjjjjj&port=6889&left=9&ip=10.1.0.1")
	f.Add(b + "&peer_id=kkkkkkkkkkkkkkkkkkkk&port=6890&left=9&location=eu//a")
	s, err := tracker.New(tracker.Config{TrustClientIP: true, MaxPeersPerSwarm: 4,
		Policy: tracker.NewTopologyPolicy(tracker.TopologyConfig{Remote: 1, MaxTracked: 8}),
		Locations: []tracker.LocationRule{
			{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Location: "eu/a"},
			{Prefix: netip.MustParsePrefix("127.0.0.0/30"), Location: "eu/b"},
		}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, raw string) {
		req := httptest.NewRequest(http.MethodGet, "/announce", nil)
		req.URL.RawQuery = raw
		req.RemoteAddr = "127.0.0.1:5000"
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d for %q", rec.Code, raw)
		}
		var d map[string]any
		if err := bencode.Unmarshal(rec.Body.Bytes(), &d); err != nil {
			t.Fatalf("body %q is not bencode: %v", rec.Body.Bytes(), err)
		}
		if reason, failed := d["failure reason"]; failed {
			if len(d) != 1 {
				t.Fatalf("failure with other keys: %q", rec.Body.Bytes())
			}
			if (rec.Code == http.StatusServiceUnavailable) != (reason == "tracker full") {
				t.Fatalf("status %d with failure reason %q", rec.Code, reason)
			}
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d for a successful announce %q", rec.Code, rec.Body.Bytes())
		}
		for _, key := range []string{"complete", "incomplete", "interval", "min interval", "peers", "peers6"} {
			if _, ok := d[key]; !ok {
				t.Fatalf("response %q lacks %q", rec.Body.Bytes(), key)
			}
		}
		if len(d["peers"].(string))%6 != 0 || len(d["peers6"].(string))%18 != 0 {
			t.Fatalf("ragged compact peers in %q", rec.Body.Bytes())
		}
	})
}
