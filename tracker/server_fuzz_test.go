package tracker_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/anacrolix/torrent/bencode"

	"github.com/eagle-p2p/eagle/tracker"
)

// FuzzServeAnnounce drives arbitrary queries through the whole handler: every
// answer must be 200 with a bencoded dictionary that is either a lone failure
// reason or a complete announce response.
func FuzzServeAnnounce(f *testing.F) {
	f.Add("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=6881&left=0")
	f.Add("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=cccccccccccccccccccc&port=6882&left=7&numwant=3&ip=::1")
	f.Add("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=6881&left=0&event=stopped")
	f.Add("info_hash=%%%&port=x")
	s, err := tracker.New(tracker.Config{TrustClientIP: true}, nil, nil)
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
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d for %q", rec.Code, raw)
		}
		var d map[string]any
		if err := bencode.Unmarshal(rec.Body.Bytes(), &d); err != nil {
			t.Fatalf("body %q is not bencode: %v", rec.Body.Bytes(), err)
		}
		if _, failed := d["failure reason"]; failed {
			if len(d) != 1 {
				t.Fatalf("failure with other keys: %q", rec.Body.Bytes())
			}
			return
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
