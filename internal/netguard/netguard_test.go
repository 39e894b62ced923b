package netguard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"unicode"

	"github.com/eagle-p2p/eagle/internal/netguard"
)

var (
	nonPublicAddrs = []string{
		"127.0.0.1", "127.255.255.254", "::1",
		"10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", "169.254.0.1", "fe80::1",
		"fc00::1", "fd00:ec2::254", "fd12:3456::1",
		"100.64.0.1", "100.127.255.255",
		"0.0.0.0", "0.1.2.3", "::",
		"224.0.0.1", "239.255.255.250", "ff02::1", "ff05::2",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
		"192.0.0.8", "192.0.2.1", "198.51.100.7", "203.0.113.9", "2001:db8::1",
		"198.18.0.1", "198.19.255.255",
		"240.0.0.1", "255.255.255.255",
		"64:ff9b::a00:1", "64:ff9b::7f00:1", "2002:a00:1::1", "2002:7f00:1::1", "fec0::1", "100::1",
		"::7f00:1", "::a00:1",
	}
	publicAddrs = []string{
		"1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "93.184.216.34",
		"::ffff:1.1.1.1", "172.32.0.1", "172.15.255.255", "100.128.0.1", "11.0.0.1",
		"2a00:1450:4001:80b::200e",
		"64:ff9b::808:808", "2002:808:808::1", // NAT64 and 6to4 of 8.8.8.8
	}
)

func TestPublic(t *testing.T) {
	for _, s := range nonPublicAddrs {
		if netguard.Public(netip.MustParseAddr(s)) {
			t.Errorf("Public(%s) = true, want false", s)
		}
	}
	for _, s := range publicAddrs {
		if !netguard.Public(netip.MustParseAddr(s)) {
			t.Errorf("Public(%s) = false, want true", s)
		}
	}
	if netguard.Public(netip.Addr{}) {
		t.Error("Public of the zero Addr = true")
	}
}

// An IPv6 zone ("%eth0") changes nothing about where a global address
// leads: the kernel ignores the scope of a non-link-local destination.
func TestPublicIgnoresZone(t *testing.T) {
	var bypass []string
	for _, s := range nonPublicAddrs {
		ip := netip.MustParseAddr(s)
		if !ip.Is6() || ip.Is4In6() {
			continue
		}
		if netguard.Public(ip.WithZone("eth0")) {
			bypass = append(bypass, s+"%eth0")
		}
	}
	if len(bypass) > 0 {
		// Prefix.Contains is false for a zoned address: Public must drop
		// the zone first.
		t.Errorf("zoned non-public addresses pass as public: %s", strings.Join(bypass, ", "))
	}
}

func TestParseHostsAndMatch(t *testing.T) {
	h, err := netguard.ParseHosts([]string{
		"registry.internal",
		"Storage.Internal:9000",
		"*.blob.example.com",
		"*.cdn.example:443",
		"10.1.2.3",
		"10.9.9.9:5000",
		"[fd00::1]:5000",
		"fd00::2",
		"  padded.example  ",
	})
	if err != nil {
		t.Fatalf("ParseHosts: %v", err)
	}
	if h.Len() != 9 {
		t.Fatalf("Len = %d, want 9", h.Len())
	}
	for hostport, want := range map[string]bool{
		"registry.internal":         true,
		"registry.internal:5000":    true,
		"REGISTRY.Internal:443":     true,
		"registry.internal.evil":    false,
		"xregistry.internal":        false,
		"a.registry.internal":       false,
		"storage.internal:9000":     true,
		"STORAGE.INTERNAL:9000":     true,
		"storage.internal:9001":     false,
		"storage.internal":          false,
		"a.blob.example.com":        true,
		"a.b.blob.example.com:8443": true,
		"A.BLOB.Example.COM":        true,
		"blob.example.com":          false,
		"badblob.example.com":       false,
		"a.badblob.example.com":     false,
		"blob.example.com.evil":     false,
		"x.cdn.example:443":         true,
		"x.cdn.example:80":          false,
		"cdn.example:443":           false,
		"10.1.2.3":                  true,
		"10.1.2.3:80":               true,
		"10.1.2.30":                 false,
		"10.9.9.9:5000":             true,
		"10.9.9.9:5001":             false,
		"[fd00::1]:5000":            true,
		"[FD00::1]:5000":            true,
		"[fd00::1]:5001":            false,
		"[fd00::2]:80":              true,
		"[fd00::2]":                 true,
		"fd00::2":                   true,
		"padded.example:1":          true,
		"":                          false,
		"[":                         false,
		":":                         false,
	} {
		if got := h.Match(hostport); got != want {
			t.Errorf("Match(%q) = %v, want %v", hostport, got, want)
		}
	}
	empty, err := netguard.ParseHosts(nil)
	if err != nil || empty.Len() != 0 || empty.Match("localhost") {
		t.Errorf("empty list: %v, %d patterns, matches localhost %v", err, empty.Len(), empty.Match("localhost"))
	}
}

func TestParseHostsRefusesBadPatterns(t *testing.T) {
	for _, bad := range []string{
		"", "   ",
		"http://registry.internal", "registry.internal/v2", "host?x", "host#x", "user@host", "a b",
		"*", "*.", "*.*.example.com", "a.*.example.com", "*example.com", "ex*ample.com", "*.example.*",
		"host:", "host:0", "host:65536", "host:99999", "host:-1", "host:http",
		"[fd00::1", "[fd00::1]", "[fd00::1]:", "[fd00::1]:x", ":80",
	} {
		list := []string{"good.example", "good.example:443", bad}
		_, err := netguard.ParseHosts(list)
		if err == nil {
			t.Errorf("ParseHosts accepted %q", bad)
			continue
		}
		if want := fmt.Sprintf("[2] %q", bad); !strings.Contains(err.Error(), want) {
			t.Errorf("ParseHosts(%q): %q does not name the entry as %s", bad, err, want)
		}
	}
}

// server starts an HTTP server on addr ("127.0.0.1:0", "127.0.0.2:0")
// that counts its requests.
type server struct {
	*httptest.Server
	hits atomic.Int32
}

func startServer(t *testing.T, addr string, h http.HandlerFunc) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// guardedClient is an http.Client under g, the way an origin client uses
// a Guard.
func guardedClient(t *testing.T, g *netguard.Guard) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: g.DialContext(&net.Dialer{})}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: g.CheckRedirect}
}

func listed(t *testing.T, patterns ...string) netguard.Hosts {
	t.Helper()
	h, err := netguard.ParseHosts(patterns)
	if err != nil {
		t.Fatalf("ParseHosts: %v", err)
	}
	return h
}

func get(t *testing.T, c *http.Client, u string) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// redirector starts a listed origin that redirects to its "to" parameter.
func redirector(t *testing.T) *server {
	return startServer(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusTemporaryRedirect)
	})
}

func via(origin *server, to string) string {
	return origin.URL + "/redirect?to=" + url.QueryEscape(to)
}

func TestCheckRedirect(t *testing.T) {
	origin := redirector(t)
	unlisted := startServer(t, "127.0.0.1:0", nil)
	storage := startServer(t, "127.0.0.2:0", nil)
	g := &netguard.Guard{Listed: listed(t, origin.Listener.Addr().String(), "127.0.0.2")}
	c := guardedClient(t, g)

	t.Run("listed", func(t *testing.T) {
		status, err := get(t, c, via(origin, storage.URL+"/blob"))
		if err != nil || status != http.StatusOK {
			t.Fatalf("redirect to listed %s: %d, %v", storage.URL, status, err)
		}
		if storage.hits.Load() != 1 {
			t.Fatalf("listed storage got %d requests, want 1", storage.hits.Load())
		}
	})

	for name, to := range map[string]string{
		// The origin's own address is listed, with its port only.
		"listed ip, other port": unlisted.URL + "/blob",
		"localhost":             "http://localhost:" + portOf(unlisted) + "/blob",
		"LOCALHOST":             "http://LOCALHOST:" + portOf(unlisted) + "/blob",
		"mapped loopback":       "http://[::ffff:127.0.0.1]:" + portOf(unlisted) + "/blob",
		"ipv6 loopback":         "http://[::1]:" + portOf(unlisted) + "/blob",
	} {
		t.Run(name, func(t *testing.T) {
			before := unlisted.hits.Load()
			_, err := get(t, c, via(origin, to))
			if !errors.Is(err, netguard.ErrBlocked) {
				t.Fatalf("redirect to %s: %v, want ErrBlocked", to, err)
			}
			if unlisted.hits.Load() != before {
				t.Fatalf("the unlisted server at %s was reached", to)
			}
		})
	}

	for _, to := range []string{"file:///etc/passwd", "ftp://127.0.0.2/x", "gopher://127.0.0.2:70/", "data:,hello"} {
		t.Run("scheme "+to, func(t *testing.T) {
			_, err := get(t, c, via(origin, to))
			if !errors.Is(err, netguard.ErrBlocked) || !strings.Contains(err.Error(), "scheme") {
				t.Fatalf("redirect to %s: %v, want ErrBlocked naming the scheme", to, err)
			}
		})
	}
}

func portOf(s *server) string {
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	return port
}

func TestCheckRedirectLimit(t *testing.T) {
	var loop *server
	loop = startServer(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loop.URL+"/again", http.StatusFound)
	})
	// As net/http counts: MaxRedirects requests at most, the first one
	// included (zero means 10).
	for _, limit := range []int{0, 1, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			g := &netguard.Guard{Listed: listed(t, loop.Listener.Addr().String()), MaxRedirects: limit}
			before := loop.hits.Load()
			_, err := get(t, guardedClient(t, g), loop.URL)
			if !errors.Is(err, netguard.ErrBlocked) {
				t.Fatalf("endless redirects: %v, want ErrBlocked", err)
			}
			want := limit
			if want == 0 {
				want = 10
			}
			if got := loop.hits.Load() - before; int(got) != want {
				t.Fatalf("%d requests sent, want %d (the first and %d redirects)", got, want, want-1)
			}
		})
	}

	// A shorter chain arrives.
	var n atomic.Int32
	var chain *server
	chain = startServer(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			http.Redirect(w, r, chain.URL+"/next", http.StatusFound)
			return
		}
		io.WriteString(w, "here")
	})
	g := &netguard.Guard{Listed: listed(t, chain.Listener.Addr().String()), MaxRedirects: 3}
	if status, err := get(t, guardedClient(t, g), chain.URL); err != nil || status != http.StatusOK {
		t.Fatalf("two redirects under a limit of 3: %d, %v", status, err)
	}
}

// CheckRedirect refuses non-public IP literals without a connection: these
// addresses are never dialled.
func TestCheckRedirectRefusesNonPublicLiterals(t *testing.T) {
	g := &netguard.Guard{Listed: listed(t, "10.1.2.3:5000", "fd00::5")}
	prev := []*http.Request{{}}
	for _, host := range []string{
		"169.254.169.254", "10.0.0.1:8080", "192.168.0.1", "172.16.5.4", "100.64.0.1",
		"[fd00:ec2::254]", "[fe80::1]:80", "[fc00::1]", "0.0.0.0", "[::]", "[::ffff:10.0.0.1]",
		"10.1.2.3:5001", "224.0.0.1", "localhost", "localhost:5000", "x.LocalHost",
	} {
		req := &http.Request{URL: &url.URL{Scheme: "http", Host: host, Path: "/"}}
		if err := g.CheckRedirect(req, prev); !errors.Is(err, netguard.ErrBlocked) {
			t.Errorf("redirect to %s: %v, want ErrBlocked", host, err)
		}
	}
	for _, host := range []string{"10.1.2.3:5000", "[fd00::5]:443", "1.1.1.1", "[2606:4700:4700::1111]:443", "registry.example.com"} {
		req := &http.Request{URL: &url.URL{Scheme: "https", Host: host, Path: "/"}}
		if err := g.CheckRedirect(req, prev); err != nil {
			t.Errorf("redirect to %s: %v, want it allowed", host, err)
		}
	}
}

func TestDialContext(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	addr := "localhost:" + portOf(srv)

	t.Run("unlisted", func(t *testing.T) {
		g := &netguard.Guard{Listed: listed(t, "localhost:1", "*.localhost")}
		dial := g.DialContext(&net.Dialer{})
		for _, a := range []string{addr, srv.Listener.Addr().String()} {
			conn, err := dial(t.Context(), "tcp", a)
			if err == nil {
				conn.Close()
				t.Fatalf("dialled unlisted %s", a)
			}
			if !errors.Is(err, netguard.ErrBlocked) {
				t.Fatalf("dial %s: %v, want ErrBlocked", a, err)
			}
		}
		before := srv.hits.Load()
		if _, err := get(t, guardedClient(t, g), "http://"+addr+"/"); !errors.Is(err, netguard.ErrBlocked) {
			t.Fatalf("GET %s: %v, want ErrBlocked", addr, err)
		}
		if srv.hits.Load() != before {
			t.Fatal("the unlisted server was reached")
		}
	})

	for _, pattern := range []string{addr, "localhost", "LocalHost:" + portOf(srv)} {
		t.Run("listed "+pattern, func(t *testing.T) {
			g := &netguard.Guard{Listed: listed(t, pattern)}
			conn, err := g.DialContext(&net.Dialer{})(t.Context(), "tcp", addr)
			if err != nil {
				t.Fatalf("dial listed %s: %v", addr, err)
			}
			conn.Close()
			if status, err := get(t, guardedClient(t, g), "http://"+addr+"/"); err != nil || status != http.StatusOK {
				t.Fatalf("GET %s: %d, %v", addr, status, err)
			}
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		g := &netguard.Guard{Listed: listed(t, addr)}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if conn, err := g.DialContext(&net.Dialer{})(ctx, "tcp", addr); err == nil {
			conn.Close()
			t.Fatal("dialled with a cancelled context")
		}
	})
}

// isASCII reports whether s is plain ASCII, where upper and lower case
// round-trip.
func isASCII(s string) bool {
	for _, r := range s {
		if r > unicode.MaxASCII {
			return false
		}
	}
	return true
}

// saneHost reports whether a pattern's text is made of what host names,
// IP literals and ports are made of, with brackets only around an IPv6
// literal.
func saneHost(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_:*[]", r)) {
			return false
		}
	}
	return !strings.ContainsAny(s, "[]") || strings.HasPrefix(s, "[")
}

func FuzzParseHosts(f *testing.F) {
	for _, s := range [][2]string{
		{"registry.internal", "registry.internal:5000"},
		{"*.example.com", "a.example.com"},
		{"*.example.com", "example.com"},
		{"*.example.com:443", "a.b.example.com:443"},
		{"[fd00::1]:5000", "[fd00::1]:5000"},
		{"fd00::1", "[FD00::1]"},
		{"10.1.2.3,10.1.2.4:80", "10.1.2.4:80"},
		{"host:0", ""},
		{"*.", "."},
		{"[", "]"},
		{"a:b:c", "a:b:c"},
		{" Host ", "host"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, patterns, hostport string) {
		list := strings.Split(patterns, ",")
		h, err := netguard.ParseHosts(list)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "[") {
				t.Fatalf("error %q does not name the entry", err)
			}
			if h.Len() != 0 {
				t.Fatalf("refused list has %d patterns", h.Len())
			}
			return
		}
		if h.Len() != len(list) {
			t.Fatalf("%d patterns from %d entries", h.Len(), len(list))
		}
		m := h.Match(hostport)
		if isASCII(hostport) && (h.Match(strings.ToUpper(hostport)) != m || h.Match(strings.ToLower(hostport)) != m) {
			t.Fatalf("Match(%q) depends on case", hostport)
		}
		g := &netguard.Guard{Listed: h}
		_ = g.CheckRedirect(&http.Request{URL: &url.URL{Scheme: "https", Host: hostport}}, nil)

		// One plain entry matches what it names.
		if len(list) != 1 {
			return
		}
		p := strings.ToLower(strings.TrimSpace(list[0]))
		if !saneHost(p) {
			return
		}
		if rest, ok := strings.CutPrefix(p, "*."); ok {
			if !h.Match("a." + rest) {
				t.Fatalf("pattern %q does not match %q", p, "a."+rest)
			}
			if h.Match(rest) {
				t.Fatalf("wildcard %q matches %q itself", p, rest)
			}
			if h.Match("a" + rest) {
				t.Fatalf("wildcard %q matches %q", p, "a"+rest)
			}
			return
		}
		if !h.Match(p) {
			t.Fatalf("pattern %q does not match itself", p)
		}
		if host, port, err := net.SplitHostPort(p); err == nil && port != "" {
			other := "1"
			if port == "1" {
				other = "2"
			}
			if h.Match(net.JoinHostPort(host, other)) {
				t.Fatalf("pattern %q matches port %s", p, other)
			}
		}
	})
}

func FuzzPublic(f *testing.F) {
	for _, s := range append(append([]string{}, nonPublicAddrs...), publicAddrs...) {
		f.Add([]byte(netip.MustParseAddr(s).AsSlice()))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		public := netguard.Public(ip)
		if !ok {
			if public {
				t.Fatalf("Public of an invalid address (%x) = true", b)
			}
			return
		}
		if public && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified()) {
			t.Fatalf("Public(%s) = true", ip)
		}
		if ip.Is4() {
			if netguard.Public(netip.AddrFrom16(ip.As16())) != public {
				t.Fatalf("Public(%s) = %v, but not for its IPv4-mapped form", ip, public)
			}
			for _, p := range []string{"0.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "192.0.2.0/24", "198.18.0.0/15", "240.0.0.0/4"} {
				if public && netip.MustParsePrefix(p).Contains(ip) {
					t.Fatalf("Public(%s) = true, in %s", ip, p)
				}
			}
		}
		// The string form, as a URL or a resolver gives it, is judged alike.
		if back, err := netip.ParseAddr(ip.String()); err != nil || netguard.Public(back) != public {
			t.Fatalf("Public(%s) = %v, but %v for its string form (%v)", ip, public, !public, err)
		}
		// So is a redirect to it.
		host := ip.String()
		if ip.Is6() {
			host = "[" + host + "]"
		}
		err := (&netguard.Guard{}).CheckRedirect(&http.Request{URL: &url.URL{Scheme: "http", Host: host}}, nil)
		if public != (err == nil) {
			t.Fatalf("Public(%s) = %v, but CheckRedirect says %v", ip, public, err)
		}
	})
}
