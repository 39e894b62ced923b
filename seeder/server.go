// Package seeder is Eagle's seeder: a gRPC service that hands p2p clients
// the torrent metainfo of a registry blob, fetching the blob from its origin
// first (once, with the asking client's credentials) if the seeder does not
// hold it yet, verifying it against its digest, storing it and seeding it.
//
// New builds a whole seeder in one call (a Seeder: its store, its p2p
// engine in the seeder role and the metainfo service) from a
// SeederConfig. Serve it on a listener of its own, or Register it on a
// gRPC server the program already runs; a program that also embeds a node
// hands the Seeder to the node as its metainfo source (it is a
// p2p.PeerSource), in-process, with no gRPC in between. Server is the
// metainfo service alone, for programs that bring their own store and
// engine (NewServer).
//
// Client is the p2p side, a p2p.MetaInfoSource that
// picks a seeder per blob by rendezvous hashing (see Rank) over the
// seeders' addresses — a DNS name, such as a Kubernetes headless Service,
// stands for every address it resolves to, looked up again periodically —
// and fails over to the next one when a seeder is down, which it notices
// within about two seconds by health-checking every seeder.
package seeder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/semaphore"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
)

// Seeding starts seeding a blob that is committed in the store, with the
// metainfo built for it. *p2p.Engine implements it. Seed is called again
// for a blob whose metainfo was rebuilt (after a restart or a cache
// eviction), so it must accept a blob it already seeds.
type Seeding interface {
	Seed(ctx context.Context, dgst digest.Digest, metaInfo []byte) error
}

// Error details that carry an origin's refusal to the client, in a
// google.rpc.ErrorInfo attached to the gRPC status.
const (
	// ErrorDomain is the ErrorInfo domain of the seeder's errors.
	ErrorDomain = "eagle.seeder.v1"
	// ReasonOriginRefused is the ErrorInfo reason of an origin's 4xx.
	ReasonOriginRefused = "ORIGIN_REFUSED"
	// MetadataOriginStatus is the ErrorInfo metadata key holding the
	// origin's HTTP status code, in decimal.
	MetadataOriginStatus = "origin_status"
	// MetadataWWWAuthenticate is the ErrorInfo metadata key holding the
	// origin's WWW-Authenticate header.
	MetadataWWWAuthenticate = "www_authenticate"
	// MetadataRetryAfter is the ErrorInfo metadata key holding the
	// origin's Retry-After header.
	MetadataRetryAfter = "retry_after"
)

// errClosed reports a request that arrived, or was still waiting, when the
// Server was closed.
var errClosed = errors.New("seeder: server closed")

// Stats counts a Server's work since it was created.
type Stats struct {
	// OriginFetches is the number of blob GETs sent to origins.
	OriginFetches int64
	// OriginBytes is the number of blob bytes received from origins.
	OriginBytes int64
	// CacheHits is the number of requests answered from the metainfo cache.
	CacheHits int64
	// StoreRebuilds is the number of metainfos rebuilt from blobs already
	// in the store.
	StoreRebuilds int64
	// StreamedBytes is the number of blob bytes streamed to callers as
	// they arrived from origins (StreamBlob).
	StreamedBytes int64
}

// entry is a cached metainfo.
type entry struct {
	metaInfo []byte
	size     int64
}

// Server implements the MetaInfoService. Create it with NewServer (or let
// New build it with its store and engine), register it on a gRPC server
// with Register, and Close it before stopping that server so that waiting
// calls end promptly. In-process callers use MetaInfo and
// MetaInfoWithPeers instead: the same answers, authorization included,
// without gRPC.
type Server struct {
	seederpb.UnimplementedMetaInfoServiceServer

	cfg     Config
	store   storage.Store
	seeding Seeding
	log     *slog.Logger

	transport *http.Transport
	http      *http.Client
	// auth asks origins whether a caller may read a blob; every call is
	// checked, cache hit or not.
	auth  *auth.Authorizer
	cache *lru.Cache[digest.Digest, entry]
	// provenance holds, per blob, the upstream hosts that served its
	// bytes to this seeder and saw them verify: what makes a blob
	// servable for an upstream that is not trusted.
	provenance *lru.Cache[digest.Digest, []string]
	fetchSlots *semaphore.Weighted
	// originLimit paces reads from origins; nil means unlimited.
	originLimit *rate.Limiter
	// upLimit paces the bytes StreamBlob sends: the seeding engine's
	// upload limiter, when it has one.
	upLimit *rate.Limiter
	// health is the health service RegisterHealth registers; it reports
	// the MetaInfoService only.
	health *health.Server

	// ctx is the context of the shared fetches: owned by the Server, not by
	// the caller that happened to start one, and cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	// flights are the fills under way, by key (see get); callers are the
	// per-caller fetch slots in use. Both are guarded by mu.
	flights map[string]*flight
	callers map[string]*callerSlots

	originFetches atomic.Int64
	originBytes   atomic.Int64
	cacheHits     atomic.Int64
	storeRebuilds atomic.Int64
	streamedBytes atomic.Int64
	metrics       *serverMetrics
}

// NewServer returns the metainfo service alone: a Server that keeps blobs
// in store and hands them to seeding. New builds one with its store and
// its engine; NewServer is for programs that bring their own (a
// storage.Store and engine they also use otherwise). Set cfg.PeerAddr to
// the engine's address (p2p.Engine.Addr), as New does, so that answers
// lead agents to the seeder's copy. Zero fields of cfg take their
// defaults (see Config.WithDefaults).
func NewServer(cfg Config, store storage.Store, seeding Seeding) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, fmt.Errorf("%w: nil store", ErrInvalidConfig)
	}
	if seeding == nil {
		return nil, fmt.Errorf("%w: nil seeding", ErrInvalidConfig)
	}
	cfg = cfg.WithDefaults()
	logger := cfg.Logger
	cache, err := lru.New[digest.Digest, entry](cfg.MetaInfoCacheSize)
	if err != nil {
		return nil, fmt.Errorf("seeder: metainfo cache: %w", err)
	}
	provenance, err := lru.New[digest.Digest, []string](cfg.MetaInfoCacheSize)
	if err != nil {
		return nil, fmt.Errorf("seeder: provenance cache: %w", err)
	}
	guard, err := newGuard(cfg)
	if err != nil {
		return nil, err
	}
	roots, err := originRoots(cfg.OriginCA)
	if err != nil {
		return nil, err
	}
	t := newOriginTransport(cfg.OriginTimeout, guard, roots)
	az, err := auth.New(auth.Config{Transport: t, TTL: cfg.AuthCacheTTL, Timeout: cfg.AuthTimeout, StaleTTL: cfg.StaleAuthTTL, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("seeder: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:        cfg,
		store:      store,
		seeding:    seeding,
		log:        logger,
		transport:  t,
		http:       &http.Client{Transport: t, CheckRedirect: guard.CheckRedirect},
		auth:       az,
		cache:      cache,
		provenance: provenance,
		fetchSlots: semaphore.NewWeighted(int64(cfg.MaxConcurrentFetches)),

		originLimit: cfg.OriginLimit.Limiter(),
		health:      health.NewServer(),
		ctx:         ctx,
		cancel:      cancel,
		flights:     make(map[string]*flight),
		callers:     make(map[string]*callerSlots),
	}
	if l, ok := seeding.(interface{ UploadLimiter() *rate.Limiter }); ok {
		s.upLimit = l.UploadLimiter()
	}
	if s.metrics, err = newServerMetrics(cfg.Metrics, s); err != nil {
		cancel()
		az.Close()
		return nil, err
	}
	if cfg.AllowAnyUpstream {
		logger.Warn("seeder: allow_any_upstream is on: clients may name any public registry; blobs from registries outside allowed_upstreams are handed out only after this seeder fetched them from there",
			"allowed_upstreams", cfg.AllowedUpstreams)
	}
	s.health.SetServingStatus(seederpb.MetaInfoService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// Register registers the MetaInfoService, and nothing else, on g: a gRPC
// server the seeder shares with other services may already serve the
// standard health service (see RegisterHealth).
func (s *Server) Register(g grpc.ServiceRegistrar) {
	seederpb.RegisterMetaInfoServiceServer(g, s)
}

// RegisterHealth registers the standard gRPC health service
// (grpc.health.v1.Health) on g, for a server that has none of its own. It
// reports the MetaInfoService SERVING until Close and NOT_SERVING from
// then on, so that clients move to other seeders while the server stops;
// the server's overall status ("") stays SERVING. A server that already
// serves the health service sets the status of the MetaInfoService
// (seederpb.MetaInfoService_ServiceDesc.ServiceName, which Client checks)
// on it itself; a seeder with no health service at all is healthy to a
// Client as long as it is connected.
func (s *Server) RegisterHealth(g grpc.ServiceRegistrar) {
	healthpb.RegisterHealthServer(g, s.health)
}

// Stats returns the Server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		OriginFetches: s.originFetches.Load(),
		OriginBytes:   s.originBytes.Load(),
		CacheHits:     s.cacheHits.Load(),
		StoreRebuilds: s.storeRebuilds.Load(),
		StreamedBytes: s.streamedBytes.Load(),
	}
}

// Close reports the MetaInfoService NOT_SERVING on its health service (see
// RegisterHealth), cancels the origin fetches in flight and waits for them
// to end; their callers get codes.Unavailable. Blobs not yet committed are
// discarded. Close does not stop the gRPC server the service is registered
// on, nor touch that server's other services and overall health.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.metrics.unregister()
	s.health.SetServingStatus(seederpb.MetaInfoService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	s.cancel()
	s.wg.Wait()
	s.auth.Close()
	s.transport.CloseIdleConnections()
	return nil
}

// GetMetaInfo implements seederpb.MetaInfoServiceServer. See seeder.proto
// for the error codes. Every call is authorized at the named upstream with
// the caller's credentials, whether the seeder holds the blob or not.
func (s *Server) GetMetaInfo(ctx context.Context, req *seederpb.GetMetaInfoRequest) (*seederpb.GetMetaInfoResponse, error) {
	e, err := s.answer(ctx, req, callerOf(ctx), nil)
	if err != nil {
		return nil, err
	}
	return &seederpb.GetMetaInfoResponse{Metainfo: e.metaInfo, Size: e.size, Peers: s.peers(ctx)}, nil
}

// inProcess is the caller name of in-process calls (MetaInfo), for the
// per-caller limits and the logs.
const inProcess = "in-process"

// MetaInfo implements p2p.MetaInfoSource in-process: it answers as
// GetMetaInfo answers a gRPC call, with ref's credentials authorized at
// its upstream first, without gRPC in between. A program that embeds a
// seeder and a node passes the one to the other with it (see
// eagle.Config.MetaInfo). Errors are those a Client returns for the same
// answer: they wrap blob.ErrNotFound, blob.ErrDigestMismatch, a
// *blob.OriginError or a context error, and otherwise carry the gRPC
// status a remote caller would get (status.Code tells it).
func (s *Server) MetaInfo(ctx context.Context, ref blob.Ref) ([]byte, error) {
	mi, _, _, err := s.MetaInfoWithPeers(ctx, ref)
	return mi, err
}

// MetaInfoWithPeers implements p2p.PeerSource in-process: MetaInfo that
// also returns the seeder's own peer-wire address (Config.PeerAddr), as
// the caller in this process can dial it: a listener on every interface is
// given at the loopback address. The seeder name is empty: an in-process
// seeder cannot become unreachable while the node runs.
func (s *Server) MetaInfoWithPeers(ctx context.Context, ref blob.Ref) (mi []byte, seeder string, peers []netip.AddrPort, err error) {
	if err := storage.ValidateDigest(ref.Digest); err != nil {
		return nil, "", nil, fmt.Errorf("seeder: %w", err)
	}
	req := &seederpb.GetMetaInfoRequest{
		Upstream:      ref.Upstream,
		Repository:    ref.Repository,
		Digest:        ref.Digest.String(),
		Authorization: ref.Authorization,
	}
	e, err := s.answer(ctx, req, inProcess, nil)
	if err != nil {
		return nil, "", nil, convertError("("+inProcess+")", status.Convert(err), err)
	}
	return e.metaInfo, "", s.localPeers(), nil
}

// answer serves one request from caller: its parsing, authorization and
// metainfo, counted in the metrics. Its error is the gRPC status the
// caller gets. A non-nil sub streams the blob's bytes if an origin fetch
// starts or is about to (see StreamBlob).
func (s *Server) answer(ctx context.Context, req *seederpb.GetMetaInfoRequest, caller string, sub *subscriber) (_ entry, err error) {
	defer func() { s.metrics.request(err) }()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		// Not even from the cache: the engine may have stopped seeding.
		return entry{}, toStatus(ctx, errClosed)
	}
	r, err := parseRequest(req)
	if err != nil {
		return entry{}, status.Error(codes.InvalidArgument, err.Error())
	}
	r.asked = time.Now()
	trusted := allowed(s.cfg.AllowedUpstreams, r.upstream.Host, r.upstream.Hostname())
	if !trusted && !s.cfg.AllowAnyUpstream {
		return entry{}, status.Errorf(codes.PermissionDenied,
			"seeder: upstream %q is not in allowed_upstreams", r.upstream.Host)
	}
	ref := blob.Ref{Upstream: r.upstream.String(), Repository: r.repository, Digest: r.digest, Authorization: r.authorization}
	if err := s.auth.Authorize(ctx, ref); err != nil {
		st := authStatus(ctx, err)
		s.logFailure(ctx, st, "authorize", r, caller, err)
		return entry{}, st
	}
	e, err := s.get(ctx, r, trusted, caller, sub)
	if err != nil {
		st := toStatus(ctx, err)
		s.logFailure(ctx, st, "get metainfo", r, caller, err)
		return entry{}, st
	}
	return e, nil
}

// localPeers returns the seeder's own peer-wire address as a caller in
// this process dials it: an unspecified host (a listener on every
// interface) becomes the loopback address, IPv4's first (Go's "::"
// listener takes IPv4 too). Nil when there is none to give.
func (s *Server) localPeers() []netip.AddrPort {
	if s.cfg.PeerAddr == nil {
		return nil
	}
	a := s.cfg.PeerAddr()
	if a == nil {
		return nil
	}
	ap, ok := addrPortOf(a)
	if !ok || ap.Port() == 0 {
		return nil
	}
	if !ap.Addr().IsUnspecified() {
		return []netip.AddrPort{ap}
	}
	peers := []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())}
	if ap.Addr().Is6() {
		peers = append(peers, netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port()))
	}
	return peers
}

// peers returns the seeder's own peer-wire address as the caller can dial
// it: Config.PeerAddr, its unspecified host replaced by the address the
// caller reached this seeder at. It is nil when there is none to give.
func (s *Server) peers(ctx context.Context) []string {
	if s.cfg.PeerAddr == nil {
		return nil
	}
	a := s.cfg.PeerAddr()
	if a == nil {
		return nil
	}
	ap, ok := addrPortOf(a)
	if !ok || ap.Port() == 0 {
		return nil
	}
	ip := ap.Addr()
	if ip.IsUnspecified() {
		p, ok := peer.FromContext(ctx)
		if !ok || p.LocalAddr == nil {
			return nil
		}
		local, ok := addrPortOf(p.LocalAddr)
		if !ok || local.Addr().IsUnspecified() {
			return nil
		}
		// An IPv4-only listener (0.0.0.0) cannot be reached at the IPv6
		// address the caller used; "::" listens on both.
		if ip.Is4() && !local.Addr().Is4() {
			return nil
		}
		ip = local.Addr()
	}
	return []string{netip.AddrPortFrom(ip, ap.Port()).String()}
}

// addrPortOf returns a's IP (IPv4-mapped addresses unmapped, zone
// dropped) and port, if a is an IP address with a port.
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	if t, ok := a.(*net.TCPAddr); ok {
		ap = t.AddrPort()
	} else {
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.AddrPort{}, false
		}
	}
	if !ap.Addr().IsValid() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), true
}

// Keepalive enforcement for the agents' connections; see ServerOptions.
const (
	// minClientPingInterval is the shortest interval between an agent's
	// keepalive pings the server accepts. grpc-go clients cannot ping more
	// often than every 10s; clients in other languages may go down to
	// this.
	minClientPingInterval = time.Second
	// serverPingTime and serverPingTimeout are the server's own pings on a
	// connection idle that long, and how long it waits for the answer,
	// before it drops a connection (and the calls on it, so that a fill
	// nobody waits for any more is cancelled) of an agent that vanished
	// without closing it.
	serverPingTime    = 30 * time.Second
	serverPingTimeout = 10 * time.Second
)

// ServerOptions returns the options a seeder's *grpc.Server needs beside
// its credentials: a keepalive enforcement policy that lets agents ping an
// idle connection (Client keeps one open to every seeder and pings it to
// notice a dead seeder; grpc's default policy would answer those pings
// with GOAWAY "too_many_pings"), and server-side keepalive that drops the
// connections of agents that vanished. Use it as
//
//	grpc.NewServer(append(seeder.ServerOptions(), grpc.Creds(...))...)
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             minClientPingInterval,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    serverPingTime,
			Timeout: serverPingTimeout,
		}),
	}
}

// logFailure logs a failed call: at debug when it is the caller's business
// (a refusal, a cancel), at warn otherwise. The log carries the details
// the caller's status leaves out.
func (s *Server) logFailure(ctx context.Context, st error, what string, r blobRequest, caller string, err error) {
	level := slog.LevelWarn
	switch status.Code(st) {
	case codes.NotFound, codes.Unauthenticated, codes.PermissionDenied, codes.Canceled, codes.DeadlineExceeded, codes.ResourceExhausted:
		level = slog.LevelDebug
	}
	s.log.Log(ctx, level, what, "digest", r.digest, "upstream", r.upstream.Host,
		"repository", r.repository, "caller", caller, "error", err)
}

// callerOf names the caller of a gRPC call for per-caller limits and logs:
// its address, and the name in its cluster certificate when it has one.
func callerOf(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	addr := p.Addr.String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	return addr
}

// sharedError is a shared fill's error, labelled with who asked for it.
type sharedError struct {
	requester string
	err       error
}

func (e *sharedError) Error() string { return e.err.Error() }
func (e *sharedError) Unwrap() error { return e.err }

// requester identifies the credentials a fill fetched with: an origin
// refusal for one requester says nothing about another.
func (r blobRequest) requester() string {
	return r.upstream.Host + "\x00" + r.repository + "\x00" + r.authorization
}

// flight is one fill under way, shared by every caller that asks for the
// same blob meanwhile. It is cancelled when the last of them has gone.
type flight struct {
	done    chan struct{}
	e       entry
	err     error // a *sharedError
	waiters int   // guarded by Server.mu
	cancel  context.CancelFunc
	// tap streams the origin fetch to callers of StreamBlob.
	tap *tap
}

// get returns r's metainfo from the cache, or joins (or starts) the one
// fill of r's digest. For an upstream that is not trusted the blob must
// have come from that very upstream: unless it did before, the fill
// fetches it from there, whatever the store holds. The caller waits for
// the fill however long it takes, unless ctx ends first; the fill runs on
// while anyone waits for it, and is cancelled when nobody does.
func (s *Server) get(ctx context.Context, r blobRequest, trusted bool, caller string, sub *subscriber) (entry, error) {
	if trusted || s.servedBy(r.digest, r.upstream.Host) {
		if e, ok := s.cached(ctx, r.digest); ok {
			s.cacheHits.Add(1)
			return e, nil
		}
	}
	key := r.digest.String()
	if !trusted && !s.servedBy(r.digest, r.upstream.Host) {
		key += "\x00" + r.upstream.Host
	}
	for retried := false; ; retried = true {
		f, err := s.join(key, r, trusted, caller, sub)
		if err != nil {
			return entry{}, err
		}
		e, err := s.wait(ctx, key, f)
		if err == nil {
			return e, nil
		}
		var se *sharedError
		if !errors.As(err, &se) {
			return entry{}, err
		}
		var refusal *blob.OriginError
		refused := errors.As(se.err, &refusal) || errors.Is(se.err, errOriginNotFound)
		if refused && !retried && se.requester != r.requester() {
			// The origin refused someone else's credentials (or repository);
			// ours may do: fetch on our own, a fetch that starts now.
			key += "\x00" + r.requester()
			r.asked = time.Now()
			continue
		}
		return entry{}, se.err
	}
}

// join adds the caller to the fill of key, starting it if none runs, and
// sub to the callers its origin fetch streams to, if there is room.
func (s *Server) join(key string, r blobRequest, trusted bool, caller string, sub *subscriber) (*flight, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, &sharedError{r.requester(), errClosed}
	}
	if f := s.flights[key]; f != nil {
		f.waiters++
		f.tap.asked()
		f.tap.join(sub)
		return f, nil
	}
	ctx, cancel := context.WithCancel(s.ctx)
	f := &flight{done: make(chan struct{}), waiters: 1, cancel: cancel, tap: newTap(s.cfg.StreamFanout, s.cfg.StreamRelay)}
	f.tap.asked()
	f.tap.join(sub)
	s.flights[key] = f
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		e, err := s.fill(ctx, r, trusted, caller, f.tap)
		if err != nil {
			if s.ctx.Err() != nil {
				err = errClosed
			}
			err = &sharedError{r.requester(), err}
		}
		f.e, f.err = e, err
		s.mu.Lock()
		if s.flights[key] == f {
			delete(s.flights, key)
		}
		s.mu.Unlock()
		close(f.done)
	}()
	return f, nil
}

// wait waits for f or for ctx. The last caller to give up cancels the fill
// (its origin fetch, its slots) and takes it off the map, so that a later
// caller starts afresh instead of joining a cancelled fill.
func (s *Server) wait(ctx context.Context, key string, f *flight) (entry, error) {
	select {
	case <-f.done:
		return f.e, f.err
	case <-ctx.Done():
	}
	s.mu.Lock()
	f.waiters--
	if f.waiters == 0 {
		f.cancel()
		if s.flights[key] == f {
			delete(s.flights, key)
		}
	}
	s.mu.Unlock()
	return entry{}, ctx.Err()
}

// fill makes sure the blob is stored and seeded and its metainfo cached:
// from the cache, else rebuilt from the store, else fetched from the
// origin — always fetched when the upstream is not trusted, since only
// its serving the bytes counts.
func (s *Server) fill(ctx context.Context, r blobRequest, trusted bool, caller string, t *tap) (entry, error) {
	var e entry
	err := storage.ErrNotFound
	if trusted {
		// A fill that finished just before this one started left it here.
		if e, ok := s.cached(ctx, r.digest); ok {
			return e, nil
		}
		e, err = s.fromStore(ctx, r.digest)
	}
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrDigestMismatch) {
		e, err = s.fromOrigin(ctx, r, caller, t)
		s.metrics.originFetched(err)
	}
	if err != nil {
		return entry{}, err
	}
	if err := s.seeding.Seed(ctx, r.digest, e.metaInfo); err != nil {
		return entry{}, fmt.Errorf("seed %s: %w", r.digest, err)
	}
	s.cache.Add(r.digest, e)
	return e, nil
}

// servedBy reports whether the upstream host served dgst's bytes to this
// seeder and they verified.
func (s *Server) servedBy(dgst digest.Digest, host string) bool {
	hosts, ok := s.provenance.Get(dgst)
	return ok && slices.Contains(hosts, strings.ToLower(host))
}

// served records that host served dgst's verified bytes.
func (s *Server) served(dgst digest.Digest, host string) {
	host = strings.ToLower(host)
	s.mu.Lock()
	defer s.mu.Unlock()
	hosts, _ := s.provenance.Peek(dgst)
	if !slices.Contains(hosts, host) {
		s.provenance.Add(dgst, append(slices.Clip(hosts), host))
	}
}

// cached returns the cached metainfo of dgst if the blob is still in the
// store; an entry whose blob was deleted is dropped.
func (s *Server) cached(ctx context.Context, dgst digest.Digest) (entry, bool) {
	e, ok := s.cache.Get(dgst)
	if !ok {
		return entry{}, false
	}
	if _, err := s.store.Stat(ctx, dgst); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			s.cache.Remove(dgst)
		}
		return entry{}, false
	}
	return e, true
}

// authStatus maps an Authorize error to the caller's status.
func authStatus(ctx context.Context, err error) error {
	var oe *blob.OriginError
	switch {
	case errors.As(err, &oe):
		return refusalStatus(oe)
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	default:
		// auth's texts name the upstream and the origin's status, nothing
		// of what it answered.
		return status.Error(codes.Unavailable, err.Error())
	}
}

// toStatus maps an error of get to the gRPC status the client branches on.
// Its messages are a short reason: never an origin's body, never what the
// origin's bytes hashed to.
func toStatus(ctx context.Context, err error) error {
	var refusal *blob.OriginError
	switch {
	case errors.Is(err, errClosed):
		return status.Error(codes.Unavailable, "seeder: shutting down")
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return status.FromContextError(err).Err()
	case errors.Is(err, ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errOriginNotFound):
		return status.Error(codes.NotFound, "seeder: origin has no such blob")
	case errors.As(err, &refusal):
		return refusalStatus(refusal)
	case errors.Is(err, storage.ErrDigestMismatch):
		return status.Error(codes.DataLoss, "seeder: origin sent bytes that do not match the digest")
	case errors.Is(err, errOriginUnavailable):
		// errOriginUnavailable is only ever wrapped around a short reason
		// (see origin.go).
		return status.Error(codes.Unavailable, "seeder: "+err.Error())
	case errors.Is(err, storage.ErrTooLarge), errors.Is(err, storage.ErrFull):
		// Another seeder may have room: the client fails over on Unavailable.
		return status.Error(codes.Unavailable, "seeder: no room for the blob in the seeder's cache")
	case errors.Is(err, errEmptyBlob):
		return status.Error(codes.FailedPrecondition, "seeder: "+errEmptyBlob.Error())
	default:
		return status.Error(codes.Internal, "seeder: cannot store or seed the blob")
	}
}

// refusalStatus is an origin's 4xx as a gRPC status with an ErrorInfo
// carrying the HTTP status and the WWW-Authenticate and Retry-After
// headers a client needs to log in or back off.
func refusalStatus(r *blob.OriginError) error {
	code := codes.FailedPrecondition
	switch r.StatusCode {
	case http.StatusUnauthorized:
		code = codes.Unauthenticated
	case http.StatusForbidden:
		code = codes.PermissionDenied
	case http.StatusNotFound:
		code = codes.NotFound
	case http.StatusTooManyRequests:
		code = codes.ResourceExhausted
	}
	st := status.New(code, "seeder: "+r.Error())
	md := map[string]string{MetadataOriginStatus: strconv.Itoa(r.StatusCode)}
	if r.WWWAuthenticate != "" {
		md[MetadataWWWAuthenticate] = r.WWWAuthenticate
	}
	if r.RetryAfter != "" {
		md[MetadataRetryAfter] = r.RetryAfter
	}
	withDetails, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   ReasonOriginRefused,
		Domain:   ErrorDomain,
		Metadata: md,
	})
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}
