package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	tstorage "github.com/anacrolix/torrent/storage"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/tracker"
)

// Role says which kind of peer an Engine is. Other peers see it in the peer
// ID prefix, so that they can account received bytes by source.
type Role int

const (
	// RoleAgent is a node that fetches blobs for its runtime.
	RoleAgent Role = iota
	// RoleSeeder is a seeder that seeds blobs it fetched from origin.
	RoleSeeder
)

// Peer ID prefixes (Azureus style). The version digits follow the module's
// wire behaviour, not its release number.
const (
	agentPeerIDPrefix  = "-EA0100-"
	seederPeerIDPrefix = "-ES0100-"
)

// isSeederID reports whether a peer ID (or a handshake's 20 bytes of it)
// names an Eagle seeder.
func isSeederID(id []byte) bool { return strings.HasPrefix(string(id), seederPeerIDPrefix) }

// Peer connection defaults (see Config). A node talks to a few dozen peers
// at most, like Kraken's 10 per torrent rather than BitTorrent's usual 50 to
// 80: on a LAN a few sources fill a node's link, and every connection costs
// Have messages and scheduling for each piece. Measured in BENCHMARKS.md.
const (
	DefaultDialPeers = 8
	DefaultMaxPeers  = 24
)

// Config configures an Engine.
type Config struct {
	// ListenAddr is the peer-wire listen address (host:port). Default ":6881".
	ListenAddr string `yaml:"listen_addr"`
	// DataDir holds partial downloads and the metainfo of seeded blobs.
	// Required.
	DataDir string `yaml:"data_dir"`
	// Trackers are the tracker announce URLs. At least one is required.
	Trackers []string `yaml:"trackers"`
	// UploadLimit caps the piece data this host sends to all peers, over
	// all torrents together ("50MiB/s", "400Mbit/s"); on a seeder, what it
	// sends (piece data and the few messages around it), each connection
	// served in turn. Default 0: unlimited.
	UploadLimit Rate `yaml:"upload_limit"`
	// DownloadLimit caps the piece data this host receives from all peers,
	// over all torrents together. Default 0: unlimited.
	DownloadLimit Rate `yaml:"download_limit"`
	// DialPeers is how many peers of one blob the engine connects to
	// itself, from the tracker's answers; more connect to it. Default 8.
	DialPeers int `yaml:"dial_peers"`
	// MaxPeers caps the peer connections of one blob, both ways. It should
	// leave room above DialPeers for peers that arrive later to connect.
	// Default 24.
	MaxPeers int `yaml:"max_peers"`
	// Role is the kind of peer. Default RoleAgent.
	Role Role `yaml:"-"`
	// Authorizer is asked, before Fetch or Stat hands out anything about
	// a blob (from the store or the swarm), whether the caller's
	// credentials in the blob.Ref may read it. Required unless
	// SkipAuthorization is set. Share it with the proxy in front of the
	// engine, so that a read is checked at the origin once.
	Authorizer Authorizer `yaml:"-"`
	// TLS is the cluster membership on the peer wire and the tracker
	// announces: mutual TLS with certificates from the cluster CA, so that
	// only members can fetch pieces from this engine or learn its swarms.
	// Either the three files or an explicit TLS.Insecure (plaintext,
	// logged as a warning). With TLS on, tracker URLs must be https.
	TLS mtls.Config `yaml:"-"`
	// SkipAuthorization makes Fetch and Stat serve every caller without
	// asking an Authorizer: only for engines whose reads nobody outside
	// the process can cause (a seeder's), or a node every client of which
	// may read every blob.
	SkipAuthorization bool `yaml:"-"`
	// DisableDirect turns direct transfers off: the engine neither takes
	// nor serves whole runs of pieces over HTTP on its peer port (see
	// direct.go) and moves every byte over the BitTorrent peer wire.
	// Default false: on.
	DisableDirect bool `yaml:"disable_direct"`
	// Location is where this host sits, as a hierarchical label such as
	// "region/zone/rack" (1 to 8 segments of letters, digits, '.', '_'
	// and '-', separated by '/'). The engine announces it to the
	// trackers, whose "topology" policy hands out near peers first. With
	// a location set the engine also takes its peers from the trackers
	// only: the seeder's own address, which its answer names, is held
	// back until the trackers fail or the download stalls, so that a
	// remote seeder does not serve every node of a datacenter; and the
	// peers a tracker names "upstream" (other locations' peers handed to
	// this host's location as sources, see tracker.UpstreamMarker) are
	// dialed whatever the peer target and kept choked, so that pieces
	// cross a border one way only (oneway.go). When a tracker says the
	// host is not one of its location's border peers it closes those
	// connections; when it says the host is one, with a share of the
	// pieces (tracker.BorderJudge), the host takes only that share from
	// them, until its download stalls. Default empty: unknown (the
	// tracker may map the host's address to one).
	Location string `yaml:"location"`
	// DisableCutThrough makes the engine wait for a cold blob's whole
	// origin fetch at the seeder before it downloads a byte, instead of
	// taking the bytes as the seeder receives them (see StreamSource).
	// Default false: a MetaInfoSource that is a StreamSource streams.
	DisableCutThrough bool `yaml:"disable_cut_through"`
	// Logger receives the engine's logs. Nil discards them.
	Logger *slog.Logger `yaml:"-"`
	// Metrics is where the Engine registers its Prometheus metrics
	// (eagle_p2p_*); Close unregisters them. Nil: no metrics.
	Metrics prometheus.Registerer `yaml:"-"`
}

// ErrInvalidConfig reports a Config that Validate rejected; New's errors
// about its Config wrap it.
var ErrInvalidConfig = errors.New("p2p: invalid config")

// WithDefaults returns a copy of c with every zero field that has a
// default set to it: ListenAddr ":6881", DialPeers, MaxPeers and a Logger
// that discards. New applies it.
func (c Config) WithDefaults() Config {
	if c.ListenAddr == "" {
		c.ListenAddr = ":6881"
	}
	if c.DialPeers == 0 {
		c.DialPeers = DefaultDialPeers
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first problem of c, defaults applied, naming its
// key, in an error wrapping ErrInvalidConfig. It changes nothing.
func (c Config) Validate() error {
	if err := c.WithDefaults().validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c Config) validate() error {
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("listen_addr %q: %w", c.ListenAddr, err)
	}
	if c.DataDir == "" {
		return errors.New("data_dir is required")
	}
	if c.DialPeers < 1 || c.MaxPeers < c.DialPeers {
		return fmt.Errorf("dial_peers (%d) must be at least 1 and max_peers (%d) at least dial_peers", c.DialPeers, c.MaxPeers)
	}
	if c.UploadLimit < 0 || c.DownloadLimit < 0 {
		return errors.New("upload_limit and download_limit must not be negative")
	}
	if len(c.Trackers) == 0 {
		return errors.New("trackers: at least one announce URL is required")
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if c.Location != "" {
		if err := tracker.ValidLocation(c.Location); err != nil {
			return fmt.Errorf("location: %w", err)
		}
	}
	for _, t := range c.Trackers {
		if !strings.HasPrefix(t, "http://") && !strings.HasPrefix(t, "https://") {
			return fmt.Errorf("trackers: %q is not an http(s) announce URL", t)
		}
		if !c.TLS.Insecure && strings.HasPrefix(t, "http://") {
			return fmt.Errorf("trackers: %q is plain http, but tls is on: trackers accept cluster members over https", t)
		}
	}
	return nil
}

// Authorizer decides whether a client may read a blob; *auth.Authorizer
// implements it.
type Authorizer interface {
	// Authorize returns nil when ref.Authorization may read the blob, a
	// *blob.OriginError with the origin's refusal, or another error when
	// it cannot tell.
	Authorize(ctx context.Context, ref blob.Ref) error
}

// Stats counts the piece data an Engine moved, by the kind of peer.
type Stats struct {
	// BytesFromSeeders is useful piece data received from seeders.
	BytesFromSeeders int64
	// BytesFromAgents is useful piece data received from other agents.
	BytesFromAgents int64
	// BytesFromOrigin is blob data this node fetched from origins itself
	// (FetchOrigin: the registry endpoint's fallback).
	BytesFromOrigin int64
	// BytesUploaded is piece data sent to other peers.
	BytesUploaded int64
	// Peers is the number of peer connections open now, over all blobs.
	Peers int
	// BannedPeers is the number of peer addresses banned for sending
	// pieces that failed their hash.
	BannedPeers int
	// BytesDirect is the part of BytesFromSeeders and BytesFromAgents
	// that came by direct transfers rather than the peer wire.
	BytesDirect int64
	// BytesStreamed is the part of BytesFromSeeders that seeders streamed
	// as they fetched the blob from its origin (see StreamSource).
	BytesStreamed int64
	// BytesRelayed is the part of BytesFromAgents that nodes relayed as
	// they were streamed it (see StreamHeader.Source).
	BytesRelayed int64
	// BytesFromUpstream is the part of BytesFromSeeders and BytesFromAgents
	// received from upstream peers (other locations'
	// peers that a tracker's topology policy named, see Config.Location):
	// what this node imported across its location's border.
	BytesFromUpstream int64
	// BytesWasted is piece data received over the peer wire that was not
	// needed: chunks this node already had (asked of two peers at once, or
	// arriving after their piece was verified). Not in the counters above.
	BytesWasted int64
	// PeersSeededPlainly counts the peer connections a super-seeding
	// seeder stopped super-seeding because, for a while after they
	// opened, they got pieces from it only while other peers held pieces
	// they lacked: peers that cannot reach, or did not learn of, the
	// others. Always 0 on an agent.
	PeersSeededPlainly int64
}

// Engine is one peer. Create it with New and stop it with Close.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	store storage.Store
	// cache is store when it evicts to stay within a size limit, else nil.
	cache storage.Cache
	src   MetaInfoSource
	cl    *torrent.Client
	// creds are the cluster credentials of the peer wire and the tracker
	// client; nil without mutual TLS.
	creds *mtls.Credentials
	// listener is the peer-wire listener the engine owns (see bindSockets).
	listener net.Listener
	// mux sorts the connections on listener into the peer wire and direct
	// transfers; nil when anacrolix owns the sockets.
	mux *peerMux
	// direct fetches pieces from peers' direct transfer servers; nil when
	// the engine does not own its sockets (runDownload does not use it
	// when direct transfers are off).
	direct *directClient
	// directSrv serves direct transfers from mux.direct.
	directSrv *directServer
	// agentUpload is an agent's upload limiter, shared by anacrolix and
	// the direct transfer server; nil when unlimited or on a seeder.
	agentUpload *rate.Limiter
	// upLimit and downLimit pace this host's uploads and downloads (nil:
	// unlimited); a seeder's streams and a streamed download share them.
	upLimit, downLimit *rate.Limiter
	// stream is src when it streams cold blobs and cut-through is on.
	stream StreamSource
	// announcers talk to the trackers, one each.
	announcers []*announcer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// seedMu serializes Seed, so that moving a blob to new metainfo (and
	// its kept file) does not race another Seed of the same blob.
	seedMu sync.Mutex
	mu     sync.Mutex
	blobs  map[digest.Digest]*entry
	// metaCache keeps metainfo that Stat fetched so that the Fetch which
	// usually follows a HEAD does not ask the seeder again.
	metaCache *lru.Cache[digest.Digest, seederAnswer]

	fromSeeders, fromAgents atomic.Int64
	fromUpstream            atomic.Int64
	// directDownloaded and directUploaded count piece data moved by
	// direct transfers.
	directDownloaded, directUploaded atomic.Int64
	// streamed counts blob bytes a seeder streamed (see StreamSource),
	// relayed those a node relayed (see relay.go).
	streamed, relayed atomic.Int64
	// fromOrigin counts the bytes fetched from origins (FetchOrigin).
	fromOrigin atomic.Int64
	metrics    *engineMetrics
	// super is the super-seeding state of the swarms the node
	// super-seeds: on a seeder every blob it seeds, on an agent those it
	// was streamed whole (see streamDownload). It wraps the connections
	// of an engine that owns its sockets.
	super *superSeeder
	// oneWay is set on an agent with a Location that owns its sockets:
	// it keeps the upstream peers trackers name choked (see oneway.go).
	oneWay   bool
	upstream upstreams
}

// entry is a blob the engine's torrent client knows: seeding or downloading.
type entry struct {
	dgst digest.Digest
	// t is the blob's torrent. A download streamed from its seeder
	// (cut-through, see stream.go) has none until the stream ends; every
	// other entry has it from ready on.
	t    atomic.Pointer[torrent.Torrent]
	data *blobData
	size int64
	// ready is closed once data is set (and t, unless the download is
	// streamed), or err is.
	ready chan struct{}
	err   error
	// done is closed when the download ended: committed, or doneErr.
	done    chan struct{}
	doneErr error
	// stopAnnouncing ends the entry's announce loops.
	stopAnnouncing context.CancelFunc
	// announced records whether a tracker answered for the entry, the
	// last announce error and how many peers the trackers handed out, so
	// that a stalled read can say why.
	announced   atomic.Bool
	announceErr atomic.Value // string
	handedOut   atomic.Int64
	// seederAddr is the seeder whose answer the download follows, when
	// the metainfo source names it (a string).
	seederAddr atomic.Value
	// relayKeys, guarded by Engine.mu, are what a streamed download is
	// relayed under (see relay.go).
	relayKeys [][]byte
	// held are the seeder's peer addresses a host with a Location keeps
	// back (see Config.Location), until releaseHeld; trackersFailing
	// counts the announce loops whose last announce failed.
	heldMu          sync.Mutex
	held            []netip.AddrPort
	trackersFailing atomic.Int32
	// lost are the seeders whose loss the download already acted on (see
	// Engine.waitPiece). Only the download's own goroutine, which waits
	// for its pieces, touches it.
	lost map[string]bool
}

// hold keeps peers back instead of dialing them (see Config.Location).
func (ent *entry) hold(peers []netip.AddrPort) {
	ent.heldMu.Lock()
	defer ent.heldMu.Unlock()
	ent.held = append(ent.held, peers...)
}

// releaseHeld hands the held-back peers to the torrent, once; it reports
// whether there were any.
func (ent *entry) releaseHeld() bool {
	ent.heldMu.Lock()
	peers := ent.held
	ent.held = nil
	ent.heldMu.Unlock()
	t := ent.torrent()
	if len(peers) == 0 || t == nil {
		return false
	}
	addPeers(t, peers)
	return true
}

// torrent returns the entry's torrent, nil while a streamed download has
// none yet.
func (ent *entry) torrent() *torrent.Torrent { return ent.t.Load() }

func (ent *entry) seeder() string {
	s, _ := ent.seederAddr.Load().(string)
	return s
}

func (ent *entry) setSeeder(addr string) { ent.seederAddr.Store(addr) }

// stallReason says why ent's download has no byte for a reader: what the
// trackers and the torrent show now.
func (ent *entry) stallReason() string {
	var ts torrent.TorrentStats
	if t := ent.torrent(); t != nil {
		ts = t.Stats()
	}
	switch peers := ts.ActivePeers; {
	case peers > 0:
		// What the connections show, so that a stall says whether nobody
		// offered a piece, or pieces were offered and nothing came.
		offering, chunks, wasted := 0, int64(0), int64(0)
		for _, pc := range ent.torrent().PeerConns() {
			st := pc.Stats()
			if st.RemotePieceCount > 0 {
				offering++
			}
			chunks += st.ChunksReadUseful.Int64()
			wasted += st.ChunksReadWasted.Int64()
		}
		// "Verified" counts every piece, not only the one the reader
		// waits on: a swarm can hold most of a blob but its first piece.
		return fmt.Sprintf("%d peers connected, %d offering pieces, %d useful and %d wasted chunks received, %d of %d pieces verified",
			peers, offering, chunks, wasted, ts.PiecesComplete, ent.torrent().NumPieces())
	case !ent.announced.Load():
		reason, _ := ent.announceErr.Load().(string)
		if reason == "" {
			reason = "no answer yet"
		}
		return "no tracker answered: " + reason
	case ent.handedOut.Load() == 0:
		return "no peers: the trackers know nobody else holding the blob"
	default:
		return fmt.Sprintf("no peer connected of the %d the trackers handed out", ent.handedOut.Load())
	}
}

// seedsOther reports whether ent is a committed blob seeded under another
// infohash than ih.
func (ent *entry) seedsOther(ih metainfo.Hash) bool {
	return ent.seeds() && ent.torrent().InfoHash() != ih
}

// seeds reports whether ent is a committed blob, seeded.
func (ent *entry) seeds() bool {
	select {
	case <-ent.ready:
	default:
		return false
	}
	select {
	case <-ent.done:
	default:
		return false
	}
	return ent.err == nil && ent.doneErr == nil && ent.torrent() != nil
}

// New starts an Engine that keeps blobs in store and asks src for metainfo.
// src may be nil for a seeder, which seeds only what it is given.
func New(cfg Config, store storage.Store, src MetaInfoSource) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if cfg.Authorizer == nil && !cfg.SkipAuthorization {
		return nil, fmt.Errorf("%w: an Authorizer is required (or SkipAuthorization, to serve every caller)", ErrInvalidConfig)
	}
	for _, dir := range []string{partialDir(cfg.DataDir), metaInfoDir(cfg.DataDir)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("p2p: %w", err)
		}
	}
	// Partial downloads from a previous run are not trusted: their piece
	// completion was kept in memory only. Start them again.
	if err := clearDir(partialDir(cfg.DataDir)); err != nil {
		return nil, fmt.Errorf("p2p: clear partial downloads: %w", err)
	}
	cfg.Trackers = announceURLs(cfg.Trackers, cfg.Logger)
	if cfg.TLS.Logger == nil {
		cfg.TLS.Logger = cfg.Logger
	}
	creds, err := mtls.Load(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("p2p: %w", err)
	}
	metaCache, _ := lru.New[digest.Digest, seederAnswer](1024)
	e := &Engine{
		creds:     creds,
		cfg:       cfg,
		log:       cfg.Logger.With("component", "p2p"),
		store:     store,
		src:       src,
		blobs:     make(map[digest.Digest]*entry),
		metaCache: metaCache,
	}
	if ss, ok := src.(StreamSource); ok && !cfg.DisableCutThrough {
		e.stream = ss
	}
	if c, ok := store.(storage.Cache); ok {
		e.cache = c
		c.OnEvict(e.evicted)
	}
	// Every node can super-seed: a seeder every blob it seeds, an agent
	// a blob it was streamed whole while the others start (see
	// streamDownload).
	e.super = newSuperSeeder()
	e.super.log = e.log
	cl, err := torrent.NewClient(e.clientConfig())
	if err != nil {
		return nil, fmt.Errorf("p2p: start torrent client: %w", listenError(cfg.ListenAddr, err))
	}
	e.cl = cl
	if err := e.bindSockets(); err != nil {
		cl.Close()
		return nil, err
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if e.mux != nil {
		e.directSrv = newDirectServer(e, e.mux.direct)
	}
	e.announcers = e.newAnnouncers()
	if err := e.reseed(); err != nil {
		e.Close()
		return nil, err
	}
	if e.metrics, err = newEngineMetrics(cfg.Metrics, e); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Engine) clientConfig() *torrent.ClientConfig {
	cc := torrent.NewDefaultClientConfig()
	host, port, _ := net.SplitHostPort(e.cfg.ListenAddr)
	cc.SetListenAddr(net.JoinHostPort(host, port))
	if e.ownsSockets() {
		// The engine brings its own listener and dialer (see bindSockets).
		cc.DisableTCP = true
	}
	cc.Seed = true
	cc.EstablishedConnsPerTorrent = e.cfg.MaxPeers
	// No budget of unverified bytes. anacrolix walks a torrent's wanted
	// pieces rarest first, pieces no peer has included, and stops once they
	// add up to 64 MiB. A super-seeder shows each agent only a few pieces,
	// so those sort after every piece nobody offers: in a blob over 64 MiB
	// (pieces over 64 KiB) the agent was interested in nothing it was
	// offered, and the pull hung. Pieces go to disk as they arrive, so the
	// budget saved no memory here.
	cc.MaxUnverifiedBytes = 0
	// anacrolix paces dials at 10/s by sleeping in a goroutine that Close
	// does not wait for. Peers come from our tracker, 50 at most per
	// announce, and the half-open limits already bound a dial burst.
	cc.DialRateLimiter = rate.NewLimiter(rate.Inf, 0)
	// A seeder's upload limit, and every download limit, are applied on
	// the engine's own sockets (see limitedConn and
	// bindSockets). An agent's upload limit stays with anacrolix, which
	// paces piece data only: pacing its sockets would queue the agent's
	// own requests behind the pieces it uploads (in-process N = 64 went
	// from 1.19-1.23 to 1.43-1.46 times the floor).
	if l := e.cfg.UploadLimit.Limiter(); l != nil && e.cfg.Role != RoleSeeder {
		cc.UploadRateLimiter = l
		e.agentUpload = l
		e.upLimit = l
	}
	// Every torrent brings its own storage (a blobData). Without this the
	// client would open a file store and a piece-completion database in the
	// working directory.
	cc.DefaultStorage = noDefaultStorage{}
	cc.DataDir = e.cfg.DataDir
	cc.NoDHT = true
	cc.PeriodicallyAnnounceTorrentsToDht = false
	// Peers come from the tracker only: its handout policy decides who talks
	// to whom, so peer exchange would undo topology awareness.
	cc.DisablePEX = true
	cc.DisableUTP = true
	cc.DisableWebtorrent = true
	cc.DisableWebseeds = true
	cc.NoDefaultPortForwarding = true
	cc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{}
	cc.Slogger = e.log.With("component", "torrent")
	prefix := agentPeerIDPrefix
	if e.cfg.Role == RoleSeeder {
		prefix = seederPeerIDPrefix
	}
	cc.PeerID = newPeerID(prefix)
	cc.Callbacks.PeerConnAdded = append(cc.Callbacks.PeerConnAdded, advertiseNudge)
	cc.Callbacks.ReceivedUsefulData = append(cc.Callbacks.ReceivedUsefulData, func(ev torrent.ReceivedUsefulDataEvent) {
		n := int64(len(ev.Message.Piece))
		pc, ok := ev.Peer.TryAsPeerConn()
		if ok && isSeederID(pc.PeerID[:]) {
			e.fromSeeders.Add(n)
		} else {
			e.fromAgents.Add(n)
		}
		if ok && e.oneWay {
			if ap, err := netip.ParseAddrPort(pc.RemoteAddr.String()); err == nil && e.upstream.is(ev.Peer.Torrent().InfoHash(), ap.Addr().Unmap()) {
				e.fromUpstream.Add(n)
			}
		}
	})
	return cc
}

// boundIP is the listen address's IP when it names one (not a wildcard).
func (e *Engine) boundIP() net.IP {
	host, _, _ := net.SplitHostPort(e.cfg.ListenAddr)
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return nil
	}
	return ip
}

// ownsSockets reports whether the engine brings its own peer-wire listener
// and dialer instead of anacrolix's: when it listens on one IP, is a seeder
// (which wraps its connections to super-seed and paces their writes), has
// a download limit (paced on its sockets) or speaks mutual TLS.
func (e *Engine) ownsSockets() bool {
	return e.boundIP() != nil || e.cfg.Role == RoleSeeder || e.cfg.DownloadLimit > 0 || e.creds != nil
}

// bindSockets gives the engine its own listener and dialer when
// ownsSockets. One that listens on one IP dials from that IP too:
// anacrolix dials from an unbound socket, so on a host with several
// addresses its peers would see connections from another address than the
// one the tracker hands out, and banning one bad peer by IP would ban its
// neighbours too. Reads are paced by the download limit, and a seeder's
// connections are wrapped to super-seed.
func (e *Engine) bindSockets() error {
	if !e.ownsSockets() {
		return nil
	}
	network := "tcp"
	d := &net.Dialer{Timeout: 20 * time.Second}
	if ip := e.boundIP(); ip != nil {
		network = "tcp4"
		if ip.To4() == nil {
			network = "tcp6"
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	lis, err := net.Listen(network, e.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("p2p: %w", listenError(e.cfg.ListenAddr, err))
	}
	e.listener = lis
	dl := e.cfg.DownloadLimit.Limiter()
	var ul *rate.Limiter // a seeder's upload limit (see clientConfig)
	if e.cfg.Role == RoleSeeder {
		ul = e.cfg.UploadLimit.Limiter()
		e.upLimit = ul
	}
	e.downLimit = dl
	e.oneWay = e.cfg.Role != RoleSeeder && e.cfg.Location != ""
	wrap := func(c net.Conn) net.Conn {
		c = limitConn(e.super.wrap(c), dl, ul)
		if e.oneWay {
			c = e.upstream.wrap(c)
		}
		return c
	}
	e.mux = newPeerMux(lis, e.creds, wrap, func(c net.Conn) net.Conn { return limitConn(c, dl, ul) })
	e.cl.AddListener(e.mux.wire)
	e.cl.AddDialer(wrappingDialer{Dialer: torrent.NetworkDialer{Network: network, Dialer: d}, creds: e.creds, wrap: wrap})
	e.direct = newDirectClient(e, d, dl)
	return nil
}

// announceURLs completes tracker URLs given without a path ("https://t:7080"
// or ".../") with /announce, the tracker's announce path, and says so.
func announceURLs(urls []string, log *slog.Logger) []string {
	out := make([]string, len(urls))
	for i, raw := range urls {
		out[i] = raw
		if u, err := url.Parse(raw); err == nil && (u.Path == "" || u.Path == "/") {
			u.Path = "/announce"
			out[i] = u.String()
			log.Warn("p2p.trackers: a tracker URL without a path; announcing to /announce", "given", raw, "using", out[i])
		}
	}
	return out
}

// ErrAddrInUse reports a peer-wire listen address another process holds.
var ErrAddrInUse = errors.New("p2p: listen_addr is in use")

// listenError names the listen_addr key in a listen failure, and says
// what to do when another process (a second agent or seeder on the host)
// holds the port.
func listenError(addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w: %q (another Eagle part on this host? give each its own p2p.listen_addr): %w", ErrAddrInUse, addr, err)
	}
	return fmt.Errorf("listen_addr %q: %w", addr, err)
}

// noDefaultStorage refuses torrents added without their own storage.
type noDefaultStorage struct{}

func (noDefaultStorage) OpenTorrent(context.Context, *metainfo.Info, metainfo.Hash) (tstorage.TorrentImpl, error) {
	return tstorage.TorrentImpl{}, errors.New("p2p: torrent added without its own storage")
}

func newPeerID(prefix string) string {
	b := make([]byte, 20-len(prefix))
	rand.Read(b)
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}

func partialDir(dataDir string) string  { return filepath.Join(dataDir, "partial") }
func metaInfoDir(dataDir string) string { return filepath.Join(dataDir, "metainfo") }

func clearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range ents {
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return err
		}
	}
	return nil
}

// reseed starts seeding every stored blob whose metainfo was kept.
func (e *Engine) reseed() error {
	ents, err := os.ReadDir(metaInfoDir(e.cfg.DataDir))
	if err != nil {
		return fmt.Errorf("p2p: %w", err)
	}
	for _, de := range ents {
		hex, ok := strings.CutSuffix(de.Name(), ".torrent")
		if !ok {
			continue
		}
		dgst := keptDigest(hex)
		path := filepath.Join(metaInfoDir(e.cfg.DataDir), de.Name())
		b, err := os.ReadFile(path)
		if err == nil {
			err = e.Seed(e.ctx, dgst, b)
		}
		if err != nil {
			e.log.Warn("dropping kept metainfo", "digest", dgst, "err", err)
			os.Remove(path)
		}
	}
	return nil
}

// keptDigest is the digest a kept metainfo file is named after: the file
// name is the digest's hex, whose length tells the algorithm (sha256 and
// sha512, the two the stores accept, have 64 and 128 hex digits).
func keptDigest(hex string) digest.Digest {
	if len(hex) == digest.SHA512.Size()*2 {
		return digest.NewDigestFromEncoded(digest.SHA512, hex)
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hex)
}

// Seed starts seeding a blob that is already committed in the store, with
// the metainfo built for it, and announces it to the trackers. A blob
// already seeded under other metainfo (kept from an Eagle version that cut
// it into longer pieces) moves to this one: whoever hands this metainfo out
// expects this node in its swarm.
func (e *Engine) Seed(ctx context.Context, dgst digest.Digest, metaInfo []byte) error {
	mi, info, err := ParseMetaInfo(dgst, metaInfo)
	if err != nil {
		return err
	}
	e.seedMu.Lock()
	defer e.seedMu.Unlock()
	for {
		e.mu.Lock()
		if e.ctx.Err() != nil {
			e.mu.Unlock()
			return fmt.Errorf("p2p: seed %s: engine closed", dgst)
		}
		old, ok := e.blobs[dgst]
		if !ok {
			break // with e.mu held
		}
		e.mu.Unlock()
		if !old.seedsOther(mi.HashInfoBytes()) {
			// Already seeding it, or downloading (and then seeding) it.
			return nil
		}
		e.log.Info("seeding under new metainfo", "digest", dgst, "old", old.torrent().InfoHash().HexString(), "new", mi.HashInfoBytes().HexString())
		e.forget(dgst, old)
	}
	blob, err := e.store.Open(ctx, dgst)
	if err != nil {
		e.mu.Unlock()
		return fmt.Errorf("p2p: seed %s: %w", dgst, err)
	}
	if blob.Size() != info.Length {
		e.mu.Unlock()
		blob.Close()
		return fmt.Errorf("%w: %s is %d bytes, metainfo says %d", ErrBadMetaInfo, dgst, blob.Size(), info.Length)
	}
	ent := &entry{dgst: dgst, size: info.Length, ready: make(chan struct{}), done: make(chan struct{})}
	ent.data = newCommittedData(&info, blob)
	close(ent.done)
	e.blobs[dgst] = ent
	e.mu.Unlock()
	if e.cfg.Role == RoleSeeder {
		e.super.add(mi.HashInfoBytes(), info.NumPieces())
	}
	t, err := e.addTorrent(mi, ent.data, false)
	if err != nil {
		e.super.remove(mi.HashInfoBytes())
		e.remove(ent, err)
		return err
	}
	ent.t.Store(t)
	e.startAnnouncing(ent)
	close(ent.ready)
	e.keepMetaInfo(dgst, metaInfo)
	return nil
}

// addTorrent adds mi's torrent over data. With hold, it wants no piece
// until DownloadAll (or a reader) asks for them.
func (e *Engine) addTorrent(mi *metainfo.MetaInfo, data *blobData, hold bool) (*torrent.Torrent, error) {
	t, isNew := e.cl.AddTorrentOpt(torrent.AddTorrentOpts{
		InfoHash:  mi.HashInfoBytes(),
		InfoBytes: mi.InfoBytes,
		Storage:   data,
		ChunkSize: wireChunkSize,
	})
	if !isNew {
		// Another entry's torrent, still being dropped: its storage is not data.
		return nil, fmt.Errorf("p2p: torrent %s is still registered", mi.HashInfoBytes().HexString())
	}
	if t.Info() == nil {
		t.Drop()
		return nil, fmt.Errorf("%w: torrent client did not accept the info", ErrBadMetaInfo)
	}
	if !hold {
		t.DownloadAll()
	}
	return t, nil
}

func (e *Engine) newAnnouncers() []*announcer {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if ip := e.boundIP(); ip != nil {
		// Announce from the address peers must dial, so that the tracker
		// (which records the announce's source address) hands out that one
		// on a host with several.
		dialer.LocalAddr = &net.TCPAddr{IP: ip}
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     e.creds.ClientConfig(),
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}}
	port := 0
	if a, ok := e.Addr().(*net.TCPAddr); ok {
		port = a.Port
	}
	var as []*announcer
	for _, u := range e.cfg.Trackers {
		as = append(as, &announcer{url: u, client: client, peerID: e.cl.PeerID(), port: port, location: e.cfg.Location})
	}
	return as
}

// startAnnouncing starts ent's announce loops; remove stops them.
func (e *Engine) startAnnouncing(ent *entry) {
	ctx, cancel := context.WithCancel(e.ctx)
	ent.stopAnnouncing = cancel
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx.Err() != nil {
		return // closed: Close waits for no new loops
	}
	for _, a := range e.announcers {
		e.wg.Add(1)
		go e.announceLoop(ctx, a, ent)
	}
}

// remove forgets ent, leaving its swarm, after a failure.
func (e *Engine) remove(ent *entry, err error) {
	// Leave the swarm before the entry goes from the map: a Fetch that
	// starts the blob again must not find the old torrent still registered.
	if ent.stopAnnouncing != nil {
		ent.stopAnnouncing()
	}
	e.drop(ent)
	e.mu.Lock()
	if e.blobs[ent.dgst] == ent {
		delete(e.blobs, ent.dgst)
	}
	e.mu.Unlock()
	if ent.data != nil {
		ent.data.fail(err)
	}
	select {
	case <-ent.ready:
	default:
		ent.err = err
		close(ent.ready)
	}
}

func (e *Engine) keepMetaInfo(dgst digest.Digest, metaInfo []byte) {
	path := filepath.Join(metaInfoDir(e.cfg.DataDir), dgst.Encoded()+".torrent")
	if _, err := os.Stat(path); err == nil {
		return
	}
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, metaInfo, 0o644)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		e.log.Warn("could not keep metainfo; the blob will not be seeded after a restart", "digest", dgst, "err", err)
	}
}

// evicted leaves the swarm of a blob the cache is about to delete: the
// torrent is dropped, the trackers are told, the kept metainfo removed.
func (e *Engine) evicted(dgst digest.Digest) {
	e.mu.Lock()
	ent := e.blobs[dgst]
	e.mu.Unlock()
	e.log.Debug("evicted", "digest", dgst)
	e.forget(dgst, ent)
}

// forget leaves the swarm of a blob that is gone (or going) from the store:
// the torrent is dropped, the trackers are told, the kept metainfo removed.
func (e *Engine) forget(dgst digest.Digest, ent *entry) {
	e.metaCache.Remove(dgst)
	os.Remove(filepath.Join(metaInfoDir(e.cfg.DataDir), dgst.Encoded()+".torrent"))
	if ent == nil {
		return
	}
	if ent.stopAnnouncing != nil {
		ent.stopAnnouncing()
	}
	e.drop(ent)
	e.mu.Lock()
	if e.blobs[dgst] == ent {
		delete(e.blobs, dgst)
	}
	e.mu.Unlock()
	if ent.data != nil {
		ent.data.close()
	}
}

// drop drops ent's torrent, if it has one.
func (e *Engine) drop(ent *entry) {
	if ent.torrent() == nil {
		return
	}
	e.super.remove(ent.torrent().InfoHash())
	e.upstream.forget(ent.torrent().InfoHash())
	ent.torrent().Drop()
}

// pin keeps dgst in the cache while it is being read.
func (e *Engine) pin(dgst digest.Digest) (unpin func()) {
	if e.cache == nil {
		return func() {}
	}
	return e.cache.Pin(dgst)
}

// Addr is the address the engine accepts peer connections on.
func (e *Engine) Addr() net.Addr {
	addrs := e.cl.ListenAddrs()
	if len(addrs) == 0 {
		return nil
	}
	return addrs[0]
}

// UploadLimiter returns the limiter that paces this host's uploads
// (Config.UploadLimit), nil when they are unlimited. A seeder's metainfo
// service paces the blobs it streams with it, so that they share the
// host's cap with the peer wire.
func (e *Engine) UploadLimiter() *rate.Limiter { return e.upLimit }

// Stats returns byte counters since the engine started.
func (e *Engine) Stats() Stats {
	s := Stats{BytesFromSeeders: e.fromSeeders.Load(), BytesFromAgents: e.fromAgents.Load(), BytesFromOrigin: e.fromOrigin.Load()}
	cs := e.cl.Stats().ConnStats
	s.BytesUploaded = cs.BytesWrittenData.Int64() + e.directUploaded.Load()
	s.BytesFromUpstream = e.fromUpstream.Load()
	s.BytesWasted = max(cs.BytesReadData.Int64()-cs.BytesReadUsefulData.Int64(), 0)
	s.BytesDirect = e.directDownloaded.Load()
	s.BytesStreamed = e.streamed.Load()
	s.BytesRelayed = e.relayed.Load()
	s.PeersSeededPlainly = e.super.opened.Load()
	for _, t := range e.cl.Torrents() {
		s.Peers += t.Stats().ActivePeers
	}
	// anacrolix may hold an address in its 4- and its 16-byte form.
	banned := map[netip.Addr]bool{}
	for _, ip := range e.cl.BadPeerIPs() {
		if a, err := netip.ParseAddr(ip); err == nil {
			banned[a.Unmap()] = true
		}
	}
	s.BannedPeers = len(banned)
	return s
}

// Close stops the engine: it cancels downloads, leaves every swarm, and
// waits for its goroutines.
func (e *Engine) Close() error {
	e.metrics.unregister()
	// Cancel under mu, so that no Fetch or Seed starts a goroutine once
	// Wait has begun.
	e.mu.Lock()
	e.cancel()
	e.mu.Unlock()
	e.wg.Wait()
	errs := e.cl.Close()
	e.super.close()
	if e.directSrv != nil {
		e.directSrv.close()
	}
	if e.direct != nil {
		e.direct.http.CloseIdleConnections()
	}
	if e.mux != nil {
		e.mux.Close()
	}
	if e.listener != nil {
		e.listener.Close()
	}
	e.mu.Lock()
	ents := e.blobs
	e.blobs = map[digest.Digest]*entry{}
	e.mu.Unlock()
	for _, ent := range ents {
		if ent.data != nil {
			errs = append(errs, ent.data.close())
		}
	}
	return errors.Join(errs...)
}

// wireChunkSize is the size of the requests a node makes on the peer wire:
// anacrolix's default, 16 KiB. Each request costs a message each way, a
// storage write and a round of request decisions. 64 KiB requests (a whole
// 64 KiB piece each) took CPU-bound swarms of 16 and 32 agent processes on
// two cores from 1.66 and 3.96 times the floor to 1.33 and 2.96 (`bench
// swarm -netns`, BENCHMARKS.md), when anacrolix kept a request or two in
// flight per connection. With Eagle's floor of up to 8 under that
// (third_party/anacrolix-torrent/EAGLE.md) they gain 2-6 % more; measured
// before the floor, they also raised the piece data a datacenter received
// in `bench topology` and did not need from 0.00-0.02 to 0.18-0.30 copies.
const wireChunkSize = 16 << 10
