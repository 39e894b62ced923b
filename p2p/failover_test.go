package p2p_test

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

// startStoppableSeeder runs a seeder (its engine and gRPC service) whose
// uploads are capped at limit; stop kills it, once (and at the test's
// end).
func startStoppableSeeder(t *testing.T, trk string, limit p2p.Rate) (addr string, stop func()) {
	t.Helper()
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	eng, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "seeder"), SkipAuthorization: true, Role: p2p.RoleSeeder,
		ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(), Trackers: []string{trk}, Logger: quiet,
		UploadLimit: limit,
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, addr, stopService := serveSeederStop(t, store, eng)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stopService()
			eng.Close()
		})
	}
	t.Cleanup(stop)
	return addr, stop
}

// The seeder a download depends on dies mid-way (its engine and its gRPC
// service stop): the node notices within about a second through the
// seeder client's health checks, asks the next seeder, which fetches the
// blob from the origin once more and seeds it, and the download completes
// with the right bytes — not after a 30 s stall.
func TestFailoverSeederKilledMidDownload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	type seederProc struct {
		addr string
		stop func()
	}
	start := func() seederProc {
		addr, stop := startStoppableSeeder(t, trk, 2<<20)
		return seederProc{addr, stop}
	}
	seeders := []seederProc{start(), start()}
	ref, want := pushBlob(t, o, "failover/app", 8<<20)
	client := newSeederClient(t, seeders[0].addr, seeders[1].addr)
	first := seeder.Rank(client.Seeders(), ref.Digest)[0]

	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	agent := newEngine(t, p2p.RoleAgent, trk, store, client)
	b, err := agent.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make([]byte, 1<<20)
	if _, err := b.Read(got[:1]); err != nil {
		t.Fatal(err)
	}
	// The first byte came: kill the seeder the blob came from.
	for _, s := range seeders {
		if s.addr == first {
			s.stop()
		}
	}
	killed := time.Now()
	var rest bytes.Buffer
	rest.Write(got[:1])
	if _, err := rest.ReadFrom(b); err != nil {
		t.Fatalf("read after the seeder died: %v", err)
	}
	took := time.Since(killed)
	if !bytes.Equal(rest.Bytes(), want) {
		t.Fatal("bytes differ")
	}
	if n := o.BlobGETs(ref.Digest); n > 2 {
		t.Errorf("origin served the blob %d times, want at most 2 (one more after the seeder died)", n)
	}
	// 8 MiB at the surviving seeder's 2 MiB/s is 4 s; the failover itself
	// must not add a 30 s stall.
	if took > 12*time.Second {
		t.Errorf("the download finished %v after its seeder died", took)
	}
	t.Logf("finished %v after the seeder died; origin GETs %d", took, o.BlobGETs(ref.Digest))
}

// askCounter counts the times a node asks the seeders for a blob. Unlike
// countingSource it keeps the seeder client's other methods (its health
// and the peers it names), which these tests are about.
type askCounter struct {
	*seeder.Client
	n atomic.Int64
}

func (c *askCounter) MetaInfo(ctx context.Context, ref blob.Ref) ([]byte, error) {
	c.n.Add(1)
	return c.Client.MetaInfo(ctx, ref)
}

func (c *askCounter) MetaInfoWithPeers(ctx context.Context, ref blob.Ref) ([]byte, string, []netip.AddrPort, error) {
	c.n.Add(1)
	return c.Client.MetaInfoWithPeers(ctx, ref)
}

// Every seeder is gone mid-download (as for a node whose link is cut):
// the download asks the seeders again about once a reask interval, not in
// a loop that burns a core on failed asks and warnings while the link is
// down.
func TestFailoverNoSeederLeftDoesNotSpin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, stopSeeder := startStoppableSeeder(t, trk, 1<<20)
	ref, _ := pushBlob(t, o, "failover/spin", 16<<20)
	src := &askCounter{Client: newSeederClient(t, addr)}

	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	agent := newEngine(t, p2p.RoleAgent, trk, store, src)
	b, err := agent.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	// Counted from before the seeder stops: streamed the blob (cut-through,
	// the default), the node asks as soon as the stream breaks, which can
	// be before stopSeeder returns (a CI run counted 0 asks after it).
	before := src.n.Load()
	stopSeeder()
	const watch = 7 * time.Second
	time.Sleep(watch)
	asks := src.n.Load() - before
	// Streamed, one ask when the stream breaks, after which the download
	// fails for the runtime to fall back (no seeder is left to stream
	// it again, and no peer holds it). From the swarm, one ask when the
	// seeder's health check fails, then one per 3 s reask interval:
	// about 3 in 7 s.
	if asks > 6 {
		t.Errorf("asked the seeders %d times in %v with none left", asks, watch)
	}
	if asks == 0 {
		t.Error("never asked the seeders again after the seeder died")
	}
	t.Logf("%d asks in %v after the seeder died", asks, watch)
}

// The seeder dies while another peer still serves the blob: the download
// completes from that peer, and the node asks the seeders again about
// once a reask interval, not once for every piece it waits on (each wait
// on a new piece once saw the dead seeder's closed health channel and
// asked at once).
func TestFailoverSeederGoneWhilePeersServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, stopSeeder := startStoppableSeeder(t, trk, 2<<20)
	ref, want := pushBlob(t, o, "failover/peers", 8<<20)

	// A peer that holds the blob and serves it at 2 MiB/s.
	peer := newEngineWith(t, trk, newFSStore(t), newSeederClient(t, addr), func(c *p2p.Config) { c.UploadLimit = 2 << 20 })
	if got := readAll(t, ctx, peer, ref); !bytes.Equal(got, want) {
		t.Fatal("the peer got the wrong bytes")
	}

	src := &askCounter{Client: newSeederClient(t, addr)}
	agent := newEngine(t, p2p.RoleAgent, trk, newFSStore(t), src)
	b, err := agent.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(b, first); err != nil {
		t.Fatal(err)
	}
	stopSeeder()
	killed := time.Now()
	before := src.n.Load()
	rest, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read after the seeder died: %v", err)
	}
	took := time.Since(killed)
	if !bytes.Equal(append(first, rest...), want) {
		t.Fatal("bytes differ")
	}
	asks := src.n.Load() - before
	// One ask when the seeder's health check fails, then at most one per
	// 3 s reask interval.
	if limit := 2 + int64(took/(3*time.Second)); asks > limit {
		t.Errorf("asked the seeders %d times in the %v the download took after the seeder died (at most %d)", asks, took.Round(time.Millisecond), limit)
	}
	t.Logf("finished %v after the seeder died, with %d asks", took.Round(time.Millisecond), asks)
}
