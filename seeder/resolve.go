package seeder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Why a resolver loop of our own and one grpc.ClientConn per seeder,
// rather than grpc's resolver and balancer: rendezvous hashing must send
// each call to the seeder that ranks first for its blob, over every seeder
// in the set, connected or not, and fail over along that ranking. A grpc
// balancer picks a subchannel per call without knowing the blob (it would
// have to be smuggled in through the context), sees only the ready
// subchannels in the base balancer, and its API is experimental and has
// changed from release to release. And grpc's DNS resolver does not poll:
// it looks a name up again only after a connection failed, at most every
// 30 s, so a seeder added to a healthy set would not be seen. Everything
// per connection is still grpc's: pick_first, reconnect backoff,
// keepalive, connectivity state and the health service.

// addrEntry is one address the Client was given.
type addrEntry struct {
	raw string
	// name and port, for a DNS name to resolve.
	name string
	port uint16
	// static is the seeder address of an IP (then ip is set) or a gRPC
	// target.
	static string
	ip     bool
}

// dialTarget says how to dial a seeder address.
type dialTarget struct {
	// passthrough: the address is "ip:port", to be dialed as it is.
	passthrough bool
	// authority is the name the address was resolved from, if any.
	authority string
}

// parseAddr parses a seeder address (see NewClient).
func parseAddr(a string) (addrEntry, error) {
	if a == "" {
		return addrEntry{}, errors.New("seeder: empty seeder address")
	}
	if i := strings.Index(a, ":"); i > 0 && (strings.HasPrefix(a[i:], "://") || a[:i] == "unix") {
		// A gRPC target of its own: used as it is.
		return addrEntry{raw: a, static: a}, nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return addrEntry{}, fmt.Errorf("seeder: seeder address %q: want host:port: %w", a, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return addrEntry{}, fmt.Errorf("seeder: seeder address %q: bad port %q", a, port)
	}
	if host == "" {
		return addrEntry{}, fmt.Errorf("seeder: seeder address %q: no host", a)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return addrEntry{raw: a, static: seederAddr(ip.WithZone(""), uint16(p)), ip: true}, nil
	}
	if strings.ContainsAny(host, "/?#@ %[]") {
		return addrEntry{}, fmt.Errorf("seeder: seeder address %q: bad host name", a)
	}
	return addrEntry{raw: a, name: host, port: uint16(p)}, nil
}

// seederAddr is the address of the seeder at ip and port, the same
// whichever way it was given (an IPv4-mapped IPv6 address is the IPv4
// one): what Rank ranks.
func seederAddr(ip netip.Addr, port uint16) string {
	return netip.AddrPortFrom(ip.Unmap(), port).String()
}

// baseDialOptions are the defaults for every seeder connection.
func baseDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// PermitWithoutStream: the connection is pinged while idle too,
		// so that a dead seeder is known before a call needs it. The
		// seeder's ServerOptions permit it.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                keepaliveTime,
			Timeout:             keepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  250 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   reconnectMaxDelay,
			},
			MinConnectTimeout: handshakeTimeout,
		}),
		// The connection stays up between calls: it is how the Client
		// knows the seeder's health.
		grpc.WithIdleTimeout(0),
	}
}

// resolveLoop looks the names up again every resolve interval, and sooner
// when resolveSoon asks, until Close.
func (c *Client) resolveLoop() {
	defer c.wg.Done()
	t := time.NewTimer(c.opts.resolveInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
			if wait := minResolveGap - time.Since(last); wait > 0 {
				t.Reset(wait)
				select {
				case <-c.ctx.Done():
					return
				case <-t.C:
				}
			}
		}
		c.resolve(c.ctx)
		last = time.Now()
		t.Reset(c.opts.resolveInterval)
	}
}

// resolveSoon asks the resolver loop for a lookup now (at most one a
// second): a seeder unreachable may have been replaced by one at another
// address.
func (c *Client) resolveSoon() {
	if !c.names {
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// nameList lists the names among the addresses, for errors.
func (c *Client) nameList() string {
	var names []string
	for _, e := range c.entries {
		if e.name != "" {
			names = append(names, e.raw)
		}
	}
	if len(names) == 0 {
		return "no address"
	}
	return strings.Join(names, ", ")
}

// resolve looks every name up and makes the seeder set what the addresses
// and names stand for now. A name whose lookup fails keeps the addresses
// of its last successful one; a name that resolves to no address has no
// seeders. It returns the errors of connections that could not be
// created.
func (c *Client) resolve(ctx context.Context) error {
	set := make(map[string]dialTarget)
	for _, e := range c.entries {
		if e.name == "" {
			set[e.static] = dialTarget{passthrough: e.ip}
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		ips, err := c.opts.lookup(lctx, e.name)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			ips = c.lastGood[e.raw]
			c.log.Warn("seeder name lookup failed; keeping its last addresses", "name", e.raw, "addresses", len(ips), "error", err)
		} else {
			c.lastGood[e.raw] = ips
		}
		for _, ip := range ips {
			if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() {
				continue
			}
			a := seederAddr(ip.WithZone(""), e.port)
			if _, dup := set[a]; !dup {
				set[a] = dialTarget{passthrough: true, authority: e.raw}
			}
		}
	}
	return c.apply(set)
}

// apply makes the seeder set the keys of set, creating connections to
// the new seeders and retiring the ones gone, and ends the lookup round.
func (c *Client) apply(set map[string]dialTarget) error {
	var added []*seederConn
	var removed []*seederConn
	var errs []error
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	for a, t := range set {
		if c.seeders[a] != nil {
			continue
		}
		s, err := c.newSeederConn(a, t)
		if err != nil {
			c.log.Error("seeder connection", "seeder", a, "error", err)
			errs = append(errs, err)
			continue
		}
		c.seeders[a] = s
		added = append(added, s)
	}
	for a, s := range c.seeders {
		if _, ok := set[a]; !ok {
			delete(c.seeders, a)
			c.retired[s] = struct{}{}
			removed = append(removed, s)
		}
	}
	c.addrs = slices.Sorted(maps.Keys(c.seeders))
	close(c.resolved)
	c.resolved = make(chan struct{})
	for _, s := range added {
		c.wg.Add(1)
		go s.watch()
	}
	initial := !c.started
	c.started = true
	c.mu.Unlock()
	level := slog.LevelInfo
	if initial {
		level = slog.LevelDebug
	}
	for _, s := range added {
		c.log.Log(context.Background(), level, "seeder added to the set", "seeder", s.addr)
	}
	for _, s := range removed {
		c.log.Info("seeder removed from the set", "seeder", s.addr)
		s.remove()
	}
	return errors.Join(errs...)
}
