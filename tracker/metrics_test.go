package tracker_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

// Announces are counted by event and result, and the swarm and peer gauges
// follow the store: joins, a stop, a second swarm.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newServer(t, tracker.Config{Metrics: reg, MaxSwarms: 2})
	ih2, ih3 := storetest.Hash(2), storetest.Hash(3)

	mustAnnounce(t, s, "127.0.0.1", announceQuery(1, 100, "event", "started"))
	mustAnnounce(t, s, "127.0.0.2", announceQuery(2, 100, "event", "started"))
	mustAnnounce(t, s, "127.0.0.3", announceQuery(3, 100))
	mustAnnounce(t, s, "127.0.0.3", announceQuery(3, 0, "event", "completed"))
	mustAnnounce(t, s, "127.0.0.2", announceQuery(2, 100, "event", "stopped"))
	mustAnnounce(t, s, "127.0.0.4", announceQuery(4, 100, "info_hash", string(ih2[:])))
	for _, q := range []string{announceQuery(5, 0, "port", "0"), announceQuery(5, 0, "event", "paused")} {
		if r := get(t, s, "127.0.0.5", "/announce?"+q); r.failure() == "" {
			t.Fatalf("bad announce %q was not refused: %q", q, r.raw)
		}
	}
	// A third swarm is one too many; peer 1's ID is 127.0.0.1's.
	if r := get(t, s, "127.0.0.6", "/announce?"+announceQuery(6, 0, "info_hash", string(ih3[:]))); r.status != http.StatusServiceUnavailable {
		t.Fatalf("announce past MaxSwarms: %d %q, want 503", r.status, r.raw)
	}
	for _, ev := range []string{"", "stopped"} {
		if r := get(t, s, "127.0.0.6", "/announce?"+announceQuery(1, 100, "event", ev)); r.failure() == "" {
			t.Fatalf("announce of another address's peer ID (event %q) was not refused: %q", ev, r.raw)
		}
	}
	// A scrape is not an announce.
	get(t, s, "127.0.0.1", "/scrape")

	want := `
# HELP eagle_tracker_announces_total Announces served, by BEP 3 event (none, started, completed, stopped; unknown when rejected) and result (ok; rejected: malformed; error: peer store failure; full: refused, the peer store is at a limit; conflict: refused, the peer ID is registered from another address).
# TYPE eagle_tracker_announces_total counter
eagle_tracker_announces_total{event="completed",result="conflict"} 0
eagle_tracker_announces_total{event="completed",result="error"} 0
eagle_tracker_announces_total{event="completed",result="full"} 0
eagle_tracker_announces_total{event="completed",result="ok"} 1
eagle_tracker_announces_total{event="none",result="conflict"} 1
eagle_tracker_announces_total{event="none",result="error"} 0
eagle_tracker_announces_total{event="none",result="full"} 1
eagle_tracker_announces_total{event="none",result="ok"} 2
eagle_tracker_announces_total{event="started",result="conflict"} 0
eagle_tracker_announces_total{event="started",result="error"} 0
eagle_tracker_announces_total{event="started",result="full"} 0
eagle_tracker_announces_total{event="started",result="ok"} 2
eagle_tracker_announces_total{event="stopped",result="conflict"} 1
eagle_tracker_announces_total{event="stopped",result="error"} 0
eagle_tracker_announces_total{event="stopped",result="ok"} 1
eagle_tracker_announces_total{event="unknown",result="rejected"} 2
# HELP eagle_tracker_max_peers Most peers over all swarms the tracker's peer store holds (max_peers); new peers beyond it are refused as full.
# TYPE eagle_tracker_max_peers gauge
eagle_tracker_max_peers 1e+06
# HELP eagle_tracker_max_peers_per_swarm Most peers one swarm holds (max_peers_per_swarm); new peers beyond it are refused as full.
# TYPE eagle_tracker_max_peers_per_swarm gauge
eagle_tracker_max_peers_per_swarm 20000
# HELP eagle_tracker_max_swarms Most swarms the tracker's peer store holds (max_swarms); announces that would start more are refused as full.
# TYPE eagle_tracker_max_swarms gauge
eagle_tracker_max_swarms 2
# HELP eagle_tracker_peers Peers over all swarms in the tracker's peer store (a peer in two swarms counts twice).
# TYPE eagle_tracker_peers gauge
eagle_tracker_peers 3
# HELP eagle_tracker_swarms Swarms (blobs) the tracker's peer store holds.
# TYPE eagle_tracker_swarms gauge
eagle_tracker_swarms 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// Close unregisters: a new server can use the same registry.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("after Close the registry holds %d metrics (err %v), want 0", n, err)
	}
	newServer(t, tracker.Config{Metrics: reg})
}

// A failing store is counted as an error, and a scrape reports the store's
// failure instead of made-up gauges.
func TestMetricsStoreFailure(t *testing.T) {
	reg := prometheus.NewRegistry()
	store := tracker.NewMemoryStore(tracker.StoreConfig{PeerTTL: time.Minute})
	s, err := tracker.New(tracker.Config{Metrics: reg, Logger: quietLogger}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	store.Close()
	if r := get(t, s, "127.0.0.1", "/announce?"+announceQuery(1, 0, "event", "started")); r.status != http.StatusInternalServerError {
		t.Fatalf("announce to a closed store: status %d, want 500", r.status)
	}
	_, err = reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "peer store closed") {
		t.Errorf("gather with a closed store: %v, want the store's error", err)
	}
}

// The gauges follow expiry, and a registry that already holds the
// tracker's metrics refuses a second server.
func TestMetricsExpiryAndDuplicate(t *testing.T) {
	reg := prometheus.NewRegistry()
	store := tracker.NewMemoryStore(tracker.StoreConfig{PeerTTL: 100 * time.Millisecond})
	defer store.Close()
	s, err := tracker.New(tracker.Config{Metrics: reg, Logger: quietLogger}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := tracker.New(tracker.Config{Metrics: reg, Logger: quietLogger}, nil); err == nil {
		t.Error("a second server registered the same metrics")
	}
	for n := range 4 {
		mustAnnounce(t, s, "127.0.0.1", announceQuery(n+1, 1))
	}
	st, err := store.Stats(context.Background())
	if err != nil || st.Swarms != 1 || st.Peers != 4 || st.MaxSwarms != tracker.DefaultMaxSwarms {
		t.Fatalf("Stats = %+v, %v; want 1 swarm of 4 peers", st, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err = store.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Swarms == 0 && st.Peers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stats = %+v long after every peer expired", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := `
# HELP eagle_tracker_peers Peers over all swarms in the tracker's peer store (a peer in two swarms counts twice).
# TYPE eagle_tracker_peers gauge
eagle_tracker_peers 0
# HELP eagle_tracker_swarms Swarms (blobs) the tracker's peer store holds.
# TYPE eagle_tracker_swarms gauge
eagle_tracker_swarms 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "eagle_tracker_peers", "eagle_tracker_swarms"); err != nil {
		t.Error(err)
	}
}

var quietLogger = slog.New(slog.DiscardHandler)
