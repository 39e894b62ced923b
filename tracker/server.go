package tracker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Server is the tracker's http.Handler. It serves GET on "/announce" and
// "/scrape"; any other path is 404 and any other method 405.
//
// Malformed announces and scrapes are answered, as BEP 3 requires, with
// HTTP 200 and a bencoded "failure reason" naming the bad parameter. A
// failing PeerStore gives HTTP 500 with a failure reason, and is logged.
//
// An announce the PeerStore refuses as full (ErrFull: a new swarm or peer
// beyond the store's limits) gets HTTP 503 and the failure reason "tracker
// full": the client retries later, or uses another tracker. It is logged at
// warn, at most one line every five seconds, with the number refused since
// the previous line, so that a flood does not flood the log.
//
// An announce or a stop carrying a peer ID that is registered from another
// IP address (ErrPeerConflict) is refused the BEP 3 way, HTTP 200 with a
// failure reason, and the entry stays as it is: nobody can move or remove
// another node's entry by sending its peer ID. The ID is free again once
// the entry expires.
//
// Responses are always compact (BEP 23), whatever the client's compact
// parameter says. A peer is never handed itself, and a seeder is handed only
// leechers, since seeders have nothing to exchange. The handout is chosen by
// the configured Policy from a uniform sample of the swarm twice the size of
// the numwant (plus one, for the asker), or as large as the Policy asks if
// it implements SampleSizer and asks for more; in a swarm larger than that
// the policy orders a sample.
//
// An announce may carry the peer's location in the "location" parameter
// (URL-escaped, see ValidLocation); an invalid one is refused the BEP 3
// way, naming the parameter. A peer that sends none, or an empty one, gets
// the location Config.Locations gives its address, if any.
type Server struct {
	cfg         Config
	store       PeerStore
	oneTrip     AnnounceStore // store, if it answers an announce in one call
	ownStore    bool
	policy      Policy
	sampler     SampleSizer     // policy, if it asks for its sample size
	recorder    HandoutRecorder // policy, if it records handouts
	marker      UpstreamMarker  // policy, if it marks upstream peers
	judge       BorderJudge     // policy, if it has border peers
	locations   locator
	log         *slog.Logger
	interval    int64 // seconds
	minInterval int64 // seconds
	// seedInterval is the interval told to complete peers, in seconds.
	seedInterval int64
	metrics      *serverMetrics
	closeOnce    sync.Once
	closeErr     error

	// fullLog lets through one "tracker full" log line per fullLogEvery;
	// fullRefused counts the refusals not yet logged.
	fullLog     *rate.Limiter
	fullRefused atomic.Int64
}

// fullLogEvery is the least time between two "tracker full" log lines.
const fullLogEvery = 5 * time.Second

// Failure reasons of announces refused by the PeerStore.
const (
	reasonFull     = "tracker full"
	reasonConflict = "peer_id: registered from another address"
)

// AnnounceStore is a PeerStore that records an announce and answers it in
// one call. A store on the far side of a network (Redis) implements it so
// that an announce costs one round trip instead of three; a Server whose
// store implements it calls AnnouncePeers where it would call Announce,
// Peers and Counts.
type AnnounceStore interface {
	PeerStore
	// AnnouncePeers does what Announce(ctx, ih, p) does, with the same
	// errors, and then returns what Peers(ctx, ih, limit) and Counts(ctx,
	// ih) would return, p included, in one step. On an error it returns
	// no peers and zero counts.
	AnnouncePeers(ctx context.Context, ih InfoHash, p Peer, limit int) ([]Peer, SwarmCounts, error)
}

// New returns the tracker for cfg, an http.Handler: mount it (under a
// prefix with http.StripPrefix, if need be) and serve it to cluster
// members over TLS (see mtls.Credentials.RequireMember). Zero fields of
// cfg take their defaults (see Config), so
//
//	h, err := tracker.New(tracker.Config{}, nil)
//
// is a complete tracker with its peers in memory. Close it when done.
//
// store is optional. With a nil store (and cfg.Store "memory"
// or empty), New creates a MemoryStore with cfg.StoreConfig() (its PeerTTL
// and limits), which the Server owns and Close closes. A store passed in
// stays the caller's to close, and keeps its own TTL and limits: several
// trackers share their peers through one Redis that way. New does not
// create a Redis store: with cfg.Store "redis", build it with package
// tracker/redisstore and pass it. Errors about cfg wrap ErrInvalidConfig.
func New(cfg Config, store PeerStore) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil && cfg.Store == StoreRedis {
		return nil, fmt.Errorf("%w: store redis: New creates only the memory store; build the Redis store with package tracker/redisstore and pass it to New", ErrInvalidConfig)
	}
	cfg = cfg.WithDefaults()
	s := &Server{
		cfg:         cfg,
		store:       store,
		policy:      cfg.Policy,
		locations:   newLocator(cfg.Locations),
		log:         cfg.Logger,
		interval:    int64(cfg.Interval / time.Second),
		minInterval: int64(cfg.MinInterval / time.Second),

		seedInterval: int64(cfg.SeedInterval / time.Second),
		fullLog:      rate.NewLimiter(rate.Every(fullLogEvery), 1),
	}
	if store == nil {
		s.store = NewMemoryStore(cfg.StoreConfig())
		s.ownStore = true
	}
	s.oneTrip, _ = s.store.(AnnounceStore)
	s.sampler, _ = s.policy.(SampleSizer)
	s.recorder, _ = s.policy.(HandoutRecorder)
	s.marker, _ = s.policy.(UpstreamMarker)
	s.judge, _ = s.policy.(BorderJudge)
	var err error
	if s.metrics, err = newServerMetrics(cfg.Metrics, s.store); err != nil {
		if s.ownStore {
			s.store.Close()
		}
		return nil, err
	}
	return s, nil
}

// Close closes the PeerStore if New created it and unregisters the
// Server's metrics. It is idempotent. Requests served after Close fail with
// HTTP 500.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.metrics.unregister()
		if s.ownStore {
			s.closeErr = s.store.Close()
		}
	})
	return s.closeErr
}

// bufPool holds response buffers; a full response of 50 IPv4 peers is
// under 500 bytes.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var handle func(*http.Request, []byte) ([]byte, int)
	switch r.URL.Path {
	case "/announce":
		handle = s.announce
	case "/scrape":
		handle = s.scrape
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	bp := bufPool.Get().(*[]byte)
	body, status := handle(r, (*bp)[:0])
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	// A failed write means the client went away; nothing to do.
	_, _ = w.Write(body)
	if cap(body) <= 64<<10 {
		*bp = body
		bufPool.Put(bp)
	}
}

// announce serves one announce and returns the response body and status.
func (s *Server) announce(r *http.Request, b []byte) (body []byte, status int) {
	req, err := parseAnnounce(r.URL.RawQuery, s.cfg.TrustClientIP)
	res := resultRejected
	defer func() { s.metrics.announced(req.event, res) }()
	if err != nil {
		return s.badRequest(r, b, err)
	}
	addr := req.ip
	if !addr.IsValid() {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return s.badRequest(r, b, badField("ip", "cannot tell the client's address from "+strconv.Quote(r.RemoteAddr)))
		}
		addr = ap.Addr().Unmap().WithZone("")
	}
	self := Peer{ID: req.peerID, Addr: netip.AddrPortFrom(addr, req.port), Left: req.left, Location: req.location}
	if self.Location == "" && len(s.locations) > 0 {
		self.Location = s.locations.locate(addr)
	}
	ctx := r.Context()
	var (
		peers  []Peer
		counts SwarmCounts
		// haveCounts: the store answered the counts with the announce.
		haveCounts bool
		// share of shares: the answer's "border" (see BorderJudge);
		// shares 0 and share -1 for a requester that is not a border
		// peer, share -2 for none.
		share, shares = -2, 0
	)
	if req.event == eventStopped {
		if err := s.store.Remove(ctx, req.infoHash, req.peerID, addr); err != nil {
			body, status, res = s.refused(r, b, "remove", err)
			return body, status
		}
	} else {
		numWant := req.numWant
		if numWant < 0 {
			numWant = s.cfg.NumWant
		}
		numWant = min(numWant, s.cfg.MaxNumWant)
		// A sample twice the numwant, and one for self, for the policy,
		// or what it asks for.
		limit := 0
		if numWant > 0 {
			limit = 2*numWant + 1
			if s.sampler != nil {
				limit = max(limit, s.sampler.SampleSize(numWant))
			}
		}
		var candidates []Peer
		if s.oneTrip != nil {
			if candidates, counts, err = s.oneTrip.AnnouncePeers(ctx, req.infoHash, self, limit); err != nil {
				body, status, res = s.refused(r, b, "announce", err)
				return body, status
			}
			haveCounts = true
		} else {
			if err := s.store.Announce(ctx, req.infoHash, self); err != nil {
				body, status, res = s.refused(r, b, "announce", err)
				return body, status
			}
			if limit > 0 {
				if candidates, err = s.store.Peers(ctx, req.infoHash, limit); err != nil {
					res = resultError
					return s.storeFailure(r, b, "peers", err)
				}
			}
		}
		if numWant > 0 {
			candidates = slices.DeleteFunc(candidates, func(p Peer) bool {
				return !p.Addr.IsValid() || p.ID == self.ID || p.Addr == self.Addr ||
					(self.Complete() && p.Complete())
			})
			if len(s.locations) > 0 {
				for i := range candidates {
					if candidates[i].Location == "" {
						candidates[i].Location = s.locations.locate(candidates[i].Addr.Addr())
					}
				}
			}
			if s.judge != nil && self.Location != "" && !self.Complete() {
				share, shares = s.judge.Border(req.infoHash, self, candidates)
				if share < -1 || share >= shares {
					share, shares = -1, 0 // not a share: not a border peer
				}
			}
			peers = s.policy.Order(req.infoHash, self, candidates)
			peers = peers[:min(len(peers), numWant)]
			if s.recorder != nil && len(peers) > 0 {
				s.recorder.RecordHandout(req.infoHash, peers)
			}
		}
	}
	if !haveCounts {
		if counts, err = s.store.Counts(ctx, req.infoHash); err != nil {
			res = resultError
			return s.storeFailure(r, b, "counts", err)
		}
	}
	res = resultOK
	interval := s.interval
	if self.Complete() && counts.Incomplete == 0 {
		// A peer with the whole blob, in a swarm nobody downloads, needs no
		// peers and will be found by those that come: it only has to stay
		// in the store. While the swarm has downloaders it announces as
		// often as they do, to learn of them and connect to them too.
		interval = s.seedInterval
	}
	var upstream []Peer
	if s.marker != nil && len(peers) > 0 {
		upstream = s.marker.Upstream(nil, self, peers)
	}
	return appendAnnounce(b, counts, interval, s.minInterval, peers, upstream, share, shares), http.StatusOK
}

// refused answers an announce or stop the PeerStore did not take: full,
// a peer ID conflict, or a store failure.
func (s *Server) refused(r *http.Request, b []byte, op string, err error) ([]byte, int, result) {
	switch {
	case errors.Is(err, ErrFull):
		s.fullRefused.Add(1)
		if s.fullLog.Allow() {
			n := s.fullRefused.Swap(0) // this one and those not logged since the last line
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "tracker: peer store full, refusing new swarms and peers",
				slog.Int64("refused", n), slog.String("last_error", err.Error()))
		}
		return appendFailure(b, reasonFull), http.StatusServiceUnavailable, resultFull
	case errors.Is(err, ErrPeerConflict):
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.LogAttrs(r.Context(), slog.LevelDebug, "tracker: refused peer ID of another address",
				slog.String("op", op), slog.String("remote", r.RemoteAddr), slog.String("error", err.Error()))
		}
		return appendFailure(b, reasonConflict), http.StatusOK, resultConflict
	}
	body, status := s.storeFailure(r, b, op, err)
	return body, status, resultError
}

// scrape serves one scrape and returns the response body and status.
func (s *Server) scrape(r *http.Request, b []byte) ([]byte, int) {
	hashes, err := parseScrape(r.URL.RawQuery)
	if err != nil {
		return s.badRequest(r, b, err)
	}
	slices.SortFunc(hashes, func(a, b InfoHash) int { return bytes.Compare(a[:], b[:]) })
	hashes = slices.Compact(hashes)
	counts := make([]SwarmCounts, len(hashes))
	for i, ih := range hashes {
		if counts[i], err = s.store.Counts(r.Context(), ih); err != nil {
			return s.storeFailure(r, b, "counts", err)
		}
	}
	return appendScrape(b, hashes, counts), http.StatusOK
}

// badRequest answers a malformed request the BEP 3 way: HTTP 200 and a
// failure reason, which clients show to their users.
func (s *Server) badRequest(r *http.Request, b []byte, err error) ([]byte, int) {
	var fe *fieldError
	if !errors.As(err, &fe) {
		fe = &fieldError{field: "request", msg: err.Error()}
	}
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "tracker: rejected request",
			slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr), slog.String("error", fe.Error()))
	}
	return appendFailure(b, fe.Error()), http.StatusOK
}

// storeFailure answers a request the PeerStore could not serve. A client
// that hung up is not worth an error in the log.
func (s *Server) storeFailure(r *http.Request, b []byte, op string, err error) ([]byte, int) {
	level := slog.LevelError
	if r.Context().Err() != nil {
		level = slog.LevelDebug
	}
	s.log.LogAttrs(r.Context(), level, "tracker: peer store failed",
		slog.String("op", op), slog.String("path", r.URL.Path), slog.Any("error", err))
	return appendFailure(b, "tracker storage unavailable"), http.StatusInternalServerError
}
