package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	atracker "github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types"
	"github.com/anacrolix/torrent/types/infohash"
	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/redisstore"
	"github.com/eagle-p2p/eagle/tracker/redisstore/redistest"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

// prefixes numbers the key prefixes of the stores a test run makes, so
// that stores on one Redis start empty unless a test shares a prefix.
var prefixes atomic.Int64

func newPrefix() string { return fmt.Sprintf("eagletest:%d:", prefixes.Add(1)) }

// open returns a store on addr under prefix; the caller closes it.
func open(t testing.TB, addr, prefix string, limits tracker.StoreConfig) *redisstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, redisstore.Config{Addr: addr, KeyPrefix: prefix}, limits)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openT is open with Close at the end of the test.
func openT(t testing.TB, addr, prefix string, limits tracker.StoreConfig) *redisstore.Store {
	t.Helper()
	s := open(t, addr, prefix, limits)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// admin is a client of srv for the test's own look at Redis.
func admin(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// The Redis store passes the conformance suite every PeerStore passes.
func TestStore(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	storetest.Run(t, func(t *testing.T, cfg tracker.StoreConfig) tracker.PeerStore {
		return open(t, srv.Addr, newPrefix(), cfg)
	})
}

// trackerServer serves a tracker.Server over store until the test ends, or
// until the returned stop is called.
func trackerServer(t *testing.T, store tracker.PeerStore) (url string, stop func()) {
	t.Helper()
	srv, err := tracker.New(tracker.Config{Store: tracker.StoreRedis, Redis: tracker.RedisConfig{Addr: "unused:1"}}, store)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ts.Close()
			if err := srv.Close(); err != nil {
				t.Errorf("tracker Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ts.URL + "/announce", stop
}

// client is an anacrolix tracker client, the one Eagle's peers use.
type client struct {
	t  *testing.T
	cl atracker.Client
}

func newClient(t *testing.T, url string) *client {
	t.Helper()
	cl, err := atracker.NewClient(url, atracker.NewClientOpts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return &client{t: t, cl: cl}
}

// announce announces peer n (storetest.ID(n), port 7000+n) to swarm ih
// and returns the response.
func (c *client) announce(ih tracker.InfoHash, n int, left int64, ev atracker.AnnounceEvent) atracker.AnnounceResponse {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.cl.Announce(ctx, atracker.AnnounceRequest{
		InfoHash: infohash.T(ih), PeerId: types.PeerID(storetest.ID(n)), Port: uint16(7000 + n), Left: left, Event: ev,
		NumWant: 50,
	}, atracker.AnnounceOpt{})
	if err != nil {
		c.t.Fatalf("announce of peer %d: %v", n, err)
	}
	return res
}

// ports returns the ports of the peers in res, sorted.
func ports(t *testing.T, res atracker.AnnounceResponse) []int {
	t.Helper()
	var out []int
	for _, p := range res.Peers {
		ap, ok := p.ToNetipAddrPort()
		if !ok {
			t.Fatalf("peer %v has no address", p)
		}
		out = append(out, int(ap.Port()))
	}
	slices.Sort(out)
	return out
}

// A tracker that restarts on the same Redis loses nothing: the peers
// announced to the first are handed out by the second, with their counts.
func TestRestartLosesNothing(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	prefix := newPrefix()
	ih := storetest.Hash(1)

	store := open(t, srv.Addr, prefix, tracker.StoreConfig{})
	url, stop := trackerServer(t, store)
	c := newClient(t, url)
	c.announce(ih, 1, 0, atracker.Started)
	c.announce(ih, 2, 100, atracker.Started)
	c.announce(ih, 2, 0, atracker.Completed)
	c.announce(ih, 3, 100, atracker.Started)
	stop()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store = openT(t, srv.Addr, prefix, tracker.StoreConfig{})
	url, _ = trackerServer(t, store)
	res := newClient(t, url).announce(ih, 4, 100, atracker.Started)
	if got := ports(t, res); !slices.Equal(got, []int{7001, 7002, 7003}) {
		t.Errorf("after the restart peer 4 was handed ports %v, want the three announced before it, 7001-7003", got)
	}
	if res.Seeders != 2 || res.Leechers != 2 {
		t.Errorf("after the restart: %d seeders, %d leechers, want 2 and 2", res.Seeders, res.Leechers)
	}
	counts, err := store.Counts(t.Context(), ih)
	if err != nil || counts.Downloaded != 1 {
		t.Errorf("after the restart Counts = %+v, %v; want the download counted before it", counts, err)
	}
}

// Two trackers on one Redis are one tracker to their clients: a peer
// announced to either is handed out by both, stops count on both, and
// each one's gauges count everything.
func TestReplicasSharePeers(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	prefix := newPrefix()
	ih := storetest.Hash(1)
	storeA := openT(t, srv.Addr, prefix, tracker.StoreConfig{})
	storeB := openT(t, srv.Addr, prefix, tracker.StoreConfig{})
	urlA, _ := trackerServer(t, storeA)
	urlB, _ := trackerServer(t, storeB)
	a, b := newClient(t, urlA), newClient(t, urlB)

	a.announce(ih, 1, 0, atracker.Started)
	if got := ports(t, b.announce(ih, 2, 100, atracker.Started)); !slices.Equal(got, []int{7001}) {
		t.Errorf("B handed peer 2 the ports %v, want peer 1's 7001, announced to A", got)
	}
	if got := ports(t, a.announce(ih, 3, 100, atracker.Started)); !slices.Equal(got, []int{7001, 7002}) {
		t.Errorf("A handed peer 3 the ports %v, want 7001 and 7002", got)
	}
	// A stop sent to B removes the entry A made, from the same address.
	b.announce(ih, 1, 0, atracker.Stopped)
	if got := ports(t, a.announce(ih, 3, 100, atracker.None)); !slices.Equal(got, []int{7002}) {
		t.Errorf("after peer 1 stopped at B, A handed ports %v, want only 7002", got)
	}
	for name, s := range map[string]*redisstore.Store{"A": storeA, "B": storeB} {
		st, err := s.Stats(t.Context())
		if err != nil || st.Swarms != 1 || st.Peers != 2 {
			t.Errorf("store %s Stats = %+v, %v; want the 1 swarm and 2 peers both trackers stored", name, st, err)
		}
	}
}

// The limits hold over every tracker sharing the Redis: racing announces
// through two stores take exactly the places there are.
func TestLimitsAcrossReplicas(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	prefix := newPrefix()
	limits := tracker.StoreConfig{PeerTTL: time.Minute, MaxSwarms: 10, MaxPeers: 25}
	stores := []*redisstore.Store{openT(t, srv.Addr, prefix, limits), openT(t, srv.Addr, prefix, limits)}
	var ok, full atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for n := range 200 {
		wg.Go(func() {
			// Swarms 0-19, ten peers each: the swarms run out first.
			err := stores[n%2].Announce(t.Context(), storetest.Hash(n%20), storetest.MakePeer(n, 1))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, tracker.ErrFull):
				full.Add(1)
			default:
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, err := stores[0].Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 25 || full.Load() != 175 || st.Swarms > 10 || st.Peers != 25 {
		t.Errorf("%d announces taken, %d full, Stats %+v; want 25 taken (max_peers), 175 full, at most 10 swarms (max_swarms)", ok.Load(), full.Load(), st)
	}
}

// Stores under different key prefixes share a Redis and nothing else:
// not their peers, not their limits.
func TestKeyPrefixesIsolate(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	limits := tracker.StoreConfig{MaxSwarms: 1}
	a := openT(t, srv.Addr, newPrefix(), limits)
	b := openT(t, srv.Addr, newPrefix(), limits)
	if err := a.Announce(t.Context(), storetest.Hash(1), storetest.MakePeer(1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := b.Announce(t.Context(), storetest.Hash(2), storetest.MakePeer(2, 0)); err != nil {
		t.Fatalf("the other cluster's swarm took this one's only place: %v", err)
	}
	if ps, err := b.Peers(t.Context(), storetest.Hash(1), 10); err != nil || len(ps) != 0 {
		t.Errorf("B sees A's swarm: %+v, %v", ps, err)
	}
	keys, err := admin(t, srv).Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "eagletest:") {
			t.Errorf("key %q outside the configured prefixes", k)
		}
	}
}

// commandCounter counts the commands a client sends, each a round trip
// (the store sends no pipelines).
type commandCounter struct {
	mu    sync.Mutex
	names []string
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		c.names = append(c.names, cmd.Name())
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		c.names = append(c.names, "pipeline")
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (c *commandCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := c.names
	c.names = nil
	return names
}

// An announce through the Server, its answer with peers and counts
// included, costs one round trip to Redis: one EVALSHA.
func TestAnnounceIsOneRoundTrip(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	store := openT(t, srv.Addr, newPrefix(), tracker.StoreConfig{})
	var cc commandCounter
	store.AddHook(&cc)
	url, _ := trackerServer(t, store)
	c := newClient(t, url)
	ih := storetest.Hash(1)
	for n := range 20 {
		c.announce(ih, n, int64(n%2), atracker.Started)
	}
	res := c.announce(ih, 20, 100, atracker.None)
	if len(res.Peers) != 20 || res.Seeders != 10 || res.Leechers != 11 {
		t.Errorf("21st announce: %d peers, %d seeders, %d leechers; want 20, 10, 11", len(res.Peers), res.Seeders, res.Leechers)
	}
	names := cc.take()
	if len(names) != 21 || slices.ContainsFunc(names, func(n string) bool { return n != "evalsha" }) {
		t.Errorf("21 announces sent the commands %q, want 21 EVALSHA", names)
	}
	// A stop is a Remove and a Counts.
	c.announce(ih, 20, 100, atracker.Stopped)
	if names := cc.take(); len(names) != 2 {
		t.Errorf("a stop sent the commands %q, want 2", names)
	}
}

// A peer's entry keeps the encoding of trackers from before locations
// when it has none, so that entries they wrote still read back, with no
// location; a location is a fifth field.
func TestLocationEncoding(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	prefix := newPrefix()
	store := openT(t, srv.Addr, prefix, tracker.StoreConfig{PeerTTL: time.Minute})
	ih := storetest.Hash(1)
	plain, located := storetest.MakePeer(1, 100), storetest.MakePeer(2, 50)
	located.Location = "eu/a/r1"
	for _, p := range []tracker.Peer{plain, located} {
		if err := store.Announce(t.Context(), ih, p); err != nil {
			t.Fatal(err)
		}
	}
	ad := admin(t, srv)
	key := prefix + "s:" + ih.String() + ":p"
	raw := func(p tracker.Peer) string {
		t.Helper()
		v, err := ad.HGet(t.Context(), key, string(p.ID[:])).Result()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	oldForm := regexp.MustCompile(`^127\.0\.0\.1 10001 100 \d+$`)
	if v := raw(plain); !oldForm.MatchString(v) {
		t.Errorf("entry of a peer with no location %q, want the old form %s", v, oldForm)
	}
	if v := raw(located); !regexp.MustCompile(`^127\.0\.0\.2 10002 50 \d+ eu/a/r1$`).MatchString(v) {
		t.Errorf("entry of a located peer %q, want the location as a fifth field", v)
	}
	// An entry as an old tracker writes it, over the live one (whose
	// scores keep it live): it reads back with its fields and no location.
	seen := strings.Fields(raw(plain))[3]
	if err := ad.HSet(t.Context(), key, string(located.ID[:]), "127.0.0.2 10002 7 "+seen).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := store.Peers(t.Context(), ih, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range got {
		if p.ID == located.ID && (p.Left != 7 || p.Location != "" || p.Addr != located.Addr) {
			t.Errorf("old-form entry read as %+v, want left 7, no location", p)
		}
	}
	if len(got) != 2 {
		t.Errorf("Peers returned %d peers, want 2", len(got))
	}
	// A garbled location in Redis is an error, not a peer handed out.
	if err := ad.HSet(t.Context(), key, string(located.ID[:]), "127.0.0.2 10002 7 "+seen+" eu//a").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Peers(t.Context(), ih, 10); !errors.Is(err, tracker.ErrInvalidLocation) {
		t.Errorf("Peers over a bad location: %v, want ErrInvalidLocation", err)
	}
}

// Peers expire after the TTL, and the janitor removes what is left of
// them from Redis: a store nobody announces to any more leaves no key.
func TestExpiryEmptiesRedis(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	prefix := newPrefix()
	store := openT(t, srv.Addr, prefix, tracker.StoreConfig{PeerTTL: time.Second})
	for sw := range 5 {
		for n := range 3 {
			if err := store.Announce(t.Context(), storetest.Hash(sw), storetest.MakePeer(10*sw+n, int64(n))); err != nil {
				t.Fatal(err)
			}
		}
	}
	ad := admin(t, srv)
	keys := func() []string {
		t.Helper()
		k, err := ad.Keys(t.Context(), prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if n := len(keys()); n != 5*3+2 {
		t.Fatalf("%d keys for 5 swarms, want 17 (3 per swarm, 2 sets)", n)
	}
	if st, err := store.Stats(t.Context()); err != nil || st.Swarms != 5 || st.Peers != 15 {
		t.Errorf("Stats = %+v, %v; want 5 swarms, 15 peers", st, err)
	}
	// The janitor runs every half TTL; the TTL and two rounds of it.
	deadline := time.Now().Add(5 * time.Second)
	for len(keys()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("keys left 5s after the last announce with a 1s TTL: %q", keys())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, err := store.Stats(t.Context()); err != nil || st.Swarms != 0 || st.Peers != 0 {
		t.Errorf("Stats = %+v, %v after expiry; want zero", st, err)
	}
}

// Reclaim removes expired entries a swarm still holds, in batches, while
// live ones stay.
func TestReclaim(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	store := openT(t, srv.Addr, newPrefix(), tracker.StoreConfig{PeerTTL: time.Second, MaxPeersPerSwarm: 5000})
	ih := storetest.Hash(1)
	for n := range 2500 {
		if err := store.Announce(t.Context(), ih, storetest.MakePeer(n, 0)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	// The swarm stays live: one of its peers keeps announcing.
	if err := store.Announce(t.Context(), ih, storetest.MakePeer(9999, 1)); err != nil {
		t.Fatal(err)
	}
	peers, swarms, err := store.Reclaim(t.Context())
	// The janitor may have got to some first.
	if err != nil || peers > 2500 || swarms != 0 {
		t.Fatalf("Reclaim = %d peers, %d swarms, %v; want up to 2500 peers and no swarm", peers, swarms, err)
	}
	if c, err := store.Counts(t.Context(), ih); err != nil || c != (tracker.SwarmCounts{Incomplete: 1}) {
		t.Errorf("Counts after Reclaim = %+v, %v; want the one live leecher", c, err)
	}
	if st, err := store.Stats(t.Context()); err != nil || st.Peers != 1 || st.Swarms != 1 {
		t.Errorf("Stats after Reclaim = %+v, %v; want 1 swarm of 1 peer", st, err)
	}
}

// A Redis that does not answer makes an announce fail within the timeout,
// not hang: the tracker answers 500 at once and the client tries another
// tracker or its next interval.
func TestSlowRedisFailsFast(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	ctx := t.Context()
	store, err := redisstore.New(ctx, redisstore.Config{Addr: srv.Addr, KeyPrefix: newPrefix(), Timeout: 200 * time.Millisecond}, tracker.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Announce(ctx, storetest.Hash(1), storetest.MakePeer(1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := admin(t, srv).Do(ctx, "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = store.Announce(ctx, storetest.Hash(1), storetest.MakePeer(2, 0))
	took := time.Since(start)
	if err == nil || errors.Is(err, tracker.ErrFull) || errors.Is(err, tracker.ErrPeerConflict) {
		t.Errorf("announce to a paused Redis: %v, want a store failure", err)
	}
	if took > time.Second {
		t.Errorf("announce to a paused Redis took %v with a 200ms timeout", took)
	}
	time.Sleep(1600*time.Millisecond - time.Since(start))
	if err := store.Announce(ctx, storetest.Hash(1), storetest.MakePeer(2, 0)); err != nil {
		t.Errorf("announce after the pause: %v", err)
	}
}

// New fails, naming the address, when Redis is not there, and naming the
// key when the config is wrong.
func TestNewFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = redisstore.New(t.Context(), redisstore.Config{Addr: addr, DialTimeout: 200 * time.Millisecond}, tracker.StoreConfig{})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("New with nothing at %s: %v, want an error naming it", addr, err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("New with nothing at %s took %v", addr, took)
	}
	_, err = redisstore.New(t.Context(), redisstore.Config{}, tracker.StoreConfig{})
	if err == nil || !strings.Contains(err.Error(), "redis.addr is required") {
		t.Errorf("New without an address: %v, want an error naming redis.addr", err)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  tracker.Config
		want string // in the error; "" for none
	}{
		{tracker.Config{}, ""},
		{tracker.Config{Store: "memory"}, ""},
		{tracker.Config{Store: "redis", Redis: tracker.RedisConfig{Addr: "redis:6379"}}, ""},
		{tracker.Config{Store: "memory", Redis: tracker.RedisConfig{DB: -1}}, ""}, // unused
		{tracker.Config{Store: "etcd"}, `store "etcd": must be memory or redis`},
		{tracker.Config{Store: "redis"}, "redis.addr is required"},
		{tracker.Config{Store: "redis", Redis: tracker.RedisConfig{Addr: "redis"}}, `redis.addr "redis": want host:port`},
		{tracker.Config{Store: "redis", Redis: tracker.RedisConfig{Addr: "redis:0"}}, `redis.addr "redis:0"`},
		{tracker.Config{Store: "redis", Redis: tracker.RedisConfig{Addr: ":6379"}}, `redis.addr ":6379"`},
		{tracker.Config{Store: "redis", Redis: tracker.RedisConfig{Addr: "redis:6379", DB: -1}}, "redis.db -1"},
		{tracker.Config{Store: "redis", Redis: tracker.RedisConfig{Addr: "redis:6379", Username: "u"}}, "redis.username"},
		{tracker.Config{Store: "redis", Redis: tracker.RedisConfig{Addr: "redis:6379", Timeout: -time.Second}}, "redis.timeout -1s"},
		{tracker.Config{Store: "redis", Redis: tracker.RedisConfig{Addr: "redis:6379", DialTimeout: -time.Second}}, "redis.dial_timeout -1s"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", tc.cfg, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	// New builds only the memory store; asked for Redis without one, it
	// says what to do.
	_, err := tracker.New(tracker.Config{Store: "redis", Redis: tracker.RedisConfig{Addr: "redis:6379"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "redisstore") {
		t.Errorf("New with store redis and no store: %v, want an error pointing at package redisstore", err)
	}

	const doc = `
store: redis
redis:
  addr: redis.eagle.svc:6379
  username: eagle
  password: secret
  db: 2
  key_prefix: "prod:"
  tls: true
  dial_timeout: 3s
  timeout: 250ms
`
	var cfg tracker.Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	want := tracker.RedisConfig{Addr: "redis.eagle.svc:6379", Username: "eagle", Password: "secret", DB: 2,
		KeyPrefix: "prod:", TLS: true, DialTimeout: 3 * time.Second, Timeout: 250 * time.Millisecond}
	if cfg.Store != "redis" || cfg.Redis != want {
		t.Errorf("YAML gave store %q, redis %+v; want redis, %+v", cfg.Store, cfg.Redis, want)
	}
	if got := (tracker.RedisConfig{}).WithDefaults(); got.KeyPrefix != "eagle:tracker:" || got.Timeout != 500*time.Millisecond || got.DialTimeout != 2*time.Second {
		t.Errorf("defaults %+v", got)
	}
}

// tlsCA is TestTLS's CA, one per process: the system roots it is put in
// are read once.
var tlsCA = sync.OnceValues(func() (*mtls.CA, error) { return mtls.NewCA("eagle redis test CA", time.Hour) })

// With tls: true the store speaks TLS to Redis and checks its certificate
// against the system's roots (here SSL_CERT_FILE, the test's CA).
func TestTLS(t *testing.T) {
	ca, err := tlsCA()
	if err != nil {
		t.Fatal(err)
	}
	// Member certificates name localhost and allow server authentication.
	m, err := ca.WriteMember(filepath.Join(t.TempDir(), "tls"), "redis")
	if err != nil {
		t.Fatal(err)
	}
	srv := redistest.New(t, redistest.Options{TLSCert: m.Cert, TLSKey: m.Key})
	_, port, _ := net.SplitHostPort(srv.Addr)
	addr := net.JoinHostPort("localhost", port)
	cfg := redisstore.Config{Addr: addr, KeyPrefix: newPrefix(), DialTimeout: time.Second}

	// Plaintext to a TLS port fails.
	if s, err := redisstore.New(t.Context(), cfg, tracker.StoreConfig{}); err == nil {
		s.Close()
		t.Fatal("a plaintext client reached the TLS-only Redis")
	}
	// Go reads SSL_CERT_FILE when it first loads the system roots, which
	// nothing in this test binary did before, and keeps them: a second run
	// of the test (-count) finds the same CA there.
	t.Setenv("SSL_CERT_FILE", m.CA)
	cfg.TLS = true
	s, err := redisstore.New(t.Context(), cfg, tracker.StoreConfig{})
	if err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	defer s.Close()
	if err := s.Announce(t.Context(), storetest.Hash(1), storetest.MakePeer(1, 0)); err != nil {
		t.Fatal(err)
	}
	if ps, err := s.Peers(t.Context(), storetest.Hash(1), 5); err != nil || len(ps) != 1 {
		t.Errorf("Peers over TLS = %+v, %v", ps, err)
	}
}

// BenchmarkServerAnnounce is announces through a tracker.Server (its
// handler, without HTTP) over the Redis store: 1,000 swarms of 50 peers
// re-announcing, each answer with up to 50 peers.
func BenchmarkServerAnnounce(b *testing.B) {
	benchOn(b, redistest.New(b, redistest.Options{}))
}

func benchOn(b *testing.B, srv *redistest.Server) {
	store := openT(b, srv.Addr, newPrefix(), tracker.StoreConfig{})
	h, err := tracker.New(tracker.Config{}, store)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	const swarms, peers = 1000, 50
	urls := make([]string, swarms*peers)
	for i := range urls {
		ih, id := storetest.Hash(i/peers), storetest.ID(i)
		urls[i] = fmt.Sprintf("/announce?info_hash=%s&peer_id=%s&port=%d&left=%d&compact=1",
			escape(ih[:]), escape(id[:]), 6881+i%1000, i%2)
	}
	addrs := make([]string, 256)
	for i := range addrs {
		addrs[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 40000).String()
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // the tracker waits on Redis, not on the CPU
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discard{}
		for pb.Next() {
			i := int(next.Add(1)) % len(urls)
			r := httptest.NewRequest(http.MethodGet, urls[i], nil)
			// Peer i always announces from the same address: its entry's.
			r.RemoteAddr = addrs[i%len(addrs)]
			h.ServeHTTP(w, r)
			if w.status != http.StatusOK {
				b.Fatalf("status %d", w.status)
			}
		}
	})
}

func escape(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "%%%02x", c)
	}
	return sb.String()
}

// discard is an http.ResponseWriter that keeps only the status.
type discard struct {
	h      http.Header
	status int
}

func (d *discard) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(s int)           { d.status = s }
