package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/opencontainers/go-digest"
)

// The engine announces to the trackers itself instead of through
// anacrolix's announcer: v1.61's announcer keeps its state per infohash
// after a torrent is dropped, so a blob that is dropped (a failed download,
// an eviction) and added again is never announced again. Owning the loop
// also lets a completed download tell the tracker at once.

// Announce timing.
const (
	// minAnnounceInterval bounds how often one torrent announces, whatever
	// the tracker says. A download short of peers asks sooner (see
	// underConnectedInterval).
	minAnnounceInterval = time.Second
	// underConnectedInterval is the wait before announcing again while a
	// download has fewer peers than it dials: peers that announced after
	// it are not in its first answer. It doubles with each answer that
	// brings no peer the download lacks (a swarm smaller than its target),
	// up to the tracker's interval.
	underConnectedInterval = 300 * time.Millisecond
	// announceRetry is the wait after a failed announce.
	announceRetry = 5 * time.Second
	// announceTimeout bounds one announce request.
	announceTimeout = 15 * time.Second
	// maxTrackerResponse caps the tracker's response body.
	maxTrackerResponse = 1 << 20
)

type announceEvent string

const (
	eventNone      announceEvent = ""
	eventStarted   announceEvent = "started"
	eventCompleted announceEvent = "completed"
	eventStopped   announceEvent = "stopped"
)

// announceResult is a tracker's answer.
type announceResult struct {
	interval time.Duration
	peers    []netip.AddrPort
	// upstream are the peers, among peers, the tracker named upstream
	// (see oneway.go).
	upstream []netip.AddrPort
	// border is what the tracker said of this node's part in its
	// location's imports (tracker.BorderJudge): -1 nothing, 0 not a
	// border peer, else a border peer taking share border-1 of borders.
	border, borders int
}

// trackerResponse is the bencoded announce response (BEP 3; compact peers,
// BEP 23 and BEP 7).
type trackerResponse struct {
	FailureReason string `bencode:"failure reason"`
	Interval      int64  `bencode:"interval"`
	MinInterval   int64  `bencode:"min interval"`
	Peers         []byte `bencode:"peers"`
	Peers6        []byte `bencode:"peers6"`
	Upstream      []byte `bencode:"upstream"`
	Upstream6     []byte `bencode:"upstream6"`
	Border        *int64 `bencode:"border"`
	Borders       int64  `bencode:"borders"`
}

// announcer talks to one tracker for one engine.
type announcer struct {
	url    string
	client *http.Client
	peerID [20]byte
	port   int
	// location is the host's Config.Location, sent when set.
	location string

	// Failed announces are logged at warn, at most one line per
	// announceLogEvery with the count since the last line.
	logMu    sync.Mutex
	logNext  time.Time
	failures int
}

// announceLogEvery spaces the warnings about one tracker's failures.
const announceLogEvery = 30 * time.Second

// failed logs a failed announce at warn, rate-limited.
func (a *announcer) failed(log *slog.Logger, dgst digest.Digest, err error) {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	a.failures++
	if now := time.Now(); now.After(a.logNext) {
		log.Warn("tracker announce failed", "tracker", a.url, "digest", dgst, "failures", a.failures, "err", err)
		a.failures = 0
		a.logNext = now.Add(announceLogEvery)
	}
}

func (a *announcer) announce(ctx context.Context, ih metainfo.Hash, ev announceEvent, numWant int, downloaded, uploaded, left int64) (announceResult, error) {
	q := url.Values{}
	q.Set("info_hash", string(ih[:]))
	q.Set("peer_id", string(a.peerID[:]))
	q.Set("port", strconv.Itoa(a.port))
	q.Set("uploaded", strconv.FormatInt(uploaded, 10))
	q.Set("downloaded", strconv.FormatInt(downloaded, 10))
	q.Set("left", strconv.FormatInt(left, 10))
	q.Set("compact", "1")
	q.Set("numwant", strconv.Itoa(numWant))
	if ev != eventNone {
		q.Set("event", string(ev))
	}
	if a.location != "" {
		q.Set("location", a.location)
	}
	u, err := url.Parse(a.url)
	if err != nil {
		return announceResult{}, err
	}
	if u.RawQuery != "" {
		u.RawQuery += "&" + q.Encode()
	} else {
		u.RawQuery = q.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return announceResult{}, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return announceResult{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTrackerResponse))
	if err != nil {
		return announceResult{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return announceResult{}, fmt.Errorf("tracker answered %s", resp.Status)
	}
	return parseAnnounceResponse(body)
}

func parseAnnounceResponse(body []byte) (announceResult, error) {
	var tr trackerResponse
	if err := unmarshalBencode(body, &tr); err != nil {
		return announceResult{}, fmt.Errorf("tracker response: %w", err)
	}
	if tr.FailureReason != "" {
		return announceResult{}, fmt.Errorf("tracker refused the announce: %s", tr.FailureReason)
	}
	if len(tr.Peers)%6 != 0 || len(tr.Peers6)%18 != 0 || len(tr.Upstream)%6 != 0 || len(tr.Upstream6)%18 != 0 {
		return announceResult{}, errors.New("tracker response: compact peer list of the wrong length")
	}
	// Seconds past maxTrackerInterval would overflow a Duration into a
	// negative wait or one of centuries: never announcing again.
	res := announceResult{interval: time.Duration(min(max(tr.Interval, 0), int64(maxTrackerInterval/time.Second))) * time.Second}
	res.peers = appendCompact(res.peers, tr.Peers, tr.Peers6)
	res.upstream = appendCompact(nil, tr.Upstream, tr.Upstream6)
	res.border = -1
	if tr.Border != nil && *tr.Border >= 0 && *tr.Border <= max(tr.Borders, 0) && tr.Borders <= maxBorders {
		res.border, res.borders = int(*tr.Border), int(tr.Borders)
	}
	return res, nil
}

// maxBorders bounds the shares a tracker may cut a blob's pieces into.
const maxBorders = 64

// appendCompact appends the dialable peers of compact IPv4 (6 bytes each)
// and IPv6 (18 bytes each) lists, whose lengths the caller checked.
func appendCompact(peers []netip.AddrPort, v4, v6 []byte) []netip.AddrPort {
	for b := v4; len(b) > 0; b = b[6:] {
		ip := netip.AddrFrom4([4]byte(b[:4]))
		peers = appendDialable(peers, netip.AddrPortFrom(ip, uint16(b[4])<<8|uint16(b[5])))
	}
	for b := v6; len(b) > 0; b = b[18:] {
		ip := netip.AddrFrom16([16]byte(b[:16])).Unmap()
		peers = appendDialable(peers, netip.AddrPortFrom(ip, uint16(b[16])<<8|uint16(b[17])))
	}
	return peers
}

// maxTrackerInterval caps the announce interval a tracker asks for.
const maxTrackerInterval = time.Hour

// appendDialable appends p to peers if it is an address a peer can be
// dialled at: port 0, 0.0.0.0 or :: (which Linux dials as this host) and
// multicast ones are dropped, not handed to the torrent.
func appendDialable(peers []netip.AddrPort, p netip.AddrPort) []netip.AddrPort {
	if p.Port() == 0 || p.Addr().IsUnspecified() || p.Addr().IsMulticast() {
		return peers
	}
	return append(peers, p)
}

// announceLoop announces ent to one tracker until ctx ends, then tells the
// tracker it stopped. It hands the peers it learns to the torrent.
func (e *Engine) announceLoop(ctx context.Context, a *announcer, ent *entry) {
	defer e.wg.Done()
	t := ent.torrent()
	ih := t.InfoHash()
	ev := eventStarted
	completed := ent.data.completed()
	sentCompleted := ent.data.left() == 0
	target := peerTarget{n: e.cfg.DialPeers}
	misses := 0      // answers in a row that brought no peer we lacked
	failing := false // the last announce failed (counted in ent.trackersFailing)
	defer func() {
		if failing {
			ent.trackersFailing.Add(-1)
		}
	}()
	for {
		st := t.Stats()
		res, err := a.announce(ctx, ih, ev, min(target.n, maxNumWant), st.BytesReadUsefulData.Int64(), st.BytesWrittenData.Int64(), ent.data.left())
		wait := announceRetry
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			ent.announceErr.Store(a.url + ": " + err.Error())
			a.failed(e.log, ent.dgst, err)
			if !failing {
				failing = true
				ent.trackersFailing.Add(1)
			}
			if int(ent.trackersFailing.Load()) >= len(e.announcers) && ent.data.left() > 0 && ent.releaseHeld() {
				e.log.Warn("no tracker answers; dialing the seeder", "digest", ent.dgst)
			}
		} else {
			if failing {
				failing = false
				ent.trackersFailing.Add(-1)
			}
			ent.announced.Store(true)
			ent.handedOut.Add(int64(len(res.peers)))
			if ev == eventCompleted {
				sentCompleted = true
			}
			ev = eventNone
			wait = max(res.interval, minAnnounceInterval)
			active := t.Stats().ActivePeers
			if ent.data.left() > 0 {
				e.raisePeerTarget(&target, active, time.Now())
			}
			if e.oneWay {
				e.followBorder(ctx, ent, t, res)
				active = t.Stats().ActivePeers
			}
			fresh := newPeers(t, res.peers)
			want := target.n - active
			if e.oneWay && ctx.Err() == nil && len(res.upstream) > 0 {
				// Upstream peers (a few, handed to a location's border
				// peers) are dialed whatever the peer target: they bring
				// what the location lacks, and a border peer already
				// connected to its location's members would never reach
				// them otherwise.
				e.upstream.add(ih, res.upstream)
				up := newPeers(t, res.upstream)
				addPeers(t, up)
				want -= len(up)
				fresh = slices.DeleteFunc(fresh, func(p netip.AddrPort) bool { return slices.Contains(up, p) })
			}
			addPeers(t, fresh[:min(len(fresh), max(want, 0))])
			if want > 0 && ent.data.left() > 0 {
				// Under-connected: ask again soon rather than wait out the
				// interval with too few sources.
				if len(fresh) == 0 {
					misses = min(misses+1, 16)
				} else {
					misses = 0
				}
				wait = min(wait, underConnectedInterval<<misses)
			}
		}
		if sentCompleted {
			completed = nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
		case <-timer.C:
		case <-completed:
			timer.Stop()
			ev = eventCompleted
			completed = nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	// Leave the swarm politely; the tracker expires us anyway if this fails.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st := t.Stats()
	a.announce(sctx, ih, eventStopped, 0, st.BytesReadUsefulData.Int64(), st.BytesWrittenData.Int64(), ent.data.left())
}

// followBorder does what the tracker said of this node's part in its
// location's imports (see tracker.BorderJudge). Not a border peer (any
// more: it was one while it announced before the others), it closes its
// connections to upstream peers, and the location imports through its
// border peers. A border peer takes its share of the pieces from its
// upstream peers (see shareMask); when the share changes, its upstream
// connections are opened again to take the new one.
func (e *Engine) followBorder(ctx context.Context, ent *entry, t *torrent.Torrent, res announceResult) {
	ih := t.InfoHash()
	switch {
	case res.border < 0 || ent.data.left() == 0:
	case res.border == 0:
		if !e.upstream.demote(ih) {
			// Demoted already (what it connected to since, the seeder
			// it fell back on say, stays), or never handed upstream
			// peers.
			return
		}
		// Direct transfers from them end at their next piece (see
		// errUpstreamWithdrawn).
		n := len(e.upstream.closeConns(t))
		e.log.Info("no longer a border peer of its location; leaving its upstream peers",
			"digest", ent.dgst, "connections_closed", n)
	default:
		m := shareMask{share: res.border - 1, shares: res.borders, pieces: t.NumPieces()}
		if !m.active() {
			m = shareMask{}
		}
		if e.upstream.setShare(ih, m) {
			if n := e.upstream.reconnect(ctx, t); n > 0 {
				e.log.Info("border peer's share of the pieces changed; reconnected to its upstream peers",
					"digest", ent.dgst, "share", m.share, "shares", m.shares, "reconnected", n)
			}
		}
	}
}

// underServed is the share of its download limit below which a host that
// is downloading looks for more peers.
const underServed = 0.8

// peerTarget is how many peers one download dials: Config.DialPeers at
// first, raised while the host downloads well below its download limit
// although it has all the peers it aimed for. Uploaders share their uplink
// among the peers asking them, so a node whose sources are all busy with
// many others gets less than its share; more sources even that out.
type peerTarget struct {
	n     int
	at    time.Time // start of the current measurement
	bytes int64     // the engine's received bytes at at
}

// raisePeerTarget measures the engine's download rate since the last
// measurement (of at least half a second) and raises pt by half of
// DialPeers, up to MaxPeers, when the download is under-served.
func (e *Engine) raisePeerTarget(pt *peerTarget, active int, now time.Time) {
	got := e.fromSeeders.Load() + e.fromAgents.Load()
	if pt.at.IsZero() {
		pt.at, pt.bytes = now, got
		return
	}
	dt := now.Sub(pt.at).Seconds()
	if dt < 0.5 {
		return
	}
	limit := float64(e.cfg.DownloadLimit)
	if limit > 0 && active >= pt.n && float64(got-pt.bytes)/dt < underServed*limit {
		pt.n = min(pt.n+max(1, e.cfg.DialPeers/2), e.cfg.MaxPeers)
	}
	pt.at, pt.bytes = now, got
}

// maxNumWant is the most peers one announce asks for.
const maxNumWant = 50

// newPeers is peers without those t is connected to by dialling them.
// (Peers that dialled in show their ephemeral port, not the one the tracker
// knows: a peer in both directions costs one more connection, no more.)
func newPeers(t *torrent.Torrent, peers []netip.AddrPort) []netip.AddrPort {
	have := make(map[string]bool)
	for _, c := range t.PeerConns() {
		have[c.RemoteAddr.String()] = true
	}
	var fresh []netip.AddrPort
	for _, p := range peers {
		if !have[p.String()] {
			fresh = append(fresh, p)
		}
	}
	return fresh
}

func addPeers(t *torrent.Torrent, peers []netip.AddrPort) {
	if len(peers) == 0 {
		return
	}
	pis := make([]torrent.PeerInfo, 0, len(peers))
	for _, p := range peers {
		pis = append(pis, torrent.PeerInfo{
			Addr:   torrent.PeerRemoteAddr(net.TCPAddrFromAddrPort(p)),
			Source: torrent.PeerSourceTracker,
			// Not trusted: a peer from the tracker that sends bad pieces
			// must be bannable like any other.
		})
	}
	t.AddPeers(pis)
}
