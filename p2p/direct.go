package p2p

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/eagle-p2p/eagle/internal/directio"
	"github.com/eagle-p2p/eagle/internal/pace"
)

// Direct transfers. BitTorrent's wire moves a blob in 16 KiB requests
// (wireChunkSize), a few in flight per connection, each chunk written to
// disk on its own and each piece read back to be hashed: uncapped, one
// node pulling from a warm seeder over a veth moved a quarter of what a
// plain HTTP GET moves (BENCHMARKS.md, bench link), bound by the CPU those
// steps take. A direct transfer is one HTTP range request for a run of
// whole pieces, on the same peer port and under the same mutual TLS (ALPN
// eagle-direct/1, see peerMux): the downloader hashes each piece in memory
// as it arrives and writes it once, already verified.
//
// The peer wire stays the swarm's way to trade: a direct transfer serves
// a node from a peer that holds the whole blob and is not needed by
// others. A node serves one peer of a swarm at a time, only while no other
// peer of that swarm lacks pieces, and stops once one does: its uplink is
// then one of the swarm's sources (on a seeder, of new pieces, which
// super-seeding shares out), and a peer that streamed whole windows to
// several stragglers at once would give each a fraction of it for a
// window that the wire could fetch from many. Every node serves at most
// maxDirectServes transfers at once. A downloader claims its pieces once
// the peer accepted (the peer wire does not ask for them meanwhile) and
// gives back what it did not get when a transfer fails.
const (
	// directPath is where a blob is served: directPath + infohash (hex).
	directPath = "/eagle/v1/torrents/"
	// maxDirectServes is how many direct transfers a node serves at once.
	maxDirectServes = 8
	// maxDirectSources is how many peers a download takes direct
	// transfers from at once.
	maxDirectSources = 4
	// directStreams is how many transfers a download runs from one peer
	// at once, each on its own connection: receiving, decrypting, hashing
	// and writing a piece are one goroutine's work, so one stream keeps
	// one core busy at most, on either end.
	directStreams = 2
	// directWindow is how many bytes of whole pieces one request claims.
	directWindow = 8 << 20
	// directChunk is the server's read and write size.
	directChunk = 256 << 10
	// directGrace is how long a node waits, before it answers a new
	// peer's transfer, for other peers of the swarm to connect: agents
	// that start a pull at once connect to the seeder within a few hundred
	// milliseconds, and a seeder that streamed to the first one meanwhile
	// would take that much of its uplink from all of them.
	directGrace = 500 * time.Millisecond
	// directWarm is how long after its last transfer a peer's next one
	// skips directGrace: the next window of the same pull.
	directWarm = 2 * time.Second
	// directQuick is the most bytes a transfer may ask for and skip
	// directGrace: a download's last pieces, or one the peer wire stopped
	// filling, which a reader waits on, cost the uplink a few
	// milliseconds.
	directQuick = 1 << 20
	// directCheckEvery is how often, in bytes sent, a transfer checks
	// that no other peer of the swarm started downloading.
	directCheckEvery = 4 * directChunk
	// directStall ends a transfer that delivers no byte for this long,
	// giving its pieces back to the peer wire.
	directStall = 5 * time.Second
	// directRetry is how long a download waits before asking a peer
	// again that refused or failed a transfer (doubled up to 8 times).
	directRetry = time.Second
	// roleHeader tells the downloader what kind of peer served it.
	roleHeader = "Eagle-Role"
	// peerIDHeader carries the downloader's BitTorrent peer ID, so that
	// a seeder tells it from the swarm's other peers.
	peerIDHeader = "Eagle-Peer-Id"
)

// errDirectBusy is a peer's refusal of a direct transfer: it is busy, or
// its swarm needs its uplink.
var errDirectBusy = errors.New("p2p: direct transfer refused")

// errUpstreamWithdrawn ends a direct transfer from an upstream peer once
// this node may no longer take pieces from it: the tracker said it is no
// longer a border peer, or gave it a share of the pieces. A transfer
// claims a run of up to directWindow bytes; left to finish, one from the
// upstream peer kept bringing pieces across the border after the
// connections to it were closed.
var errUpstreamWithdrawn = errors.New("p2p: direct transfer: no longer allowed from an upstream peer")

// directServer serves the blobs the engine holds whole to members that
// know their infohash.
type directServer struct {
	e     *Engine
	srv   *http.Server
	slots chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	serving map[metainfo.Hash]*swarmTransfers // swarms with transfers
}

// swarmTransfers are the transfers a node serves in one swarm: all to one
// peer.
type swarmTransfers struct {
	to [20]byte
	n  int
	// last is when the last of them ended (n is 0 then).
	last time.Time
}

// takeSwarm reserves one of swarm ih's transfers for the peer with ID to:
// a node serves one peer of a swarm at a time, on at most directStreams
// connections. warm reports that the peer is being served, or was just
// now: its transfers need not wait for the swarm to form (directGrace)
// again.
func (s *directServer) takeSwarm(ih metainfo.Hash, to [20]byte) (ok, warm bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for h, st := range s.serving {
		if st.n == 0 && now.Sub(st.last) > directWarm {
			delete(s.serving, h)
		}
	}
	st := s.serving[ih]
	switch {
	case st == nil || st.n == 0 && st.to != to:
		s.serving[ih] = &swarmTransfers{to: to, n: 1}
		return true, false
	case st.to == to && st.n < directStreams:
		st.n++
		return true, true
	}
	return false, false
}

func (s *directServer) leaveSwarm(ih metainfo.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.serving[ih]; st != nil {
		st.n--
		st.last = time.Now()
	}
}

func newDirectServer(e *Engine, lis net.Listener) *directServer {
	s := &directServer{e: e, slots: make(chan struct{}, maxDirectServes), done: make(chan struct{}), serving: make(map[metainfo.Hash]*swarmTransfers)}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: peerTLSHandshakeTimeout,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return e.ctx },
	}
	go func() {
		defer close(s.done)
		s.srv.Serve(lis)
	}()
	return s
}

// close ends every transfer and waits for the server to stop.
func (s *directServer) close() {
	s.srv.Close()
	<-s.done
}

// seeding returns the entry of the committed blob whose infohash is ih.
func (e *Engine) seeding(ih metainfo.Hash) *entry {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ent := range e.blobs {
		if ent.seeds() && ent.torrent().InfoHash() == ih {
			return ent
		}
	}
	return nil
}

func (s *directServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := s.e
	if key, ok := strings.CutPrefix(r.URL.Path, relayPath); ok {
		s.serveRelay(w, r, key)
		return
	}
	hexIH, ok := strings.CutPrefix(r.URL.Path, directPath)
	var ih metainfo.Hash
	if !ok || len(hexIH) != 40 || ih.FromHexString(hexIH) != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ent := e.seeding(ih)
	if ent == nil {
		http.Error(w, "not held here", http.StatusNotFound)
		return
	}
	start, end, ok := parseByteRange(r.Header.Get("Range"), ent.size)
	if !ok {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", ent.size))
		http.Error(w, "one range of bytes=first-last within the blob is required", http.StatusRequestedRangeNotSatisfiable)
		return
	}
	if e.cfg.DisableDirect {
		http.Error(w, "direct transfers are off", http.StatusServiceUnavailable)
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var from [20]byte
	copy(from[:], r.Header.Get(peerIDHeader))
	// One peer of a swarm at a time, and only while it is the only one
	// downloading.
	ok, warm := s.takeSwarm(ih, from)
	if !ok {
		e.log.Debug("direct transfer refused: serving another peer of the swarm", "digest", ent.dgst, "to", string(from[:]))
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	defer s.leaveSwarm(ih)
	// An agent answers a peer that lacks at most rescuePieces pieces (as
	// its bitfield on the peer wire says), for at most that many, while
	// others of the swarm download too: a download's last pieces, or ones
	// the wire left with a peer that stopped answering, cost the uplink a
	// moment, and without it two nodes each short of a piece waited on
	// each other (each holder refused both, the other one still
	// downloading), 15 s in a failover test. A seeder's uplink is the
	// swarm's source of new pieces: it keeps the rule.
	rescue := e.cfg.Role != RoleSeeder && end-start <= rescuePieces*ent.data.pieceLen && lacksFew(ent.torrent(), from)
	needed := func() bool {
		if rescue {
			return false
		}
		id, has, ok := downloadingPeer(ent.torrent(), from)
		if ok {
			e.log.Debug("direct transfer refused: a peer of the swarm is downloading", "digest", ent.dgst, "to", string(from[:]), "downloading", id, "has", has)
		}
		return ok
	}
	if needed() {
		http.Error(w, "the swarm needs this node's uplink", http.StatusServiceUnavailable)
		return
	}
	if !warm && end-start > directQuick {
		// A swarm forms over the first moments of a pull: wait for its
		// other peers to show up before handing the uplink to one of
		// them.
		select {
		case <-time.After(directGrace):
		case <-r.Context().Done():
			return
		}
	}
	if needed() {
		http.Error(w, "the swarm needs this node's uplink", http.StatusServiceUnavailable)
		return
	}
	unpin := e.pin(ent.dgst)
	defer unpin()
	role := "agent"
	if e.cfg.Role == RoleSeeder {
		role = "seeder"
	}
	w.Header().Set(roleHeader, role)
	w.Header().Set("Content-Length", strconv.FormatInt(end-start, 10))
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, ent.size))
	w.WriteHeader(http.StatusPartialContent)
	buf := make([]byte, directChunk)
	rc := http.NewResponseController(w)
	for off := start; off < end; {
		if (off-start)%directCheckEvery == 0 && needed() {
			// Another peer arrived: end the transfer; the downloader keeps
			// the pieces it got and asks the swarm for the rest.
			e.log.Debug("direct transfer ended: the swarm needs the uplink", "digest", ent.dgst, "to", string(from[:]), "sent", off-start)
			panic(http.ErrAbortHandler)
		}
		n := int(min(int64(len(buf)), end-off))
		if err := pace.Wait(r.Context(), e.agentUpload, n); err != nil {
			panic(http.ErrAbortHandler)
		}
		m, err := ent.data.ReadAt(buf[:n], off)
		if m < n {
			e.log.Warn("direct transfer: reading the blob", "digest", ent.dgst, "err", err)
			panic(http.ErrAbortHandler)
		}
		// A downloader that stops reading holds a slot no longer than one
		// that stops answering holds its claim (directStall, client side).
		rc.SetWriteDeadline(time.Now().Add(2 * directStall))
		if _, err := w.Write(buf[:n]); err != nil {
			return
		}
		e.directUploaded.Add(int64(n))
		off += int64(n)
	}
}

// rescuePieces is how few pieces a peer may lack for a node to answer its
// direct transfer whoever else downloads (see directServer).
const rescuePieces = 4

// lacksFew reports whether the peer of t with peer ID id lacks at most
// rescuePieces pieces, by what it said on the peer wire; false if it has
// no connection to this node.
func lacksFew(t *torrent.Torrent, id [20]byte) bool {
	n := t.NumPieces()
	for _, pc := range t.PeerConns() {
		if pc.PeerID == id {
			return n-pc.Stats().RemotePieceCount <= rescuePieces
		}
	}
	return false
}

// downloadingPeer returns a peer of t other than the one with peer ID
// except that lacks pieces (or has not said yet what it has): this
// node's uplink is then one of that swarm's sources, and a direct transfer
// to one peer would take it from the others; on a seeder, from the
// super-seeding that gives every peer new pieces. Seeders do not count: a
// super-seeder says it has only the pieces it offers, so it looked like a
// peer downloading, and every node that held the blob refused the last
// node of a swarm the piece it waited on (seen over real sockets: one node
// 3.4 s behind the others, for one 64 KiB piece).
// It returns the peer's ID and how many pieces it has.
func downloadingPeer(t *torrent.Torrent, except [20]byte) (id string, has int, ok bool) {
	n := t.NumPieces()
	for _, pc := range t.PeerConns() {
		if pc.PeerID == except || isSeederID(pc.PeerID[:]) {
			continue
		}
		if c := pc.Stats().RemotePieceCount; c < n {
			return string(pc.PeerID[:]), c, true
		}
	}
	return "", 0, false
}

// parseByteRange parses a Range header of one range, "bytes=first-last",
// within a blob of size bytes, into [start, end).
func parseByteRange(h string, size int64) (start, end int64, ok bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first < 0 || last < first || last >= size {
		return 0, 0, false
	}
	return first, last + 1, true
}

// pieceHashMismatch is a direct transfer's piece that failed its hash.
type pieceHashMismatch struct{ piece int }

func (m pieceHashMismatch) Error() string {
	return fmt.Sprintf("piece %d failed its hash", m.piece)
}

// fetchDirect fetches pieces [first, first+n) of ent from the direct
// transfer server at src, writing each once it passed its hash; accepted
// is called once the server answered with the range. *buf holds a piece;
// it is made then if it is nil. It returns the first error; pieces written
// before it stay.
func (c *directClient) fetchDirect(ctx context.Context, ent *entry, info *metainfo.Info, src netip.AddrPort, first, n int, buf *[]byte, accepted func()) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(directStall, func() { cancel(fmt.Errorf("no byte for %v", directStall)) })
	defer stall.Stop()
	pl := info.PieceLength
	start := int64(first) * pl
	end := min(int64(first+n)*pl, info.Length)
	u := fmt.Sprintf("%s://%s%s%s", c.scheme, src, directPath, ent.torrent().InfoHash().HexString())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, end-1))
	req.Header.Set(peerIDHeader, string(c.peerID[:]))
	resp, err := c.http.Do(req)
	if err != nil {
		return directErr(ctx, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusServiceUnavailable:
		return errDirectBusy
	default:
		return fmt.Errorf("p2p: direct transfer: %s", resp.Status)
	}
	if want := fmt.Sprintf("bytes %d-%d/%d", start, end-1, info.Length); resp.Header.Get("Content-Range") != want {
		return fmt.Errorf("p2p: direct transfer: Content-Range %q, want %q", resp.Header.Get("Content-Range"), want)
	}
	accepted()
	if *buf == nil {
		*buf = directio.Buffer(int(info.PieceLength))
	}
	fromSeeder := resp.Header.Get(roleHeader) == "seeder"
	ih, ip := ent.torrent().InfoHash(), src.Addr().Unmap()
	for i := first; i < first+n; i++ {
		// Asked at each piece: the tracker's answers come while a transfer
		// runs, and one may start before the first names src upstream.
		if !c.e.upstream.allowsDirect(ih, ip) {
			return errUpstreamWithdrawn
		}
		p := info.Piece(i)
		b := (*buf)[:p.Length()]
		for got := 0; got < len(b); {
			m, err := resp.Body.Read(b[got:min(len(b), got+directChunk)])
			got += m
			if m > 0 {
				stall.Reset(directStall)
			}
			if err != nil && got < len(b) {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return directErr(ctx, err)
			}
		}
		// The blob's SHA-256 chain where the metainfo has one: one hash
		// of the piece instead of its SHA-1 now and the digest's pass
		// over it in the commit.
		chain := ent.data.pieceChain()
		if chain != nil && !chain.verify(i, b) || chain == nil && sha1.Sum(b) != p.V1Hash().Unwrap() {
			return pieceHashMismatch{i}
		}
		wrote, spare, err := ent.data.writeVerified(i, b, chain != nil)
		*buf = spare
		if err != nil {
			return err
		}
		if wrote {
			ent.torrent().Piece(i).UpdateCompletion()
			if fromSeeder {
				c.e.fromSeeders.Add(int64(len(b)))
			} else {
				c.e.fromAgents.Add(int64(len(b)))
			}
			if c.e.upstream.is(ih, ip) {
				c.e.fromUpstream.Add(int64(len(b)))
			}
			c.e.directDownloaded.Add(int64(len(b)))
		}
	}
	return nil
}

// directErr says why a transfer broke: the stall bound, or err.
func directErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return fmt.Errorf("p2p: direct transfer: %w", cause)
	}
	return fmt.Errorf("p2p: direct transfer: %w", err)
}
