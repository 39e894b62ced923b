package seeder

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
)

// Client defaults; see the options of the same names.
const (
	// DefaultResolveInterval is how often seeder names are looked up
	// again. Ten seconds makes a seeder added to (or taken out of) a
	// Kubernetes headless Service reach every agent well within the time
	// a new seeder pod takes to start, while a few thousand agents ask
	// the cluster DNS a few hundred questions a second at most, which the
	// records' 5s TTL (CoreDNS's default for Services) answers from its
	// cache. It is also the longest time two agents may rank blobs over
	// different seeder sets after a change, when a blob may be fetched
	// from the origin twice.
	DefaultResolveInterval = 10 * time.Second
	// DefaultConnectTimeout bounds how long a call waits for a connection
	// to a seeder it has none to (TCP, TLS and HTTP/2 handshakes) before
	// it moves on to the next seeder. On a cluster network the handshakes
	// take milliseconds; a second leaves room for a busy seeder, and is
	// the delay a seeder that accepts connections and never answers adds.
	DefaultConnectTimeout = time.Second
	// DefaultHealthInterval and DefaultHealthTimeout: every interval, each
	// connected seeder is asked (grpc.health.v1 Check) whether it serves,
	// and a seeder that does not answer within the timeout is taken for
	// hung. A seeder that stops answering (a stopped process, a partition)
	// is thus noticed within interval+timeout, about 1-2 s; gRPC
	// keepalive could not do it sooner than 10 s (grpc-go's floor for a
	// client's ping interval). A seeder that dies outright is noticed at
	// once, by its connection closing.
	DefaultHealthInterval = time.Second
	DefaultHealthTimeout  = time.Second
	// MaxPeers caps the peer addresses taken from one answer.
	MaxPeers = 8
)

// Connection tuning for every seeder connection.
const (
	// lookupTimeout bounds one lookup of a seeder name.
	lookupTimeout = 5 * time.Second
	// minResolveGap is the shortest time between two lookups of the
	// seeder names that failures (rather than the interval) asked for.
	minResolveGap = time.Second
	// keepaliveTime is the idle time after which a connection is pinged:
	// grpc-go's minimum. With health checks on the connection is never
	// idle that long; keepalive is the backstop when they are off.
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = time.Second
	// reconnectMaxDelay caps grpc's reconnect backoff, so that a seeder
	// that comes back is used again within seconds, not minutes (grpc's
	// default cap is 120s).
	reconnectMaxDelay = 5 * time.Second
	// handshakeTimeout bounds one connection attempt in the background
	// (grpc's MinConnectTimeout, 20s by default): a seeder that accepts
	// and never completes the handshake is tried again this often.
	handshakeTimeout = 5 * time.Second
)

// Client asks seeders for metainfo. It implements p2p.MetaInfoSource. It is
// safe for concurrent use.
//
// The seeders are given as addresses, each an IP address or a DNS name
// with a port. A name stands for every address it resolves to (a
// Kubernetes headless Service names every ready seeder pod) and is
// looked up again periodically and after failures, so seeders added or
// removed are picked up without a restart. The Client keeps one gRPC
// connection to each seeder, and checks its health.
type Client struct {
	opts     clientOptions
	entries  []addrEntry
	names    bool // some entries are names to resolve
	dialOpts []grpc.DialOption
	log      *slog.Logger

	// ctx is cancelled by Close; it stops the resolver loop and the
	// health watchers, which wg counts.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// kick asks the resolver loop for a lookup now.
	kick chan struct{}

	mu      sync.Mutex
	closed  bool
	seeders map[string]*seederConn // by address, see Seeders
	addrs   []string               // the keys of seeders, sorted
	// retired are seeders removed from the set whose connection is still
	// open for the calls in flight on it; Close closes them.
	retired map[*seederConn]struct{}
	// started: the first lookup round has ended.
	started bool
	// resolved is closed when the lookup round under way ends, and
	// replaced for the next round.
	resolved chan struct{}
	// lastGood holds each name's last successful lookup, used while its
	// lookups fail. Only the resolver touches it.
	lastGood map[string][]netip.Addr
}

var _ p2p.MetaInfoSource = (*Client)(nil)

// LookupFunc returns the IP addresses of a host name, like
// (*net.Resolver).LookupNetIP with network "ip".
type LookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// ClientConfig configures a Client. Zero fields take their defaults (see
// the fields; WithDefaults applies them).
type ClientConfig struct {
	// Seeders are the seeders' addresses. Each is "ip:port", "name:port"
	// (the seeders at every address the name resolves to, looked up now
	// and again every ResolveInterval), or a gRPC target with a scheme
	// ("unix:///run/seeder.sock"), used as it is. Required.
	Seeders []string
	// Credentials make every seeder connection mutual TLS with the
	// cluster's credentials (see package mtls). Nil — what mtls.Load
	// returns for an explicit insecure config — keeps plaintext.
	Credentials *mtls.Credentials
	// DialOptions are added to every seeder connection, after the
	// defaults (insecure transport credentials, keepalive, reconnect
	// backoff) and Credentials, which they replace.
	DialOptions []grpc.DialOption
	// Lookup resolves seeder names. Default net.DefaultResolver's
	// LookupNetIP. Tests use it to make a name stand for seeders they
	// started.
	Lookup LookupFunc
	// ResolveInterval is how often seeder names are looked up again.
	// Failures (a seeder unreachable or gone) ask for a lookup sooner, at
	// most once a second. Zero or negative means DefaultResolveInterval.
	ResolveInterval time.Duration
	// ConnectTimeout bounds how long one call waits for a seeder it is
	// not connected to before moving on to the next one (the connection
	// itself keeps trying in the background). Zero or negative means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// AttemptTimeout bounds how long one seeder has to answer a call
	// before the call moves on to the next seeder. Default zero: no bound
	// but the caller's context, since a cold blob takes as long as the
	// seeder's fetch from the origin, and moving on means a second origin
	// fetch. A seeder that stops answering altogether is left at once
	// whatever this says (see HealthInterval); this bounds a seeder that
	// is alive but stuck.
	AttemptTimeout time.Duration
	// HealthInterval is how often each connected seeder is asked whether
	// it serves (the standard grpc.health.v1 service), and HealthTimeout
	// how long it has to answer before it is taken for hung: its calls in
	// flight move on to the next seeder and its connection is rebuilt.
	// Zero values mean DefaultHealthInterval and DefaultHealthTimeout; a
	// negative interval turns the checks off, leaving the connection
	// state and gRPC keepalive (10 s) to notice a seeder that stops
	// answering. Each check is one small call per agent per seeder: with
	// thousands of agents, a longer interval spares the seeders.
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	// Logger receives the Client's logs: seeders added, lost and failed
	// over. Nil discards them.
	Logger *slog.Logger
}

// WithDefaults returns a copy of c with every zero field that has a
// default set to it; NewClient applies it.
func (c ClientConfig) WithDefaults() ClientConfig {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Lookup == nil {
		c.Lookup = defaultLookup
	}
	if c.ResolveInterval <= 0 {
		c.ResolveInterval = DefaultResolveInterval
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = DefaultHealthTimeout
	}
	return c
}

// Validate reports what is wrong with c's seeder addresses, in an error
// wrapping ErrInvalidConfig. It changes nothing.
func (c ClientConfig) Validate() error {
	_, err := parseAddrs(c.Seeders)
	return err
}

// parseAddrs parses the seeder addresses of a ClientConfig.
func parseAddrs(addrs []string) ([]addrEntry, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: no seeder addresses", ErrInvalidConfig)
	}
	seen := make(map[string]bool, len(addrs))
	var entries []addrEntry
	for _, a := range addrs {
		e, err := parseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if seen[a] {
			return nil, fmt.Errorf("%w: seeder address %q listed twice", ErrInvalidConfig, a)
		}
		seen[a] = true
		entries = append(entries, e)
	}
	return entries, nil
}

type clientOptions struct {
	logger          *slog.Logger
	dialOpts        []grpc.DialOption
	lookup          LookupFunc
	resolveInterval time.Duration
	connectTimeout  time.Duration
	attemptTimeout  time.Duration
	healthInterval  time.Duration
	healthTimeout   time.Duration
}

// defaultLookup resolves with net.DefaultResolver.
func defaultLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// NewClient returns a Client for cfg.Seeders. It looks their names up
// before it returns (each lookup bounded by 5 s); a name that does not
// resolve yet is not an error, it is looked up again. It opens a gRPC
// connection to each seeder at once, and keeps them open. Errors about
// cfg wrap ErrInvalidConfig.
func NewClient(cfg ClientConfig) (*Client, error) {
	entries, err := parseAddrs(cfg.Seeders)
	if err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	o := clientOptions{
		logger:          cfg.Logger,
		dialOpts:        slices.Clone(cfg.DialOptions),
		lookup:          cfg.Lookup,
		resolveInterval: cfg.ResolveInterval,
		connectTimeout:  cfg.ConnectTimeout,
		attemptTimeout:  cfg.AttemptTimeout,
		healthInterval:  cfg.HealthInterval,
		healthTimeout:   cfg.HealthTimeout,
	}
	if cfg.Credentials != nil {
		o.dialOpts = append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg.Credentials.ClientConfig()))}, o.dialOpts...)
	}
	c := &Client{
		opts:     o,
		log:      o.logger,
		kick:     make(chan struct{}, 1),
		seeders:  make(map[string]*seederConn),
		retired:  make(map[*seederConn]struct{}),
		resolved: make(chan struct{}),
		lastGood: make(map[string][]netip.Addr),
		entries:  entries,
	}
	for _, e := range entries {
		c.names = c.names || e.name != ""
	}
	c.dialOpts = append(baseDialOptions(), o.dialOpts...)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.resolve(c.ctx); err != nil {
		c.Close()
		return nil, err
	}
	if c.names {
		c.wg.Add(1)
		go c.resolveLoop()
	}
	return c, nil
}

// Close stops re-resolving and health checking, and closes the
// connections to all seeders. Calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	all := slices.Collect(maps.Values(c.seeders))
	for s := range c.retired {
		all = append(all, s)
	}
	c.seeders, c.addrs, c.retired = nil, nil, nil
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	var errs []error
	for _, s := range all {
		if err := s.closeNow(errClientClosed); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Seeders returns the addresses of the seeders the Client knows now, as
// Rank orders them over and as Healthy and Unhealthy take them: "ip:port"
// for seeders given by address or name, the target itself for other gRPC
// targets. Sorted.
func (c *Client) Seeders() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.addrs)
}

// Healthy reports whether the Client is connected to the seeder at addr
// (see Seeders) and the seeder answered its last health check. A seeder
// the Client does not know is not healthy.
func (c *Client) Healthy(addr string) bool {
	s := c.seeder(addr)
	return s != nil && s.isHealthy()
}

// Unhealthy returns a channel that is closed when the seeder at addr is
// not healthy (see Healthy): at once if it is not now, or when it stops
// being so — its connection lost, its health check failed or unanswered,
// or the seeder gone from the resolved set. After the seeder recovered, a
// new call returns a new channel. The p2p engine uses it to learn that the
// seeder its metainfo came from is gone, and ask another.
func (c *Client) Unhealthy(addr string) <-chan struct{} {
	s := c.seeder(addr)
	if s == nil {
		return closedChan
	}
	return s.unhealthy()
}

func (c *Client) seeder(addr string) *seederConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seeders[addr]
}

// MetaInfo returns the verified-shape metainfo of ref's blob from the first
// seeder in Rank order that can answer, failing over to the next when a
// seeder is unreachable or fails internally. It waits as long as ctx allows:
// a cold blob takes as long as the seeder's origin fetch.
//
// Errors wrap blob.ErrNotFound when the origin has no such blob, are (or
// wrap) a *blob.OriginError when the origin refused the credentials in ref,
// wrap blob.ErrDigestMismatch when the origin's bytes did not match the
// digest, and otherwise wrap the seeder's gRPC status error.
func (c *Client) MetaInfo(ctx context.Context, ref blob.Ref) ([]byte, error) {
	mi, _, _, err := c.MetaInfoWithPeers(ctx, ref)
	return mi, err
}

// MetaInfoWithPeers is MetaInfo that also returns the address of the
// seeder that answered (as Seeders, Healthy and Unhealthy name it) and the
// peer-wire addresses of seeders that hold the blob, which a download can
// connect to without a tracker. Peers are IP literals with a non-zero
// port, neither unspecified nor multicast, without duplicates, at most
// MaxPeers; they may be none (a seeder that does not know its peer
// address).
//
// Seeders are tried in Rank order, except that those known to be down
// come last. A seeder is left for the next when it is unreachable (at
// once when it refuses connections, after the connect timeout when it
// accepts and does not complete the handshake), fails (UNAVAILABLE,
// INTERNAL, ABORTED), answers a bad metainfo, stops answering health
// checks while the call waits, or runs past the attempt timeout.
func (c *Client) MetaInfoWithPeers(ctx context.Context, ref blob.Ref) (mi []byte, seeder string, peers []netip.AddrPort, err error) {
	if err := storage.ValidateDigest(ref.Digest); err != nil {
		return nil, "", nil, fmt.Errorf("seeder: %w", err)
	}
	req := &seederpb.GetMetaInfoRequest{
		Upstream:      ref.Upstream,
		Repository:    ref.Repository,
		Digest:        ref.Digest.String(),
		Authorization: ref.Authorization,
	}
	tried := make(map[string]bool)
	var errs []error
	for pass := 0; ; pass++ {
		order, err := c.order(ctx, ref.Digest, tried, pass > 0)
		if err != nil {
			return nil, "", nil, err
		}
		if pass > 0 && len(order) == 0 {
			break
		}
		for _, s := range order {
			tried[s.addr] = true
			resp, err := c.attempt(ctx, s, req)
			if err == nil {
				mi, err := checkResponse(ref.Digest, resp)
				if err == nil {
					s.refresh()
					return mi, s.addr, c.parsePeers(ctx, s.addr, resp.GetPeers()), nil
				}
				// A seeder that hands out a bad metainfo is faulty; another
				// one may do better.
				err = fmt.Errorf("seeder %s: %w", s.addr, err)
				c.log.WarnContext(ctx, "bad metainfo from seeder", "seeder", s.addr, "digest", ref.Digest, "error", err)
				errs = append(errs, err)
				continue
			}
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, "", nil, fmt.Errorf("seeder %s: %s: %w", s.addr, ref.Digest, ctxErr)
			}
			if c.ctx.Err() != nil {
				return nil, "", nil, status.Error(codes.Unavailable, errClientClosed.Error())
			}
			code := status.Code(err)
			if errors.Is(err, errLeft) {
				code = codes.Unavailable
			}
			switch code {
			case codes.Unavailable, codes.Internal, codes.Aborted:
				c.log.DebugContext(ctx, "seeder failed; trying the next", "seeder", s.addr, "digest", ref.Digest, "error", err)
				errs = append(errs, fmt.Errorf("seeder %s: %w", s.addr, err))
				if code == codes.Unavailable {
					// It may have been replaced by a seeder at another
					// address.
					c.resolveSoon()
				}
				continue
			}
			return nil, "", nil, convertError(s.addr, status.Convert(err), err)
		}
		if pass > 0 || !c.names {
			break
		}
		// Every seeder failed. A seeder restarted at a new address (a
		// StatefulSet pod) shows in a fresh lookup, which the failures
		// asked for: wait for it, briefly, and try the new seeders.
		if !c.awaitLookup(ctx) {
			break
		}
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, "", nil, fmt.Errorf("seeder: %s: %w", ref.Digest, ctxErr)
	}
	return nil, "", nil, fmt.Errorf("seeder: all %d seeders failed for %s: %w", len(tried), ref.Digest, errors.Join(errs...))
}

// maxLookupWait bounds how long a call whose seeders all failed waits for
// a fresh lookup of the seeder names.
const maxLookupWait = minResolveGap + time.Second

// awaitLookup waits for the lookup round under way (or the next) to end,
// at most maxLookupWait; false if it did not.
func (c *Client) awaitLookup(ctx context.Context) bool {
	c.mu.Lock()
	resolved := c.resolved
	c.mu.Unlock()
	c.resolveSoon()
	t := time.NewTimer(maxLookupWait)
	defer t.Stop()
	select {
	case <-resolved:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-c.ctx.Done():
	}
	return false
}

// order returns the seeders to try for dgst, leaving out those tried: in
// Rank order over all the known seeders, so that every agent that knows
// the same set asks the same seeder first, but with the seeders known to
// be down moved to the end. With no seeder known (a name that did not
// resolve yet) it waits for a lookup round, unless again.
func (c *Client) order(ctx context.Context, dgst digest.Digest, tried map[string]bool, again bool) ([]*seederConn, error) {
	for waited := again; ; waited = true {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, status.Error(codes.Unavailable, errClientClosed.Error())
		}
		addrs, seeders := c.addrs, c.seeders
		out := make([]*seederConn, 0, len(addrs))
		for _, a := range Rank(addrs, dgst) {
			if !tried[a] {
				out = append(out, seeders[a])
			}
		}
		c.mu.Unlock()
		if len(out) > 0 || again {
			// Stable: the down ones keep their rank order among themselves.
			slices.SortStableFunc(out, func(a, b *seederConn) int {
				return cmp.Compare(boolInt(a.isDown()), boolInt(b.isDown()))
			})
			return out, nil
		}
		if waited || !c.names {
			return nil, status.Errorf(codes.Unavailable, "seeder: no seeder address: %s resolve to none", c.nameList())
		}
		if !c.awaitLookup(ctx) {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("seeder: waiting for seeder names to resolve: %w", err)
			}
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// errLeft reports an attempt that the Client gave up on before the seeder
// answered, to try the next seeder. It carries codes.Unavailable for
// callers that branch on the gRPC code of the errors joined in a "all
// seeders failed" error.
var errLeft = status.Error(codes.Unavailable, "left for the next seeder")

// errClientClosed is the cause of calls cut short by Close.
var errClientClosed = errors.New("seeder: client closed")

// attempt asks one seeder: it waits at most the connect timeout for a
// connection, and leaves the call when the seeder is found hung or runs
// past the attempt timeout. Such errors wrap errLeft.
func (c *Client) attempt(ctx context.Context, s *seederConn, req *seederpb.GetMetaInfoRequest) (*seederpb.GetMetaInfoResponse, error) {
	g, ok := s.acquire()
	if !ok {
		return nil, fmt.Errorf("%w: removed from the seeder set", errLeft)
	}
	defer s.release()
	if err := waitReady(ctx, g.conn, c.opts.connectTimeout); err != nil {
		if ctx.Err() == nil {
			s.markDown()
		}
		return nil, err
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(g.ctx, func() { cancel(context.Cause(g.ctx)) })
	defer stop()
	errTimeout := fmt.Errorf("no answer within the attempt timeout %v", c.opts.attemptTimeout)
	attemptBound := false
	if c.opts.attemptTimeout > 0 {
		deadline := time.Now().Add(c.opts.attemptTimeout)
		callerDeadline, ok := ctx.Deadline()
		attemptBound = !ok || deadline.Before(callerDeadline)
		var cancelT context.CancelFunc
		actx, cancelT = context.WithDeadlineCause(actx, deadline, errTimeout)
		defer cancelT()
	}
	resp, err := g.stub.GetMetaInfo(actx, req)
	if err == nil || ctx.Err() != nil {
		return resp, err
	}
	if actx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", errLeft, context.Cause(actx))
	}
	if attemptBound && status.Code(err) == codes.DeadlineExceeded {
		// The seeder ran out of the attempt's deadline, which grpc sent
		// it, a moment before the client's timer fired.
		return nil, fmt.Errorf("%w: %w", errLeft, errTimeout)
	}
	return resp, err
}

// parsePeers returns the valid, distinct peer addresses among raw, at most
// MaxPeers of them: IP literals (IPv4-mapped ones unmapped) with a
// non-zero port that are not unspecified, multicast, the IPv4 broadcast
// address or zoned (a zone names the sender's interface). Names are
// refused: resolving them would let a seeder steer the agent's lookups.
func (c *Client) parsePeers(ctx context.Context, seeder string, raw []string) []netip.AddrPort {
	var out []netip.AddrPort
	bad := 0
	for i, r := range raw {
		if len(out) == MaxPeers || i == 4*MaxPeers {
			break
		}
		ap, err := netip.ParseAddrPort(r)
		if err != nil || !validPeer(ap) {
			bad++
			continue
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	if bad > 0 {
		c.log.DebugContext(ctx, "seeder sent invalid peer addresses", "seeder", seeder, "invalid", bad)
	}
	return out
}

func validPeer(ap netip.AddrPort) bool {
	ip := ap.Addr().Unmap()
	return ap.Port() != 0 && ip.IsValid() && ip.Zone() == "" &&
		!ip.IsUnspecified() && !ip.IsMulticast() && ip != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// checkResponse returns the response's metainfo if it describes dgst in
// the shape Eagle builds and agrees with the reported size.
func checkResponse(dgst digest.Digest, resp *seederpb.GetMetaInfoResponse) ([]byte, error) {
	_, info, err := p2p.ParseMetaInfo(dgst, resp.GetMetainfo())
	if err != nil {
		return nil, err
	}
	if info.Length != resp.GetSize() {
		return nil, fmt.Errorf("%w: length %d, but the seeder reported size %d", p2p.ErrBadMetaInfo, info.Length, resp.GetSize())
	}
	return resp.GetMetainfo(), nil
}

// convertError turns a seeder's final answer into the p2p package's errors.
func convertError(addr string, st *status.Status, err error) error {
	switch st.Code() {
	case codes.NotFound:
		return fmt.Errorf("seeder %s: %w: %s", addr, blob.ErrNotFound, st.Message())
	case codes.DataLoss:
		return fmt.Errorf("seeder %s: %w: %s", addr, blob.ErrDigestMismatch, st.Message())
	case codes.DeadlineExceeded:
		// The seeder ran out of the deadline propagated from the caller's
		// context, a moment before the caller's own timer fired (an
		// attempt timeout of the client's own is failed over in attempt).
		return fmt.Errorf("seeder %s: %w: %s", addr, context.DeadlineExceeded, st.Message())
	case codes.Canceled:
		return fmt.Errorf("seeder %s: %w: %s", addr, context.Canceled, st.Message())
	}
	if oe := originError(st); oe != nil {
		return fmt.Errorf("seeder %s: %w", addr, oe)
	}
	return fmt.Errorf("seeder %s: %w", addr, err)
}

// originError extracts an origin refusal from a status's ErrorInfo, or
// returns nil if the status carries none.
func originError(st *status.Status) *blob.OriginError {
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain || info.GetReason() != ReasonOriginRefused {
			continue
		}
		md := info.GetMetadata()
		code, err := strconv.Atoi(md[MetadataOriginStatus])
		if err != nil || code < 100 || code > 999 {
			continue
		}
		return &blob.OriginError{
			StatusCode:      code,
			WWWAuthenticate: md[MetadataWWWAuthenticate],
			RetryAfter:      md[MetadataRetryAfter],
		}
	}
	return nil
}

// Rank orders seeder addresses for a blob by rendezvous (highest random
// weight) hashing: each address scores the first 8 bytes of
// sha256(addr NUL digest), highest first, ties broken by address. Every
// client with the same seeder set picks the same first seeder for a blob,
// so the origin sees one fetch per blob; removing a seeder moves only the
// blobs it ranked first, to their second choice. addrs is not modified.
//
// The Client ranks the resolved "ip:port" of every seeder (see Seeders),
// never the names it was given, so agents configured with a name and
// agents configured with the addresses it resolves to agree.
func Rank(addrs []string, dgst digest.Digest) []string {
	type scored struct {
		addr  string
		score uint64
	}
	s := make([]scored, len(addrs))
	for i, a := range addrs {
		sum := sha256.Sum256([]byte(a + "\x00" + dgst.String()))
		s[i] = scored{addr: a, score: binary.BigEndian.Uint64(sum[:8])}
	}
	slices.SortFunc(s, func(a, b scored) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return strings.Compare(a.addr, b.addr)
	})
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.addr
	}
	return out
}
