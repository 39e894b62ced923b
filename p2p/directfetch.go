package p2p

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/time/rate"
)

// directClient is the downloading side of direct transfers (see
// direct.go): one HTTP client over the engine's dialer, in mutual TLS with
// ALPN eagle-direct/1, reads paced by the download limit.
type directClient struct {
	e      *Engine
	http   *http.Client
	scheme string
	peerID [20]byte
}

func newDirectClient(e *Engine, d *net.Dialer, dl *rate.Limiter) *directClient {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		prepare(c)
		if e.creds != nil {
			cfg := e.creds.ClientConfig()
			cfg.NextProtos = []string{directALPN}
			if c, err = clientTLS(ctx, c, cfg, addr); err != nil {
				return nil, err
			}
		}
		return limitConn(c, dl, nil), nil
	}
	tr := &http.Transport{
		MaxIdleConnsPerHost:   directStreams,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: directStall,
		DisableCompression:    true,
		// Read straight into the piece buffer, a TLS record at a time.
		ReadBufferSize: 64 << 10,
	}
	c := &directClient{e: e, http: &http.Client{Transport: tr}, scheme: "http", peerID: e.cl.PeerID()}
	if e.creds != nil {
		tr.DialTLSContext = dial
		c.scheme = "https"
	} else {
		tr.DialContext = dial
	}
	return c
}

// directRun takes direct transfers for one download from the peers that
// hold the blob whole, as they become known, until every piece is
// complete or ctx ends.
type directRun struct {
	c    *directClient
	ent  *entry
	info *metainfo.Info
	// given are peers the seeders named as holding the blob.
	given []netip.AddrPort

	mu      sync.Mutex
	sources map[netip.AddrPort]*directSource
	// reserved is set while the pieces nobody claimed are kept from the
	// peer wire (priority none): a direct transfer delivered a whole
	// window, so the next windows go to direct transfers too, and the
	// wire would only fetch in parallel what they will bring, on the same
	// CPU and links. Released when no transfer runs any more.
	reserved bool
	// wire is what the last look found of the partial pieces the peer
	// wire is filling (see wireFilling).
	wire map[int]wireProgress
	// stalled counts the pieces taken from the wire (see wireFilling).
	stalled int
	wg      sync.WaitGroup
}

// wireProgress is how many bytes a partial piece lacked, and since when it
// has lacked that many.
type wireProgress struct {
	missing int64
	since   time.Time
	taken   bool // handed to direct transfers (logged)
}

// directSource is what a download knows of one peer's direct transfers.
type directSource struct {
	busy    int       // transfers from it running
	retryAt time.Time // not before then
	fails   int       // refusals and failures in a row
	// delivered is set once a transfer from it completed a window.
	delivered bool
	bad       bool // it sent a piece that failed its hash: never again
}

// run starts transfers from new sources every tick until the download
// has every piece or ctx ends, then waits for them.
func (r *directRun) run(ctx context.Context) {
	defer func() {
		r.wg.Wait()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.release()
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if r.ent.data.left() == 0 {
			return
		}
		r.startTransfers(ctx)
		select {
		case <-ctx.Done():
			return
		case <-r.ent.data.completed():
			return
		case <-tick.C:
		}
	}
}

// holders returns the peer addresses known to hold the whole blob: those
// the seeders named, and the connected peers that have every piece.
func (r *directRun) holders() []netip.AddrPort {
	out := append([]netip.AddrPort(nil), r.given...)
	n := r.ent.torrent().NumPieces()
	for _, pc := range r.ent.torrent().PeerConns() {
		if pc.Stats().RemotePieceCount != n {
			continue
		}
		ap, err := netip.ParseAddrPort(pc.RemoteAddr.String())
		if err != nil || !r.c.e.upstream.allowsDirect(r.ent.torrent().InfoHash(), ap.Addr().Unmap()) {
			continue
		}
		if pc.PeerListenPort > 0 && pc.PeerListenPort < 1<<16 {
			// Its listen port, from its extended handshake: a peer that
			// dialed this node came from another port.
			ap = netip.AddrPortFrom(ap.Addr(), uint16(pc.PeerListenPort))
		}
		out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return out
}

func (r *directRun) startTransfers(ctx context.Context) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	active := 0
	for _, s := range r.sources {
		if s.busy > 0 {
			active++
		}
	}
	for _, ap := range r.holders() {
		s := r.sources[ap]
		if s == nil {
			s = &directSource{}
			r.sources[ap] = s
		}
		if s.bad || now.Before(s.retryAt) || s.busy == 0 && active >= maxDirectSources {
			continue
		}
		// A second stream only once the first one delivered (fails is
		// reset then): a peer that refuses is asked once.
		if s.busy == 0 {
			active++
		} else if s.busy >= directStreams || s.fails > 0 || !s.delivered {
			continue
		}
		s.busy++
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.transfer(ctx, ap, s)
		}()
	}
}

// transfer claims runs of pieces and fetches them from src until none are
// left to claim, src fails, or src is an upstream peer this node may no
// longer take pieces from (errUpstreamWithdrawn, checked at each piece).
func (r *directRun) transfer(ctx context.Context, src netip.AddrPort, s *directSource) {
	d, t := r.ent.data, r.ent.torrent()
	window := max(1, int(directWindow/r.info.PieceLength))
	var buf []byte // a piece, made once a peer accepts
	var err error
	for ctx.Err() == nil {
		if !r.c.e.upstream.allowsDirect(t.InfoHash(), src.Addr().Unmap()) {
			// An upstream peer of a node that is no longer a border
			// peer, or takes a share of the pieces (see oneway.go).
			break
		}
		started := r.wireFilling()
		first, n := d.claim(window, func(i int) bool { return started[i] })
		if n == 0 {
			break
		}
		// The wire keeps asking for the claimed pieces until the peer
		// accepts: a peer may make the request wait and refuse (see
		// directGrace), and a seeder offers the lowest-numbered pieces
		// first, which a downloader not interested in them meanwhile
		// would leave on offer.
		wasAccepted := false
		accepted := func() {
			wasAccepted = true
			d.accept(first, n)
			setPriorities(t, first, n, torrent.PiecePriorityNone)
		}
		err = r.c.fetchDirect(ctx, r.ent, r.info, src, first, n, &buf, accepted)
		left := d.unclaim(first, n)
		if wasAccepted {
			// Only pieces this transfer took off the wire's list go back;
			// the others keep what a reader asked for meanwhile (a
			// refusal once reset the piece a reader waited on to normal
			// priority, and first bytes came seconds late).
			for _, i := range left {
				t.Piece(i).SetPriority(torrent.PiecePriorityNormal)
			}
		}
		if err != nil {
			break
		}
		r.mu.Lock()
		s.fails = 0
		s.delivered = true
		if !r.reserved && ctx.Err() == nil {
			r.reserved = true
			r.setUnclaimed(torrent.PiecePriorityNone)
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s.busy--
	if !r.anyBusy() {
		r.release()
	}
	if err == nil || ctx.Err() != nil || errors.Is(err, errUpstreamWithdrawn) {
		return
	}
	var bad pieceHashMismatch
	switch {
	case errors.As(err, &bad):
		s.bad = true
		r.c.e.log.Warn("direct transfer: a peer sent a piece that failed its hash; not asking it again", "digest", r.ent.dgst, "peer", src, "piece", bad.piece)
	case errors.Is(err, errDirectBusy):
		r.c.e.log.Debug("direct transfer refused", "digest", r.ent.dgst, "peer", src)
	default:
		r.c.e.log.Debug("direct transfer failed", "digest", r.ent.dgst, "peer", src, "err", err)
	}
	s.retryAt = time.Now().Add(directRetry << min(s.fails, 3))
	s.fails++
}

// anyBusy reports whether a transfer runs; r.mu is held.
func (r *directRun) anyBusy() bool {
	for _, s := range r.sources {
		if s.busy > 0 {
			return true
		}
	}
	return false
}

// release gives the pieces nobody claimed back to the peer wire; r.mu is
// held.
func (r *directRun) release() {
	if r.reserved {
		r.reserved = false
		r.setUnclaimed(torrent.PiecePriorityNormal)
	}
}

// setUnclaimed sets the priority of the pieces that are neither complete
// nor claimed.
func (r *directRun) setUnclaimed(p torrent.PiecePriority) {
	for _, i := range r.ent.data.unclaimedLeft() {
		if r.ent.torrent().PieceState(i).Priority > torrent.PiecePriorityNormal {
			continue // a reader asked for it first
		}
		r.ent.torrent().Piece(i).SetPriority(p)
	}
}

// wireStall is how long a piece the peer wire started may go without a
// byte before a direct transfer takes it. Short: a piece in progress on
// the wire gets a chunk every few milliseconds, and a reader may be
// waiting on this one (5 s, the first value, put a 4.5 s pull at 10.7 s
// in a CI run: one chunk of piece 728 of 768 was never asked for again;
// at 2 s, such a last chunk, seen as the other nodes finished, still put
// a 4 s pull at 7 s). Taking a piece too early costs little: a peer whose
// uplink the swarm needs refuses the transfer.
const wireStall = time.Second

// wireFilling returns which pieces the peer wire is filling, which a
// direct transfer leaves to it: those it started (see wireStarted), less
// the partial ones it added no byte to for wireStall. The wire may never
// finish those. The cancels that a transfer's claim and the reserve cause
// come back as rejections, and anacrolix (v1.61.0) answers a rejection
// with a request update that asks for nothing (applyRequestState); while
// that update is pending it drops any other, such as the one a reader's
// priority for the piece asked for (onNeedUpdateRequests). The connection
// is then left with no request out and nothing to wake it: seen with a
// piece short of its last chunks, whose reader waited until its context
// ended.
func (r *directRun) wireFilling() []bool {
	t := r.ent.torrent()
	started := wireStarted(t)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wire == nil {
		r.wire = make(map[int]wireProgress)
	}
	for i := range started {
		if !started[i] || !t.PieceState(i).Partial {
			delete(r.wire, i)
			continue
		}
		missing := t.PieceBytesMissing(i)
		w, ok := r.wire[i]
		switch {
		case !ok || w.missing != missing:
			r.wire[i] = wireProgress{missing: missing, since: now}
		case now.Sub(w.since) >= wireStall:
			started[i] = false
			if !w.taken {
				w.taken = true
				r.wire[i] = w
				// At warn once per download: behind a congested link
				// the wire's queues can hold a piece's last chunks for
				// a second, and a pull then took dozens of pieces this
				// way, each a warning.
				r.stalled++
				level := slog.LevelDebug
				if r.stalled == 1 {
					level = slog.LevelWarn
				}
				r.c.e.log.Log(context.Background(), level, "direct transfer: the peer wire stopped filling a piece; taking it (later ones of this download at debug)",
					"digest", r.ent.dgst, "piece", i, "missing", missing, "idle", now.Sub(w.since).Round(time.Millisecond), "taken", r.stalled)
			}
		}
	}
	return started
}

// wireStarted returns which pieces the peer wire is already filling or
// checking: a direct transfer leaves them to it.
func wireStarted(t *torrent.Torrent) []bool {
	out := make([]bool, 0, t.NumPieces())
	for _, run := range t.PieceStateRuns() {
		busy := run.Partial || run.Hashing || run.QueuedForHash || run.Marking
		for range run.Length {
			out = append(out, busy)
		}
	}
	for len(out) < t.NumPieces() {
		out = append(out, true)
	}
	return out
}

func setPriorities(t *torrent.Torrent, first, n int, p torrent.PiecePriority) {
	for i := first; i < first+n; i++ {
		t.Piece(i).SetPriority(p)
	}
}
