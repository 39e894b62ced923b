// Package netguard keeps Eagle's outbound HTTP from being turned against
// the network it runs in (SSRF): it tells public addresses from loopback,
// private, link-local and metadata ones, matches host allow-lists, and
// gives an http.Client a redirect policy and a dialer that refuse to reach
// a non-public address unless the host is listed.
//
// Real registries (Docker Hub, GHCR, ECR, Harbor on S3) answer blob GETs
// with a redirect to a storage or CDN host, so redirects must be followed;
// but a registry — or whoever answers in its name — must not be able to
// send Eagle to 127.0.0.1, 10.0.0.0/8 or 169.254.169.254.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
)

// ErrBlocked reports a connection or redirect the policy refused.
var ErrBlocked = errors.New("netguard: destination not allowed")

// nonPublic are the ranges no unlisted host may resolve to, beyond what
// netip.Addr's predicates cover (loopback, private, link-local, multicast,
// unspecified).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),          // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),      // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),       // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),       // documentation
	netip.MustParsePrefix("198.18.0.0/15"),      // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"),    // documentation
	netip.MustParsePrefix("203.0.113.0/24"),     // documentation
	netip.MustParsePrefix("240.0.0.0/4"),        // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),     // local-use NAT64
	netip.MustParsePrefix("100::/64"),           // discard
	netip.MustParsePrefix("2001:db8::/32"),      // documentation
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS metadata over IPv6 (also in fc00::/7)
	netip.MustParsePrefix("2001::/23"),          // IETF protocol assignments
	netip.MustParsePrefix("fec0::/10"),          // deprecated site-local
	netip.MustParsePrefix("::ffff:0:0:0/96"),    // IPv4-translated
	netip.MustParsePrefix("::/96"),              // IPv4-compatible (deprecated)
	netip.MustParsePrefix("169.254.169.254/32"), // cloud metadata (also link-local)
}

// Prefixes whose addresses carry an IPv4 address, judged by it: a NAT64
// address of a public IPv4 address is public (an IPv6-only cluster reaches
// IPv4 registries that way), one of 127.0.0.1 is not.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Public reports whether ip is a public unicast address: not loopback,
// private (RFC 1918, fc00::/7), link-local (169.254.0.0/16 — where cloud
// metadata services live — and fe80::/10), carrier-grade NAT, multicast,
// unspecified, documentation, benchmarking or reserved. An IPv4-mapped,
// NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address is judged by the IPv4
// address it carries.
func Public(ip netip.Addr) bool {
	// A zone ("%eth0") makes netip.Prefix.Contains false whatever the
	// address; it says nothing about where the address leads.
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return Public(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
			return Public(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Hosts is an allow-list of host patterns: "host" (any port),
// "host:port", "*.example.com" (any host below example.com, not
// example.com itself), "*.example.com:443", or an IP literal
// ("10.1.2.3", "[fd00::1]:5000"). Matching ignores case.
type Hosts struct {
	patterns []hostPattern
}

type hostPattern struct {
	host     string // lower case, without brackets; "*.x" for a wildcard
	port     string // "" = any port
	wildcard bool
}

// ParseHosts parses an allow-list. Errors name the entry.
func ParseHosts(list []string) (Hosts, error) {
	var h Hosts
	for i, raw := range list {
		p, err := parsePattern(raw)
		if err != nil {
			return Hosts{}, fmt.Errorf("[%d] %q: %w", i, raw, err)
		}
		h.patterns = append(h.patterns, p)
	}
	return h, nil
}

func parsePattern(raw string) (hostPattern, error) {
	s := strings.ToLower(strings.TrimSpace(raw))
	if s == "" {
		return hostPattern{}, errors.New("empty")
	}
	if strings.ContainsAny(s, "/?#@ ") {
		return hostPattern{}, errors.New(`want "host", "host:port" or "*.domain", without scheme or path`)
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return hostPattern{}, err
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return hostPattern{}, fmt.Errorf("bad port %q", p)
		}
		host, port = h, p
	}
	wildcard := false
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		if rest == "" || strings.Contains(rest, "*") {
			return hostPattern{}, errors.New("a wildcard needs a domain after \"*.\"")
		}
		wildcard, host = true, rest
	}
	if host == "" || strings.Contains(host, "*") {
		return hostPattern{}, errors.New(`"*" is allowed only as a leading "*."`)
	}
	return hostPattern{host: host, port: port, wildcard: wildcard}, nil
}

// Len is the number of patterns.
func (h Hosts) Len() int { return len(h.patterns) }

// Match reports whether hostport ("host" or "host:port", as in url.URL.Host)
// matches a pattern.
func (h Hosts) Match(hostport string) bool {
	host, port := splitHostPort(hostport)
	for _, p := range h.patterns {
		if p.port != "" && p.port != port {
			continue
		}
		if p.wildcard {
			if strings.HasSuffix(host, "."+p.host) {
				return true
			}
		} else if host == p.host {
			return true
		}
	}
	return false
}

// splitHostPort splits a URL host into a lower-case host without brackets
// and a port ("" when absent).
func splitHostPort(hostport string) (host, port string) {
	hostport = strings.ToLower(hostport)
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	return strings.Trim(hostport, "[]"), ""
}

// Guard keeps an HTTP client to listed hosts and public addresses: a
// listed host is reached whatever its address (an origin on a private
// network, its storage), any other host only if the address it resolves to
// is public. Redirects are followed under the same rule.
type Guard struct {
	// Listed are the hosts reached whatever their address.
	Listed Hosts
	// MaxRedirects bounds a chain of redirects. Zero means 10.
	MaxRedirects int
}

// CheckRedirect is an http.Client.CheckRedirect: it refuses a redirect to
// a scheme other than http(s), a chain that is too long, and, early and
// with a clear error, one to an unlisted host named by a non-public IP
// literal or "localhost". Every other unlisted host is checked after name
// resolution by the dialer (see DialContext).
func (g *Guard) CheckRedirect(req *http.Request, via []*http.Request) error {
	limit := g.MaxRedirects
	if limit == 0 {
		limit = 10
	}
	if len(via) >= limit {
		return fmt.Errorf("%w: more than %d redirects", ErrBlocked, limit)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("%w: redirect to scheme %q", ErrBlocked, req.URL.Scheme)
	}
	if g.Listed.Match(req.URL.Host) {
		return nil
	}
	host, _ := splitHostPort(req.URL.Host)
	if ip, err := netip.ParseAddr(host); err == nil && !Public(ip) {
		return fmt.Errorf("%w: redirect to a non-public address", ErrBlocked)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return fmt.Errorf("%w: redirect to localhost", ErrBlocked)
	}
	return nil
}

// DialContext returns an http.Transport.DialContext that dials a listed
// host with d, and any other host with a copy of d that refuses, after
// name resolution, every address that is not public — so a name that
// resolves to 127.0.0.1, or changes its answer between checks, is caught
// on the address actually dialled.
func (g *Guard) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	guarded := *d
	guarded.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot tell the address of %q", ErrBlocked, address)
		}
		if !Public(ap.Addr()) {
			return fmt.Errorf("%w: not a public address", ErrBlocked)
		}
		return nil
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if g.Listed.Match(addr) {
			return d.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
}
