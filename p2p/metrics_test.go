package p2p_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
	"github.com/eagle-p2p/eagle/storage/memory"
)

// newMeteredEngine is newEngine with the engine's metrics on reg.
func newMeteredEngine(t *testing.T, trackerURL string, store storage.Store, src p2p.MetaInfoSource, reg prometheus.Registerer) *p2p.Engine {
	t.Helper()
	e, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), Authorizer: testAuthorizer(t),
		ListenAddr: "127.0.0.1:0",
		DataDir:    t.TempDir(),
		Trackers:   []string{trackerURL},
		Logger:     quiet,
		Metrics:    reg,
	}, store, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	return e
}

// metric returns the value of the sample of the metric name whose labels
// include the given name/value pairs; it fails the test if there is none.
func metric(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no sample of %s%v", name, labels)
	return 0
}

// waitMetric waits until the sample reaches want.
func waitMetric(t *testing.T, g prometheus.Gatherer, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := metric(t, g, name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A blob fetched through the swarm moves the byte counters by at least its
// size, counts one successful download and shows in the cache gauge; a
// second agent's bytes from agents were uploaded by the first.
func TestMetricsSwarmFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	ref, want := pushBlob(t, o, "metrics/app", 3<<20+777)
	size := float64(len(want))

	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	storeA, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := newMeteredEngine(t, trk, storeA, newSeederClient(t, addr), regA)
	b := newMeteredEngine(t, trk, memory.New(), newSeederClient(t, addr), regB)

	if got := readAll(t, ctx, a, ref); !bytes.Equal(got, want) {
		t.Fatal("agent A read different bytes")
	}
	if got := metric(t, regA, "eagle_p2p_received_bytes_total", "from", "seeder"); got < size {
		t.Errorf("A received %v bytes from seeders, want at least the blob's %v", got, size)
	}
	if got := metric(t, regA, "eagle_p2p_received_bytes_total", "from", "agent"); got != 0 {
		t.Errorf("A received %v bytes from agents, but no other agent had the blob", got)
	}
	waitMetric(t, regA, 1, "eagle_p2p_downloads_total", "result", "success")
	waitMetric(t, regA, 0, "eagle_p2p_active_downloads")
	if got := metric(t, regA, "eagle_p2p_cache_bytes"); got != size {
		t.Errorf("A's cache gauge = %v, want %v", got, size)
	}

	// Served from the store now: not a swarm read, no new download.
	br, err := a.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if p2p.FromSwarm(br) {
		t.Error("a stored blob reports that it comes from the swarm")
	}
	br.Close()
	if got := metric(t, regA, "eagle_p2p_downloads_total", "result", "success"); got != 1 {
		t.Errorf("a cached read counted as download: %v downloads", got)
	}

	if got := readAll(t, ctx, b, ref); !bytes.Equal(got, want) {
		t.Fatal("agent B read different bytes")
	}
	fromAgents := metric(t, regB, "eagle_p2p_received_bytes_total", "from", "agent")
	fromSeeders := metric(t, regB, "eagle_p2p_received_bytes_total", "from", "seeder")
	if fromAgents+fromSeeders < size {
		t.Errorf("B received %v+%v bytes, want at least %v", fromAgents, fromSeeders, size)
	}
	if up := metric(t, regA, "eagle_p2p_uploaded_bytes_total"); up < fromAgents {
		t.Errorf("A uploaded %v bytes, but B received %v from agents (A is the only one)", up, fromAgents)
	}
	if problems, err := testutil.GatherAndLint(regA); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// A download that cannot progress shows as active and its reader as a
// swarm read; a blob the source does not know counts as not_found. Close
// unregisters the metrics.
func TestMetricsActiveAndNotFound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	trk := testenv.Tracker(t, nil)
	content := randomBytes(t, 1<<20)
	stuck := digest.FromBytes(content)
	reg := prometheus.NewRegistry()
	// Nobody seeds the blob: the download waits for peers that never come.
	e, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), Authorizer: testAuthorizer(t),
		ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(), Trackers: []string{trk}, Logger: quiet, Metrics: reg,
	}, memory.New(), staticSource{stuck: metaInfoFor(t, stuck, content)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
		if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
			t.Errorf("after Close the registry holds %d metrics (%v), want none", n, err)
		}
	}()

	b, err := e.Fetch(ctx, blob.Ref{Upstream: permissiveOrigin(t), Repository: "x", Digest: stuck})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !p2p.FromSwarm(b) {
		t.Error("a blob still downloading does not report that it comes from the swarm")
	}
	if got := metric(t, reg, "eagle_p2p_active_downloads"); got != 1 {
		t.Errorf("active downloads = %v, want 1", got)
	}
	if got := metric(t, reg, "eagle_p2p_cache_bytes"); got != 0 {
		t.Errorf("cache gauge = %v with nothing complete, want 0", got)
	}
	if got := metric(t, reg, "eagle_p2p_peers"); got != 0 {
		t.Errorf("peers gauge = %v alone in the swarm, want 0", got)
	}
	// A second node after the same blob: the two connect.
	other, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), Authorizer: testAuthorizer(t),
		ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(), Trackers: []string{trk}, Logger: quiet,
	}, memory.New(), staticSource{stuck: metaInfoFor(t, stuck, content)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherBlob, err := other.Fetch(ctx, blob.Ref{Upstream: permissiveOrigin(t), Repository: "x", Digest: stuck})
	if err != nil {
		t.Fatal(err)
	}
	defer otherBlob.Close()
	// Both dial (the tracker hands each the other), so the gauge may show
	// one connection or two for a while.
	for deadline := time.Now().Add(10 * time.Second); metric(t, reg, "eagle_p2p_peers") < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("peers gauge stayed 0 with a second node in the swarm")
		}
	}

	missing := digest.FromString("not at the origin")
	if _, err := e.Fetch(ctx, blob.Ref{Upstream: permissiveOrigin(t), Repository: "x", Digest: missing}); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("fetch of an unknown blob: %v, want blob.ErrNotFound", err)
	}
	waitMetric(t, reg, 1, "eagle_p2p_downloads_total", "result", "not_found")
	if got := metric(t, reg, "eagle_p2p_active_downloads"); got != 1 {
		t.Errorf("active downloads = %v after a failed one, want 1", got)
	}

	// A second engine cannot take the same registry while this one runs.
	_, err = p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), Authorizer: testAuthorizer(t),
		ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(), Trackers: []string{trk}, Logger: quiet, Metrics: reg,
	}, memory.New(), nil)
	if err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("second engine on one registry: %v, want a registration error", err)
	}
}
