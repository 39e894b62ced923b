package tracker_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

// newServer returns a Server over its own MemoryStore, closed with the test.
func newServer(t testing.TB, cfg tracker.Config) *tracker.Server {
	t.Helper()
	s, err := tracker.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// announceQuery is the query of an announce by peer n of swarm 1, with extra
// parameters added or, when their value is "-", removed.
func announceQuery(n int, left int64, extra ...string) string {
	ih, id := storetest.Hash(1), storetest.ID(n)
	q := url.Values{
		"info_hash":  {string(ih[:])},
		"peer_id":    {string(id[:])},
		"port":       {strconv.Itoa(10000 + n)},
		"uploaded":   {"0"},
		"downloaded": {"0"},
		"left":       {strconv.FormatInt(left, 10)},
		"compact":    {"1"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "-" {
			q.Del(extra[i])
		} else {
			q.Set(extra[i], extra[i+1])
		}
	}
	return q.Encode()
}

type response struct {
	status int
	raw    string
	dict   map[string]any
}

// get serves one request from remote (an IP) and decodes the bencoded body.
func get(t *testing.T, h http.Handler, remote, target string) response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(remote), 40000).String()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := response{status: rec.Code, raw: rec.Body.String()}
	if r.status == http.StatusOK || r.status == http.StatusInternalServerError || r.status == http.StatusServiceUnavailable {
		if err := bencode.Unmarshal(rec.Body.Bytes(), &r.dict); err != nil {
			t.Fatalf("GET %s: body %q is not bencode: %v", target, r.raw, err)
		}
	}
	return r
}

func (r response) failure() string {
	s, _ := r.dict["failure reason"].(string)
	return s
}

func (r response) int(key string) int64 {
	v, _ := r.dict[key].(int64)
	return v
}

// peers decodes the compact "peers" and "peers6" strings.
func (r response) peers(t *testing.T) []netip.AddrPort {
	t.Helper()
	var out []netip.AddrPort
	for key, size := range map[string]int{"peers": 6, "peers6": 18} {
		s, ok := r.dict[key].(string)
		if !ok {
			t.Fatalf("response %q has no %s string", r.raw, key)
		}
		if len(s)%size != 0 {
			t.Fatalf("%s is %d bytes, not a multiple of %d", key, len(s), size)
		}
		for ; s != ""; s = s[size:] {
			a, _ := netip.AddrFromSlice([]byte(s[:size-2]))
			out = append(out, netip.AddrPortFrom(a, binary.BigEndian.Uint16([]byte(s[size-2:size]))))
		}
	}
	return out
}

func mustAnnounce(t *testing.T, h http.Handler, remote, query string) response {
	t.Helper()
	r := get(t, h, remote, "/announce?"+query)
	if r.status != http.StatusOK || r.failure() != "" || r.dict["failure reason"] != nil {
		t.Fatalf("announce %s: status %d body %q", query, r.status, r.raw)
	}
	return r
}

func TestAnnounceResponseBytes(t *testing.T) {
	s := newServer(t, tracker.Config{})
	mustAnnounce(t, s, "127.0.0.2", announceQuery(2, 0))
	mustAnnounce(t, s, "::1", announceQuery(3, 0))
	r := mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 100))
	// Keys sorted, both peer lists compact, no failure reason.
	want := "d8:completei2e10:incompletei1e8:intervali10e12:min intervali5e" +
		"5:peers6:\x7f\x00\x00\x02\x27\x12" +
		"6:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x27\x13e"
	if r.raw != want {
		t.Errorf("response\n%q\nwant\n%q", r.raw, want)
	}
}

func TestAnnounceBadInput(t *testing.T) {
	s := newServer(t, tracker.Config{})
	for _, tc := range []struct {
		name, query, want string
	}{
		{"no info_hash", announceQuery(1, 0, "info_hash", "-"), "info_hash: missing"},
		{"short info_hash", announceQuery(1, 0, "info_hash", "0123456789012345678"), "info_hash: must be 20 bytes, got 19"},
		{"long info_hash", announceQuery(1, 0, "info_hash", "012345678901234567890"), "info_hash: must be 20 bytes, got 21"},
		{"bad escape", strings.Replace(announceQuery(1, 0), "info_hash=", "info_hash=%zz", 1), "info_hash: malformed % escape"},
		{"truncated escape", announceQuery(1, 0) + "&info_hash=%4", "info_hash: malformed % escape"},
		{"repeated info_hash", announceQuery(1, 0) + "&info_hash=" + url.QueryEscape("01234567890123456789"), "info_hash: given more than once"},
		{"no peer_id", announceQuery(1, 0, "peer_id", "-"), "peer_id: missing"},
		{"short peer_id", announceQuery(1, 0, "peer_id", "abc"), "peer_id: must be 20 bytes, got 3"},
		{"no port", announceQuery(1, 0, "port", "-"), "port: missing"},
		{"port 0", announceQuery(1, 0, "port", "0"), "port: must be 1-65535, got 0"},
		{"port 65536", announceQuery(1, 0, "port", "65536"), "port: must be an integer 1-65535"},
		{"negative port", announceQuery(1, 0, "port", "-1"), "port: must be an integer 1-65535"},
		{"port text", announceQuery(1, 0, "port", "http"), "port: must be an integer 1-65535"},
		{"no left", announceQuery(1, 0, "left", "-"), "left: missing"},
		{"negative left", announceQuery(1, 0, "left", "-1"), "left: must be a non-negative integer"},
		{"signed left", announceQuery(1, 0, "left", "+1"), "left: must be a non-negative integer"},
		{"huge left", announceQuery(1, 0, "left", "9223372036854775808"), "left: must be a non-negative integer"},
		{"empty left", announceQuery(1, 0, "left", ""), "left: must be a non-negative integer"},
		{"negative uploaded", announceQuery(1, 0, "uploaded", "-5"), "uploaded: must be a non-negative integer"},
		{"bad downloaded", announceQuery(1, 0, "downloaded", "1e3"), "downloaded: must be a non-negative integer"},
		{"bad event", announceQuery(1, 0, "event", "paused"), `event: must be started, completed, stopped or empty, got "paused"`},
		{"bad numwant", announceQuery(1, 0, "numwant", "ten"), "numwant: must be a non-negative integer"},
		{"negative numwant", announceQuery(1, 0, "numwant", "-1"), "numwant: must be a non-negative integer"},
		{"bad compact", announceQuery(1, 0, "compact", "yes"), "compact: must be 0 or 1"},
		{"repeated port", announceQuery(1, 0) + "&port=80", "port: given more than once"},
		{"bad parameter name", announceQuery(1, 0) + "&%zz=1", "query: malformed parameter name"},
		{"location with a space", announceQuery(1, 0, "location", "eu west/a"), `location: "eu west/a": segment 1 holds ' '`},
		{"location empty segment", announceQuery(1, 0, "location", "eu//a"), `location: "eu//a": segment 2 is empty`},
		{"location trailing slash", announceQuery(1, 0, "location", "eu/"), `location: "eu/": segment 2 is empty`},
		{"location 9 segments", announceQuery(1, 0, "location", "a/b/c/d/e/f/g/h/i"), "location: \"a/b/c/d/e/f/g/h/i\": more than 8 segments"},
		{"location long segment", announceQuery(1, 0, "location", strings.Repeat("x", 64)), "location: \"" + strings.Repeat("x", 64) + "\": segment 1 is 64 bytes, at most 63"},
		{"location too long", announceQuery(1, 0, "location", strings.Repeat("x/", 128)), "location: 256 bytes, at most 255 allowed"},
		{"location bad escape", announceQuery(1, 0) + "&location=eu%2", "location: malformed % escape"},
		{"repeated location", announceQuery(1, 0, "location", "eu") + "&location=us", "location: given more than once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, s, "127.0.0.1", "/announce?"+tc.query)
			if r.status != http.StatusOK {
				t.Errorf("status %d, want 200 (BEP 3 failures are 200)", r.status)
			}
			if !strings.HasPrefix(r.failure(), tc.want) {
				t.Errorf("failure reason %q, want prefix %q", r.failure(), tc.want)
			}
			if len(r.dict) != 1 {
				t.Errorf("failure response has keys besides failure reason: %q", r.raw)
			}
		})
	}
	// Nothing malformed reached the store.
	r := mustAnnounce(t, s, "127.0.0.9", announceQuery(9, 0))
	if r.int("complete") != 1 || r.int("incomplete") != 0 {
		t.Errorf("store has %d complete %d incomplete after only bad announces, want just the new one", r.int("complete"), r.int("incomplete"))
	}
}

func TestAnnounceAcceptsOptionalAndUnknownParameters(t *testing.T) {
	s := newServer(t, tracker.Config{})
	// No uploaded/downloaded/compact/event, escaped numbers, compact=0 and the
	// parameters anacrolix and libtorrent add.
	q := announceQuery(1, 5, "uploaded", "-", "downloaded", "-", "compact", "0") +
		"&key=1234&supportcrypto=1&ipv4=127.0.0.1&no_peer_id=1&event=&numwant=%35&" +
		strings.Repeat("%78", 70) + "=1"
	mustAnnounce(t, s, "127.0.0.1", q)
	r := mustAnnounce(t, s, "127.0.0.2", announceQuery(2, 0, "compact", "0"))
	if got := r.peers(t); len(got) != 1 || got[0] != netip.MustParseAddrPort("127.0.0.1:10001") {
		t.Errorf("peers = %v, want the first peer in compact form", got)
	}
}

func TestAnnounceNumWant(t *testing.T) {
	s := newServer(t, tracker.Config{MaxNumWant: 30, NumWant: 20})
	for n := 1; n <= 100; n++ {
		mustAnnounce(t, s, "127.0.1.1", announceQuery(n, 10))
	}
	for _, tc := range []struct {
		numwant string
		want    int
	}{
		{"-", 20}, {"0", 0}, {"1", 1}, {"25", 25}, {"30", 30}, {"31", 30}, {"1000000", 30}, {"99999999999999999999999", 30},
	} {
		r := mustAnnounce(t, s, "127.0.2.1", announceQuery(200, 10, "numwant", tc.numwant))
		got := r.peers(t)
		if len(got) != tc.want {
			t.Errorf("numwant %s: got %d peers, want %d", tc.numwant, len(got), tc.want)
		}
		if len(slices.Compact(slices.SortedFunc(slices.Values(got), netip.AddrPort.Compare))) != len(got) {
			t.Errorf("numwant %s: duplicate peers in %v", tc.numwant, got)
		}
		if r.int("incomplete") != 101 {
			t.Errorf("incomplete = %d, want 101", r.int("incomplete"))
		}
	}
}

func TestAnnounceNeverHandsOutSelf(t *testing.T) {
	s := newServer(t, tracker.Config{})
	mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 10))
	for range 5 {
		r := mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 10))
		if got := r.peers(t); len(got) != 0 {
			t.Fatalf("lone peer was handed %v", got)
		}
	}
	// A client restarted with a new peer ID on the same address is not handed
	// its old entry either.
	r := mustAnnounce(t, s, "127.0.0.1", announceQuery(2, 10, "port", "10001"))
	if got := r.peers(t); len(got) != 0 {
		t.Errorf("restarted peer was handed its old self %v", got)
	}
}

func TestAnnounceSeedersGetOnlyLeechers(t *testing.T) {
	s := newServer(t, tracker.Config{})
	mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 0))
	mustAnnounce(t, s, "127.0.0.2", announceQuery(2, 0))
	mustAnnounce(t, s, "127.0.0.3", announceQuery(3, 50))
	r := mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 0))
	if got := r.peers(t); len(got) != 1 || got[0] != netip.MustParseAddrPort("127.0.0.3:10003") {
		t.Errorf("seeder was handed %v, want only the leecher", got)
	}
	// The completeness policy hands the leecher the seeders first.
	mustAnnounce(t, s, "127.0.0.4", announceQuery(4, 10))
	r = mustAnnounce(t, s, "127.0.0.3", announceQuery(3, 50))
	got := r.peers(t)
	if len(got) != 3 || got[2] != netip.MustParseAddrPort("127.0.0.4:10004") {
		t.Errorf("leecher was handed %v, want both seeders, then the other leecher", got)
	}
}

func TestAnnounceClientIP(t *testing.T) {
	for _, trust := range []bool{false, true} {
		t.Run(fmt.Sprint("trust=", trust), func(t *testing.T) {
			s := newServer(t, tracker.Config{TrustClientIP: trust})
			mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 10)+"&ip=127.0.0.77&ip=127.0.0.78")
			r := mustAnnounce(t, s, "127.0.0.2", announceQuery(2, 10))
			want := netip.MustParseAddrPort("127.0.0.1:10001")
			if trust {
				want = netip.MustParseAddrPort("127.0.0.77:10001")
			}
			if got := r.peers(t); len(got) != 1 || got[0] != want {
				t.Errorf("peers = %v, want %v", got, want)
			}
			// A malformed ip is an error only when it would be used.
			r = get(t, s, "127.0.0.3", "/announce?"+announceQuery(3, 10)+"&ip=example.com")
			if trust && !strings.HasPrefix(r.failure(), `ip: must be an IPv4 or IPv6 address, got "example.com"`) {
				t.Errorf("trusted bad ip: failure %q", r.failure())
			}
			if !trust && r.failure() != "" {
				t.Errorf("untrusted bad ip: failure %q, want it ignored", r.failure())
			}
			r = get(t, s, "127.0.0.3", "/announce?"+announceQuery(3, 10)+"&ip=0.0.0.0")
			if trust && r.failure() != "ip: must be a unicast address, got 0.0.0.0" {
				t.Errorf("trusted unspecified ip: failure %q", r.failure())
			}
		})
	}
}

func TestAnnounceIPv6(t *testing.T) {
	s := newServer(t, tracker.Config{TrustClientIP: true})
	mustAnnounce(t, s, "::1", announceQuery(1, 0))
	mustAnnounce(t, s, "127.0.0.1", announceQuery(2, 0, "ip", "::ffff:127.0.0.5")) // v4-mapped is v4
	r := mustAnnounce(t, s, "127.0.0.3", announceQuery(3, 10))
	got := r.peers(t)
	slices.SortFunc(got, netip.AddrPort.Compare)
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.5:10002"), netip.MustParseAddrPort("[::1]:10001")}
	if !slices.Equal(got, want) {
		t.Errorf("peers = %v, want %v", got, want)
	}
	if p4 := r.dict["peers"].(string); len(p4) != 6 {
		t.Errorf("peers holds %d bytes, want one IPv4 peer", len(p4))
	}
}

func TestAnnounceEvents(t *testing.T) {
	s := newServer(t, tracker.Config{})
	mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 100, "event", "started"))
	mustAnnounce(t, s, "127.0.0.2", announceQuery(2, 100, "event", "started"))
	r := mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 0, "event", "completed"))
	if r.int("complete") != 1 || r.int("incomplete") != 1 {
		t.Errorf("after completed: %d complete %d incomplete, want 1 and 1", r.int("complete"), r.int("incomplete"))
	}
	r = mustAnnounce(t, s, "127.0.0.2", announceQuery(2, 100, "event", "stopped"))
	if r.int("complete") != 1 || r.int("incomplete") != 0 || len(r.peers(t)) != 0 {
		t.Errorf("stopped response %q: want the peer gone and no peers handed out", r.raw)
	}
	r = mustAnnounce(t, s, "127.0.0.3", announceQuery(3, 100))
	if got := r.peers(t); len(got) != 1 || got[0].Port() != 10001 {
		t.Errorf("after stop, peers = %v, want only peer 1", got)
	}
	ih := storetest.Hash(1)
	sr := get(t, s, "127.0.0.1", "/scrape?info_hash="+url.QueryEscape(string(ih[:])))
	f := sr.dict["files"].(map[string]any)[string(ih[:])].(map[string]any)
	if f["complete"] != int64(1) || f["incomplete"] != int64(1) || f["downloaded"] != int64(1) {
		t.Errorf("scrape = %v, want 1 complete, 1 incomplete, 1 downloaded", f)
	}
}

func TestAnnounceExpiresSilentPeers(t *testing.T) {
	t.Parallel()
	s := newServer(t, tracker.Config{Interval: time.Second, MinInterval: time.Second, PeerTTL: 1500 * time.Millisecond,
		SeedInterval: 2 * time.Second, SeedPeerTTL: 3 * time.Second})
	start := time.Now()
	if r := mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 0)); r.int("interval") != 2 {
		t.Errorf("a complete peer is told interval %d, want the seed interval 2", r.int("interval"))
	}
	mustAnnounce(t, s, "127.0.0.2", announceQuery(2, 10))
	// While the swarm has a downloader its complete peers announce as
	// often as it does.
	if r := mustAnnounce(t, s, "127.0.0.5", announceQuery(5, 0)); r.int("interval") != 1 {
		t.Errorf("a complete peer of a swarm with a downloader is told interval %d, want 1", r.int("interval"))
	}
	mustAnnounce(t, s, "127.0.0.5", announceQuery(5, 0, "event", "stopped"))
	time.Sleep(1700*time.Millisecond - time.Since(start))
	// The silent leecher is gone after the peer TTL; the seed lasts the
	// seed TTL.
	r := mustAnnounce(t, s, "127.0.0.3", announceQuery(3, 10))
	if got := r.peers(t); len(got) != 1 || got[0].Port() != 10001 || r.int("complete") != 1 || r.int("incomplete") != 1 {
		t.Errorf("after the peer TTL: peers %v, %q; want only the seed handed out", got, r.raw)
	}
	if r.int("interval") != 1 || r.int("min interval") != 1 {
		t.Errorf("interval %d min interval %d, want 1 and 1", r.int("interval"), r.int("min interval"))
	}
	time.Sleep(3200*time.Millisecond - time.Since(start))
	r = mustAnnounce(t, s, "127.0.0.4", announceQuery(4, 10))
	if got := r.peers(t); slices.ContainsFunc(got, func(p netip.AddrPort) bool { return p.Port() == 10001 }) || r.int("complete") != 0 {
		t.Errorf("silent seed still handed out after the seed TTL: %v, %q", got, r.raw)
	}
}

func TestScrape(t *testing.T) {
	s := newServer(t, tracker.Config{})
	ih1, ih2, unknown := storetest.Hash(1), storetest.Hash(2), storetest.Hash(3)
	mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 0))
	mustAnnounce(t, s, "127.0.0.2", announceQuery(2, 10))
	mustAnnounce(t, s, "127.0.0.3", announceQuery(3, 0, "info_hash", string(ih2[:])))
	esc := func(ih tracker.InfoHash) string { return url.QueryEscape(string(ih[:])) }
	r := get(t, s, "127.0.0.1", "/scrape?info_hash="+esc(ih2)+"&info_hash="+esc(unknown)+"&info_hash="+esc(ih1)+"&info_hash="+esc(ih2))
	if r.status != http.StatusOK || r.failure() != "" {
		t.Fatalf("scrape: %d %q", r.status, r.raw)
	}
	// Files sorted by info hash, each requested swarm once.
	want := "d5:filesd" +
		"20:" + string(ih1[:]) + "d8:completei1e10:downloadedi0e10:incompletei1ee" +
		"20:" + string(ih2[:]) + "d8:completei1e10:downloadedi0e10:incompletei0ee" +
		"20:" + string(unknown[:]) + "d8:completei0e10:downloadedi0e10:incompletei0ee" +
		"ee"
	if r.raw != want {
		t.Errorf("scrape\n%q\nwant\n%q", r.raw, want)
	}
	many := strings.Repeat("&info_hash="+esc(ih1), 129)
	for _, tc := range []struct{ query, want string }{
		{"", "info_hash: missing"},
		{"info_hash=short", "info_hash: must be 20 bytes, got 5"},
		{"info_hash=%g0", "info_hash: malformed % escape"},
		{many[1:], "info_hash: at most 128 per scrape"},
	} {
		r := get(t, s, "127.0.0.1", "/scrape?"+tc.query)
		if r.status != http.StatusOK || !strings.HasPrefix(r.failure(), tc.want) {
			t.Errorf("scrape?%.40s: %d %q, want failure %q", tc.query, r.status, r.failure(), tc.want)
		}
	}
}

func TestRoutes(t *testing.T) {
	s := newServer(t, tracker.Config{})
	for _, path := range []string{"/", "/announce/", "/announcex", "/scrape/x", "/metrics"} {
		if r := get(t, s, "127.0.0.1", path+"?"+announceQuery(1, 0)); r.status != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, r.status)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/announce?"+announceQuery(1, 0), nil)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET" {
		t.Errorf("POST /announce: status %d Allow %q, want 405 and GET", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestStoreFailure(t *testing.T) {
	store := tracker.NewMemoryStore(tracker.StoreConfig{PeerTTL: time.Minute})
	var logs bytes.Buffer
	s, err := tracker.New(tracker.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, store)
	if err != nil {
		t.Fatal(err)
	}
	// The store is the caller's: closing the server leaves it open.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := store.Announce(context.Background(), storetest.Hash(1), storetest.MakePeer(1, 0)); err != nil {
		t.Fatalf("Server.Close closed a store it does not own: %v", err)
	}
	store.Close()
	ih := storetest.Hash(1)
	for _, target := range []string{"/announce?" + announceQuery(1, 0), "/scrape?info_hash=" + url.QueryEscape(string(ih[:]))} {
		r := get(t, s, "127.0.0.1", target)
		if r.status != http.StatusInternalServerError || r.failure() != "tracker storage unavailable" {
			t.Errorf("%s with a closed store: %d %q, want 500 and a failure reason", target[:9], r.status, r.raw)
		}
	}
	if got := strings.Count(logs.String(), "peer store closed"); got != 2 {
		t.Errorf("logged %d store failures, want 2:\n%s", got, logs.String())
	}
}
