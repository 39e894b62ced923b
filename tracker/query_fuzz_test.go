package tracker

import (
	"net/url"
	"strconv"
	"testing"
)

var announceSeeds = []string{
	"info_hash=%12%34Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A&peer_id=-TR2940-5ert69muw5t8&port=51413&uploaded=0&downloaded=0&left=1000&event=started&numwant=80&compact=1&key=1",
	"info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0",
	"info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=65535&left=9223372036854775807&ip=127.0.0.1&ip=::1",
	"info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=0&left=0",
	"info_hash=%zz&peer_id=b&port=1&left=-1",
	"info_hash=aaaaaaaaaaaaaaaaaaaa&info_hash=aaaaaaaaaaaaaaaaaaaa",
	"port=%36%35%35%33%35&numwant=99999999999999999999&event=stopped&compact=0",
	"&&=&a=b=c&%41=1&+=+;x",
	"info_hash=aaaaaaaaaaaaaaaaaaa%",
	"info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0&location=eu-west-1%2Feu-west-1a%2Frack_7",
	"info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0&location=a/b/c/d/e/f/g/h/i&location=",
	"location=eu+west&location=%2F%2F",
}

// FuzzParseAnnounce checks that the announce parser never panics, agrees with
// net/url on what it accepts, and only returns values in range.
func FuzzParseAnnounce(f *testing.F) {
	for _, s := range announceSeeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, trustIP bool) {
		req, err := parseAnnounce(raw, trustIP)
		if err != nil {
			if _, ok := err.(*fieldError); !ok {
				t.Fatalf("error %v is a %T, not a fieldError naming the parameter", err, err)
			}
			return
		}
		if req.port == 0 || req.left < 0 || req.uploaded < 0 || req.downloaded < 0 || req.numWant < -1 {
			t.Fatalf("out-of-range result %+v from %q", req, raw)
		}
		if req.ip.IsValid() && (!trustIP || req.ip.Is4In6()) {
			t.Fatalf("ip %v returned (trusted %v) from %q", req.ip, trustIP, raw)
		}
		if err := ValidLocation(req.location); err != nil {
			t.Fatalf("location %q returned from %q: %v", req.location, raw, err)
		}
		// Where the standard parser also accepts the query, both must read
		// the same values.
		q, qerr := url.ParseQuery(raw)
		if qerr != nil {
			return
		}
		if got := q.Get("info_hash"); got != string(req.infoHash[:]) {
			t.Fatalf("info_hash %q, net/url reads %q", req.infoHash, got)
		}
		if got := q.Get("peer_id"); got != string(req.peerID[:]) {
			t.Fatalf("peer_id %q, net/url reads %q", req.peerID, got)
		}
		if got, err := strconv.ParseUint(q.Get("port"), 10, 16); err != nil || got != uint64(req.port) {
			t.Fatalf("port %d, net/url reads %q", req.port, q.Get("port"))
		}
		if got, err := strconv.ParseInt(q.Get("left"), 10, 64); err != nil || got != req.left {
			t.Fatalf("left %d, net/url reads %q", req.left, q.Get("left"))
		}
		if got := q.Get("location"); got != req.location {
			t.Fatalf("location %q, net/url reads %q", req.location, got)
		}
	})
}

// FuzzParseScrape checks that the scrape parser never panics and agrees with
// net/url.
func FuzzParseScrape(f *testing.F) {
	f.Add("info_hash=aaaaaaaaaaaaaaaaaaaa&info_hash=%12%34Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A")
	f.Add("info_hash=short&x=%zz")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		hashes, err := parseScrape(raw)
		if err != nil {
			if _, ok := err.(*fieldError); !ok {
				t.Fatalf("error %v is a %T, not a fieldError", err, err)
			}
			return
		}
		if len(hashes) == 0 || len(hashes) > maxScrapeHashes {
			t.Fatalf("%d hashes returned without error", len(hashes))
		}
		if q, qerr := url.ParseQuery(raw); qerr == nil {
			want := q["info_hash"]
			if len(want) != len(hashes) {
				t.Fatalf("%d hashes, net/url reads %d", len(hashes), len(want))
			}
			for i := range want {
				if want[i] != string(hashes[i][:]) {
					t.Fatalf("hash %d is %q, net/url reads %q", i, hashes[i], want[i])
				}
			}
		}
	})
}
