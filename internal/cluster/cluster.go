// Package cluster starts a whole Eagle cluster in one process, on
// 127.0.0.1: the origin registry (distribution/v3), a tracker, seeders and
// agents. The end-to-end tests, the benchmarks and the demo use it.
// Every part is the real one; only the network is loopback.
package cluster

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eagle-p2p/eagle"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/serve"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/proxy"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/tracker"
)

// Options configure a Cluster.
type Options struct {
	// Dir holds every component's state; a temporary directory (removed by
	// Close) when empty.
	Dir string
	// Seeders is the number of seeders. Default 2.
	Seeders int
	// Agents is the number of agents started with the cluster (AddAgent
	// starts more later).
	Agents int
	// AnnounceInterval is the tracker's announce interval. Default 2s.
	AnnounceInterval time.Duration
	// Logger receives every component's logs. Default: discard.
	Logger *slog.Logger
	// Origin configures the origin registry, e.g. its authentication
	// (Htpasswd, Token). Its Dir defaults to <Dir>/origin and its Logger
	// to Logger.
	Origin origin.Options
	// DisableDirect turns the agents' direct transfers off
	// (p2p.Config.DisableDirect).
	DisableDirect bool
	// DisableCutThrough makes the agents wait for a cold blob's whole
	// origin fetch at the seeder (p2p.Config.DisableCutThrough).
	DisableCutThrough bool
	// UploadLimit and DownloadLimit cap the peer traffic of every seeder
	// and agent, each host on its own (p2p.Config's limits). Default 0:
	// unlimited.
	UploadLimit, DownloadLimit p2p.Rate
	// SeederUploadLimit, if set, caps the seeders' uploads instead of
	// UploadLimit: seeders are often better connected than the nodes.
	SeederUploadLimit p2p.Rate
	// ListenHost is the IP address every component listens on. Default
	// 127.0.0.1; the netns benchmark uses the address of a bridge it made.
	ListenHost string
	// Insecure runs the internal planes (seeder gRPC, peer wire, tracker)
	// in plaintext. By default the cluster makes its own CA and every
	// component is a member with a certificate of its own, as in
	// production.
	Insecure bool
	// SeederConfig is the seeders' configuration; its AllowedUpstreams
	// default to the origin and its Metrics to the seeder's registry.
	SeederConfig seeder.Config
	// ProxyConfig is the agents' proxy configuration; its DefaultUpstream
	// defaults to the origin.
	ProxyConfig proxy.Config
	// PeerStore, if set, makes the tracker's PeerStore, given the peer TTL
	// and limits of the tracker's config (for example a Redis store); the
	// cluster closes it. Default: a MemoryStore.
	PeerStore func(tracker.StoreConfig) (tracker.PeerStore, error)
	// TrackerPolicy orders the peers the tracker hands out
	// (tracker.Config.Policy). Default: the tracker's default.
	TrackerPolicy tracker.Policy
	// SeederLocation is the seeders' location (p2p.Config.Location), which
	// they announce to the tracker. Default empty: none.
	SeederLocation string
}

// Cluster is a running cluster. Close stops it.
type Cluster struct {
	// Origin is the origin registry.
	Origin *origin.Registry
	// TrackerURL is the tracker's announce URL. The tracker's listener also
	// serves /metrics, /healthz and /readyz.
	TrackerURL string
	// TrackerMetrics holds the tracker's metrics (eagle_tracker_*).
	TrackerMetrics *prometheus.Registry
	// Seeders are the running seeders.
	Seeders []*Seeder
	// Agents are the running agents, in start order.
	Agents []*Agent

	opts        Options
	ownDir      bool
	ca          *mtls.CA // nil when Insecure
	tracker     *http.Server
	trackerLis  net.Listener
	trackerDone chan struct{}
	peerStore   tracker.PeerStore

	mu        sync.Mutex
	nextAgent int
}

// Seeder is one running seeder.
type Seeder struct {
	// Addr is its gRPC address.
	Addr string
	// Server is the seeder's gRPC service.
	Server *seeder.Server
	// Engine is its peer.
	Engine *p2p.Engine
	// Metrics holds the seeder's metrics (eagle_seeder_*, eagle_p2p_*).
	Metrics *prometheus.Registry
	seeder  *seeder.Seeder
	done    chan struct{}
	once    sync.Once
	err     error
}

// Uploaded is the blob bytes the seeder sent: over the peer wire and
// direct transfers (its engine), and streamed as they arrived from the
// origin (its service's cut-through streams).
func (s *Seeder) Uploaded() int64 {
	return s.Engine.Stats().BytesUploaded + s.Server.Stats().StreamedBytes
}

// Agent is one running node with its HTTP endpoint.
type Agent struct {
	// Name is "agent-<i>".
	Name string
	// URL is the registry endpoint, "http://127.0.0.1:<port>".
	URL string
	// Host is "127.0.0.1:<port>".
	Host string
	// Node is the node itself.
	Node *eagle.Node
	// Metrics holds the agent's metrics (eagle_proxy_*, eagle_p2p_*), also
	// served on its listener at /metrics, as the eagle binary does.
	Metrics *prometheus.Registry
	srv     *http.Server
	done    chan struct{}
	once    sync.Once
	err     error
}

// Start starts a cluster.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Seeders == 0 {
		opts.Seeders = 2
	}
	if opts.AnnounceInterval == 0 {
		opts.AnnounceInterval = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ListenHost == "" {
		opts.ListenHost = "127.0.0.1"
	}
	c := &Cluster{opts: opts}
	if c.opts.Dir == "" {
		dir, err := os.MkdirTemp("", "eagle-cluster-")
		if err != nil {
			return nil, err
		}
		c.opts.Dir, c.ownDir = dir, true
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	originOpts := opts.Origin
	if originOpts.Dir == "" {
		originOpts.Dir = filepath.Join(c.opts.Dir, "origin")
	}
	if originOpts.Logger == nil {
		originOpts.Logger = opts.Logger
	}
	if originOpts.ListenHost == "" {
		originOpts.ListenHost = opts.ListenHost
	}
	c.Origin, err = origin.Start(ctx, originOpts)
	if err != nil {
		return nil, fmt.Errorf("cluster: origin: %w", err)
	}
	if !opts.Insecure {
		if c.ca, err = mtls.NewCA("eagle cluster CA", 7*24*time.Hour); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	if err := c.startTracker(c.listenAddr(), opts.TrackerPolicy); err != nil {
		return nil, err
	}
	for i := range opts.Seeders {
		s, err := c.startSeeder(ctx, i)
		if err != nil {
			return nil, err
		}
		c.Seeders = append(c.Seeders, s)
	}
	for range opts.Agents {
		if _, err := c.AddAgent(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Member issues cluster credentials for a new member called name (files
// under Dir/tls) and returns their Config, or an insecure Config when the
// cluster runs without mutual TLS. Tests use it to act as a member, the
// netns benchmark to give its agent processes theirs.
func (c *Cluster) Member(name string) (mtls.Config, error) {
	if c.ca == nil {
		return mtls.Config{Insecure: true}, nil
	}
	cfg, err := c.ca.WriteMember(filepath.Join(c.opts.Dir, "tls"), name)
	if err != nil {
		return mtls.Config{}, fmt.Errorf("cluster: member %s: %w", name, err)
	}
	cfg.Logger = c.opts.Logger
	return cfg, nil
}

// OpsClient is an HTTP client for the operational endpoints (/metrics,
// /healthz, /readyz) of the tracker: it trusts the cluster CA and presents
// no certificate, as a Prometheus scraper or a probe would.
func (c *Cluster) OpsClient() *http.Client {
	if c.ca == nil {
		return &http.Client{}
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.Certificate())
	// Member certificates name localhost whatever address they serve on.
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
}

// credentials loads a new member's credentials (nil when insecure).
func (c *Cluster) credentials(name string) (*mtls.Credentials, error) {
	cfg, err := c.Member(name)
	if err != nil {
		return nil, err
	}
	return mtls.Load(cfg)
}

// startTracker starts the tracker on addr with policy (nil: the tracker's
// default) and a new, empty peer store.
func (c *Cluster) startTracker(addr string, policy tracker.Policy) error {
	c.TrackerMetrics = prometheus.NewRegistry()
	cfg := tracker.Config{Interval: c.opts.AnnounceInterval, MinInterval: min(c.opts.AnnounceInterval, max(c.opts.AnnounceInterval/2, time.Second)), Metrics: c.TrackerMetrics, Logger: c.opts.Logger, Policy: policy}.WithDefaults()
	if c.opts.PeerStore == nil {
		c.peerStore = tracker.NewMemoryStore(cfg.StoreConfig())
	} else {
		store, err := c.opts.PeerStore(cfg.StoreConfig())
		if err != nil {
			return fmt.Errorf("cluster: tracker: %w", err)
		}
		c.peerStore = store
	}
	h, err := tracker.New(cfg, c.peerStore)
	if err != nil {
		return fmt.Errorf("cluster: tracker: %w", err)
	}
	creds, err := c.credentials("tracker")
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster: tracker: %w", err)
	}
	c.trackerLis = lis
	scheme := "http"
	c.tracker = &http.Server{
		// Announces and scrapes are for members; /metrics and the probes
		// are for anyone.
		Handler:           serve.Handler(creds.RequireMember(h), c.TrackerMetrics, nil, c.opts.Logger),
		ReadHeaderTimeout: 10 * time.Second,
		// Handshakes cut by a restart or Close are not worth the standard
		// logger's line on stderr.
		ErrorLog: slog.NewLogLogger(c.opts.Logger.Handler(), slog.LevelDebug),
	}
	if creds != nil {
		scheme = "https"
		c.tracker.TLSConfig = creds.ServerConfigOptionalClient()
		lis = tls.NewListener(lis, c.tracker.TLSConfig)
	}
	c.trackerDone = make(chan struct{})
	go func() {
		defer close(c.trackerDone)
		c.tracker.Serve(lis)
	}()
	c.TrackerURL = scheme + "://" + c.trackerLis.Addr().String() + "/announce"
	return nil
}

// RestartTracker stops the tracker and starts a new one at the same
// address with policy (nil: the tracker's default) and an empty peer
// store, as an operator changing the tracker's policy would: the seeders
// and agents keep their tracker URL and announce again on their own.
// TrackerMetrics is the new tracker's. It must not run concurrently with
// Close.
func (c *Cluster) RestartTracker(policy tracker.Policy) error {
	addr := c.trackerLis.Addr().String()
	if err := c.stopTracker(); err != nil {
		return fmt.Errorf("cluster: restart tracker: %w", err)
	}
	return c.startTracker(addr, policy)
}

// stopTracker stops the tracker and closes its peer store.
func (c *Cluster) stopTracker() error {
	var errs []error
	if c.tracker != nil {
		errs = append(errs, c.tracker.Close())
		<-c.trackerDone
		c.tracker = nil
	}
	if c.peerStore != nil {
		errs = append(errs, c.peerStore.Close())
		c.peerStore = nil
	}
	return errors.Join(errs...)
}

func (c *Cluster) startSeeder(ctx context.Context, i int) (*Seeder, error) {
	reg := prometheus.NewRegistry()
	member, err := c.Member("seeder-" + strconv.Itoa(i))
	if err != nil {
		return nil, err
	}
	scfg := c.opts.SeederConfig
	if len(scfg.AllowedUpstreams) == 0 {
		scfg.AllowedUpstreams = []string{c.Origin.Host}
	}
	sd, err := seeder.New(ctx, seeder.SeederConfig{
		DataDir: filepath.Join(c.opts.Dir, "seeder-"+strconv.Itoa(i)),
		P2P: p2p.Config{
			ListenAddr:    c.listenAddr(),
			Trackers:      []string{c.TrackerURL},
			UploadLimit:   cmp.Or(c.opts.SeederUploadLimit, c.opts.UploadLimit),
			DownloadLimit: c.opts.DownloadLimit,
			Location:      c.opts.SeederLocation,
		},
		Service: scfg,
		TLS:     member,
		Logger:  c.opts.Logger.With("seeder", i),
		Metrics: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: seeder %d: %w", i, err)
	}
	lis, err := net.Listen("tcp", c.listenAddr())
	if err != nil {
		sd.Close()
		return nil, fmt.Errorf("cluster: seeder %d: %w", i, err)
	}
	s := &Seeder{Addr: lis.Addr().String(), Server: sd.Server, Engine: sd.Engine, Metrics: reg, seeder: sd, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		sd.Serve(lis)
	}()
	return s, nil
}

// Close stops the seeder. It is safe to call more than once.
func (s *Seeder) Close() error {
	s.once.Do(func() {
		s.err = s.seeder.Close()
		<-s.done
	})
	return s.err
}

// SeederAddrs returns the seeders' gRPC addresses.
func (c *Cluster) SeederAddrs() []string {
	addrs := make([]string, len(c.Seeders))
	for i, s := range c.Seeders {
		addrs[i] = s.Addr
	}
	return addrs
}

// AddAgent starts one more agent.
func (c *Cluster) AddAgent(ctx context.Context) (*Agent, error) {
	c.mu.Lock()
	i := c.nextAgent
	c.nextAgent++
	c.mu.Unlock()
	name := "agent-" + strconv.Itoa(i)
	dir := filepath.Join(c.opts.Dir, name)
	log := c.opts.Logger.With("agent", i)
	reg := prometheus.NewRegistry()
	member, err := c.Member(name)
	if err != nil {
		return nil, err
	}
	pcfg := c.opts.ProxyConfig
	if pcfg.DefaultUpstream == "" {
		pcfg.DefaultUpstream = c.Origin.URL
	}
	node, err := eagle.NewNode(eagle.Config{
		DataDir: dir,
		Seeders: c.SeederAddrs(),
		P2P: p2p.Config{ListenAddr: c.listenAddr(), Trackers: []string{c.TrackerURL},
			UploadLimit: c.opts.UploadLimit, DownloadLimit: c.opts.DownloadLimit, DisableDirect: c.opts.DisableDirect,
			DisableCutThrough: c.opts.DisableCutThrough},
		Proxy:   pcfg,
		TLS:     member,
		Logger:  log,
		Metrics: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", name, err)
	}
	lis, err := net.Listen("tcp", c.listenAddr())
	if err != nil {
		node.Close()
		return nil, fmt.Errorf("cluster: %s: %w", name, err)
	}
	a := &Agent{
		Name:    name,
		Host:    lis.Addr().String(),
		URL:     "http://" + lis.Addr().String(),
		Node:    node,
		Metrics: reg,
		srv:     &http.Server{Handler: serve.Handler(node, reg, nil, log), ReadHeaderTimeout: 10 * time.Second},
		done:    make(chan struct{}),
	}
	go func() {
		defer close(a.done)
		a.srv.Serve(lis)
	}()
	c.mu.Lock()
	c.Agents = append(c.Agents, a)
	c.mu.Unlock()
	return a, nil
}

// Close stops the agent. It is safe to call more than once.
func (a *Agent) Close() error {
	a.once.Do(func() {
		err := a.srv.Close()
		<-a.done
		a.err = errors.Join(err, a.Node.Close())
	})
	return a.err
}

// Close stops every component and removes the state directory if Start
// made it.
func (c *Cluster) Close() error {
	var errs []error
	for _, a := range c.Agents {
		errs = append(errs, a.Close())
	}
	for _, s := range c.Seeders {
		errs = append(errs, s.Close())
	}
	errs = append(errs, c.stopTracker())
	if c.Origin != nil {
		errs = append(errs, c.Origin.Close())
	}
	if c.ownDir {
		errs = append(errs, os.RemoveAll(c.opts.Dir))
	}
	return errors.Join(errs...)
}

// listenAddr is the address every component listens on: ListenHost at a
// port chosen by the kernel.
func (c *Cluster) listenAddr() string { return net.JoinHostPort(c.opts.ListenHost, "0") }
