// Package seeder is Eagle's seeder: a gRPC service that hands p2p clients
// the torrent metainfo of a registry blob, fetching the blob from its origin
// first (once, with the asking client's credentials) if the seeder does not
// hold it yet, verifying it against its digest, storing it and seeding it.
//
// Server is the service; Client is the p2p side, a p2p.MetaInfoSource that
// picks a seeder per blob by rendezvous hashing (see Rank) and fails over to
// the next one when a seeder is down.
package seeder

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/time/rate"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

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
	// MetadataOriginBody is the ErrorInfo metadata key holding (a prefix
	// of) the origin's error body.
	MetadataOriginBody = "origin_body"
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
}

// entry is a cached metainfo.
type entry struct {
	metaInfo []byte
	size     int64
}

// Server implements the MetaInfoService. Create it with NewServer, register
// it on a *grpc.Server with Register, and Close it before stopping that
// server so that waiting calls end promptly.
type Server struct {
	seederpb.UnimplementedMetaInfoServiceServer

	cfg     Config
	store   storage.Store
	seeding Seeding
	log     *slog.Logger

	transport  *http.Transport
	http       *http.Client
	cache      *lru.Cache[digest.Digest, entry]
	group      singleflight.Group
	fetchSlots *semaphore.Weighted
	// originLimit paces reads from origins; nil means unlimited.
	originLimit *rate.Limiter
	health      *health.Server

	// ctx is the context of the shared fetches: owned by the Server, not by
	// the caller that happened to start one, and cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup

	originFetches atomic.Int64
	originBytes   atomic.Int64
	cacheHits     atomic.Int64
	storeRebuilds atomic.Int64
	metrics       *serverMetrics
}

// NewServer returns a Server that keeps blobs in store and hands them to
// seeding. A nil logger means slog.Default().
func NewServer(cfg Config, store storage.Store, seeding Seeding, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("seeder: nil store")
	}
	if seeding == nil {
		return nil, errors.New("seeder: nil seeding")
	}
	if logger == nil {
		logger = slog.Default()
	}
	cfg = cfg.withDefaults()
	cache, err := lru.New[digest.Digest, entry](cfg.MetaInfoCacheSize)
	if err != nil {
		return nil, fmt.Errorf("seeder: metainfo cache: %w", err)
	}
	t := newOriginTransport(cfg.OriginTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:        cfg,
		store:      store,
		seeding:    seeding,
		log:        logger,
		transport:  t,
		http:       &http.Client{Transport: t},
		cache:      cache,
		fetchSlots: semaphore.NewWeighted(int64(cfg.MaxConcurrentFetches)),

		originLimit: cfg.OriginLimit.Limiter(),
		health:      health.NewServer(),
		ctx:         ctx,
		cancel:      cancel,
	}
	if s.metrics, err = newServerMetrics(cfg.Metrics, s); err != nil {
		cancel()
		return nil, err
	}
	s.health.SetServingStatus(seederpb.MetaInfoService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// Register registers the MetaInfoService and the standard gRPC health
// service (grpc.health.v1.Health) on g.
func (s *Server) Register(g *grpc.Server) {
	seederpb.RegisterMetaInfoServiceServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
}

// Stats returns the Server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		OriginFetches: s.originFetches.Load(),
		OriginBytes:   s.originBytes.Load(),
		CacheHits:     s.cacheHits.Load(),
		StoreRebuilds: s.storeRebuilds.Load(),
	}
}

// Close reports NOT_SERVING on the health service, cancels the origin
// fetches in flight and waits for them to end; their callers get
// codes.Unavailable. Blobs not yet committed are discarded. Close does not
// stop the *grpc.Server the service is registered on.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.metrics.unregister()
	s.health.Shutdown()
	s.cancel()
	s.wg.Wait()
	s.transport.CloseIdleConnections()
	return nil
}

// GetMetaInfo implements seederpb.MetaInfoServiceServer. See seeder.proto
// for the error codes.
func (s *Server) GetMetaInfo(ctx context.Context, req *seederpb.GetMetaInfoRequest) (_ *seederpb.GetMetaInfoResponse, err error) {
	defer func() { s.metrics.request(err) }()
	r, err := parseRequest(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if !allowed(s.cfg.AllowedUpstreams, r.upstream.Host, r.upstream.Hostname()) {
		return nil, status.Errorf(codes.PermissionDenied,
			"seeder: upstream %q is not in allowed_upstreams", r.upstream.Host)
	}
	e, err := s.get(ctx, r)
	if err != nil {
		st := toStatus(ctx, err)
		level := slog.LevelWarn
		switch status.Code(st) {
		case codes.NotFound, codes.Unauthenticated, codes.PermissionDenied, codes.Canceled, codes.DeadlineExceeded:
			// The client's business, not the seeder's.
			level = slog.LevelDebug
		}
		s.log.Log(ctx, level, "get metainfo", "digest", r.digest, "upstream", r.upstream.Host,
			"repository", r.repository, "error", err)
		return nil, st
	}
	return &seederpb.GetMetaInfoResponse{Metainfo: e.metaInfo, Size: e.size}, nil
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

// get returns r's metainfo from the cache, or joins (or starts) the one
// fill of r's digest. The caller waits for the fill however long it takes,
// unless ctx ends first; the fill itself runs on, for the other callers.
func (s *Server) get(ctx context.Context, r blobRequest) (entry, error) {
	if e, ok := s.cached(ctx, r.digest); ok {
		s.cacheHits.Add(1)
		return e, nil
	}
	key := r.digest.String()
	for retried := false; ; retried = true {
		ch := s.group.DoChan(key, func() (any, error) { return s.fill(r) })
		var res singleflight.Result
		select {
		case res = <-ch:
		case <-ctx.Done():
			return entry{}, ctx.Err()
		}
		if res.Err == nil {
			return res.Val.(entry), nil
		}
		var se *sharedError
		if !errors.As(res.Err, &se) {
			return entry{}, res.Err
		}
		var refusal *originRefusal
		refused := errors.As(se.err, &refusal) || errors.Is(se.err, errOriginNotFound)
		if refused && !retried && se.requester != r.requester() {
			// The origin refused someone else's credentials (or repository);
			// ours may do: fetch on our own.
			key = r.digest.String() + "\x00" + r.requester()
			continue
		}
		return entry{}, se.err
	}
}

// fill makes sure the blob is stored and seeded and its metainfo cached.
// It runs once per digest at a time, on the Server's context.
func (s *Server) fill(r blobRequest) (entry, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return entry{}, &sharedError{r.requester(), errClosed}
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	e, err := s.fillOn(s.ctx, r)
	if err != nil {
		if s.ctx.Err() != nil {
			err = errClosed
		}
		return entry{}, &sharedError{r.requester(), err}
	}
	return e, nil
}

// fillOn is fill's work: metainfo from the cache, else rebuilt from the
// store, else fetched from the origin; then seeded and cached.
func (s *Server) fillOn(ctx context.Context, r blobRequest) (entry, error) {
	// A fill that finished just before this one started left it here.
	if e, ok := s.cached(ctx, r.digest); ok {
		return e, nil
	}
	e, err := s.fromStore(ctx, r.digest)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrDigestMismatch) {
		e, err = s.fromOrigin(ctx, r)
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

// toStatus maps an error of get to the gRPC status the client branches on.
func toStatus(ctx context.Context, err error) error {
	var refusal *originRefusal
	switch {
	case errors.Is(err, errClosed):
		return status.Error(codes.Unavailable, err.Error())
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return status.FromContextError(err).Err()
	case errors.Is(err, ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errOriginNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.As(err, &refusal):
		return refusalStatus(refusal)
	case errors.Is(err, storage.ErrDigestMismatch):
		return status.Error(codes.DataLoss, "origin sent bytes that do not match the digest: "+err.Error())
	case errors.Is(err, errOriginUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, storage.ErrTooLarge), errors.Is(err, storage.ErrFull):
		// Another seeder may have room: the client fails over on Unavailable.
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, errEmptyBlob):
		return status.Error(codes.FailedPrecondition, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// refusalStatus is an origin's 4xx as a gRPC status with an ErrorInfo
// carrying the HTTP status, WWW-Authenticate and body.
func refusalStatus(r *originRefusal) error {
	code := codes.FailedPrecondition
	switch r.status {
	case http.StatusUnauthorized:
		code = codes.Unauthenticated
	case http.StatusForbidden:
		code = codes.PermissionDenied
	case http.StatusTooManyRequests:
		code = codes.ResourceExhausted
	}
	st := status.New(code, r.Error())
	md := map[string]string{MetadataOriginStatus: strconv.Itoa(r.status)}
	if r.wwwAuth != "" {
		md[MetadataWWWAuthenticate] = r.wwwAuth
	}
	if r.body != "" {
		md[MetadataOriginBody] = r.body
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
