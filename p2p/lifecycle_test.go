package p2p_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
)

// Closing an engine while fetches and reads are in flight ends them with
// an error and leaves no goroutine behind (goleak checks at the end).
func TestCloseWhileFetching(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	ref, _ := pushBlob(t, o, "close/app", 8<<20)
	store := newFSStore(t)
	// Slow enough that Close comes mid-download.
	agent := newLimitedAgent(t, trk, store, newSeederClient(t, addr), 1<<20)
	b, err := agent.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(b)
		readErr <- err
	}()
	var wg sync.WaitGroup
	for range 4 { // more fetches racing Close
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b, err := agent.Fetch(ctx, ref); err == nil {
				b.Close()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := agent.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	wg.Wait()
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("a read of a blob whose download was cut short ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read blocked past Close")
	}
	b.Close()
	if _, err := agent.Fetch(ctx, ref); err == nil {
		t.Fatal("Fetch on a closed engine succeeded")
	}
}

// An engine started again on the same data dir and store seeds the blobs it
// had, without downloading them again: another node gets the blob from it
// with the seeder gone.
func TestRestartSeedsStoredBlobs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := pullThenLoseSeeder(t, ctx, "restart/app")
	ref, want, trk, mi := n.ref, n.want, n.trk, n.metaInfo
	a := n.start()
	defer a.Close()
	b := newEngine(t, p2p.RoleAgent, trk, memoryStore(), staticSource{ref.Digest: mi})
	if got := readAll(t, ctx, b, ref); !bytes.Equal(got, want) {
		t.Fatal("bytes from the restarted node differ")
	}
	if st := a.Stats(); st.BytesFromAgents+st.BytesFromSeeders != 0 {
		t.Errorf("the restarted node downloaded %d bytes of a blob it had", st.BytesFromAgents+st.BytesFromSeeders)
	}
	if st := b.Stats(); st.BytesFromAgents < int64(len(want)) {
		t.Errorf("the new node got %d bytes from agents, want all %d from the restarted node", st.BytesFromAgents, len(want))
	}
	if _, err := a.Fetch(ctx, ref); err != nil {
		t.Errorf("restarted node: %v", err)
	}
}

// A node upgraded from an Eagle version that cut blobs into longer pieces
// finds that version's metainfo kept next to its store. It goes on seeding
// the blob under it (the piece length is part of the infohash), and a node
// holding the same metainfo gets the blob from it. Once asked to seed the
// blob under today's metainfo (a seeder does when a node asks it for the
// metainfo), it moves to that swarm: a node holding the new metainfo gets
// the blob from it, and a restart finds the new metainfo kept.
func TestRestartSeedsOlderMetaInfo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := pullThenLoseSeeder(t, ctx, "upgrade/app")
	ref, want, trk, dataDir := n.ref, n.want, n.trk, n.dataDir
	// What the older version kept: the same blob in 256 KiB pieces.
	old := buildMetaInfo(t, want, 256<<10)
	kept := filepath.Join(dataDir, "metainfo", ref.Digest.Encoded()+".torrent")
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("no kept metainfo where the test expects it: %v", err)
	}
	if err := os.WriteFile(kept, old, 0o644); err != nil {
		t.Fatal(err)
	}
	a := n.start()
	defer a.Close()
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("the older metainfo was dropped at start-up: %v", err)
	}
	b := newEngine(t, p2p.RoleAgent, trk, memoryStore(), staticSource{ref.Digest: old})
	if got := readAll(t, ctx, b, ref); !bytes.Equal(got, want) {
		t.Fatal("bytes from the upgraded node differ")
	}
	if st := b.Stats(); st.BytesFromAgents < int64(len(want)) {
		t.Errorf("the new node got %d bytes from agents, want all %d from the upgraded node", st.BytesFromAgents, len(want))
	}

	canonical := buildMetaInfo(t, want, p2p.PieceLength(int64(len(want))))
	if err := a.Seed(ctx, ref.Digest, canonical); err != nil {
		t.Fatal(err)
	}
	c := newEngine(t, p2p.RoleAgent, trk, memoryStore(), staticSource{ref.Digest: canonical})
	if got := readAll(t, ctx, c, ref); !bytes.Equal(got, want) {
		t.Fatal("bytes from the node that moved to the new metainfo differ")
	}
	if st := c.Stats(); st.BytesFromAgents < int64(len(want)) {
		t.Errorf("got %d bytes from agents under the new metainfo, want all %d", st.BytesFromAgents, len(want))
	}
	now, err := os.ReadFile(kept)
	if err != nil {
		t.Fatal(err)
	}
	if _, info, err := p2p.ParseMetaInfo(ref.Digest, now); err != nil || info.PieceLength != p2p.PieceLength(int64(len(want))) {
		t.Errorf("kept metainfo after the move: piece length %d, err %v; want the new metainfo", info.PieceLength, err)
	}
}

// Bytes reach the reader as pieces are verified, long before the blob is
// whole: the first MiB is read while the blob is not yet in the store.
func TestStreamsBeforeDownloadCompletes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	ref, want := pushBlob(t, o, "stream/app", 8<<20)
	store := newFSStore(t)
	// The whole blob takes ~4 s.
	agent := newLimitedAgent(t, trk, store, newSeederClient(t, addr), 2<<20)
	b, err := agent.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(b, first); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Stat(ctx, ref.Digest); err == nil {
		t.Fatal("the blob was already whole when the first MiB arrived: nothing was streamed")
	}
	if !bytes.Equal(first, want[:1<<20]) {
		t.Fatal("first MiB differs")
	}
	rest, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rest, want[1<<20:]) {
		t.Fatal("rest differs")
	}
}

// restartedNode is a node that pulled a blob and was closed, after which
// the seeder went away: only the node's data dir and store hold the blob.
type restartedNode struct {
	ref      blob.Ref
	want     []byte // the blob
	metaInfo []byte // the seeder's metainfo for it
	trk      string
	dataDir  string
	start    func() *p2p.Engine // starts the node again; the caller closes it
}

func pullThenLoseSeeder(t *testing.T, ctx context.Context, repo string) restartedNode {
	t.Helper()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, seederSrv, seederEngine := startSeeder(t, trk)
	ref, want := pushBlob(t, o, repo, 3<<20+3)
	src := newSeederClient(t, addr)
	mi, err := src.MetaInfo(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	store := newFSStore(t)
	start := func() *p2p.Engine { return engineOnDir(t, dataDir, trk, store, src) }
	a := start()
	if got := readAll(t, ctx, a, ref); !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	seederSrv.Close()
	seederEngine.Close()
	return restartedNode{ref: ref, want: want, metaInfo: mi, trk: trk, dataDir: dataDir, start: start}
}

// engineOnDir starts an agent engine on dataDir and store, to be started
// again on the same ones after Close. The caller closes it.
func engineOnDir(t *testing.T, dataDir, trk string, store storage.Store, src p2p.MetaInfoSource) *p2p.Engine {
	t.Helper()
	e, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), Authorizer: testAuthorizer(t), ListenAddr: "127.0.0.1:0", DataDir: dataDir, Trackers: []string{trk}, Logger: quiet}, store, src)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A node keeps seeding after a restart a blob named by a sha512 digest, as
// it does a sha256 one: the kept metainfo's file name keeps the algorithm.
func TestRestartSeedsSHA512Blob(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	trk := testenv.Tracker(t, nil)
	content := randomBytes(t, 700<<10)
	d := digest.SHA512.FromBytes(content)
	store := newFSStore(t)
	w, err := store.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content)
	if _, err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	mi := metaInfoFor(t, d, content)
	dataDir := t.TempDir()
	start := func() *p2p.Engine {
		e, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "seeder"), SkipAuthorization: true, Role: p2p.RoleSeeder,
			ListenAddr: "127.0.0.1:0", DataDir: dataDir, Trackers: []string{trk}, Logger: quiet}, store, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	first := start()
	if err := first.Seed(ctx, d, mi); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again := start() // seeds what it kept, nothing else asked
	defer again.Close()
	ref := blob.Ref{Upstream: permissiveOrigin(t), Repository: "sha512/app", Digest: d}
	b := newEngine(t, p2p.RoleAgent, trk, memoryStore(), staticSource{d: mi})
	if got := readAll(t, ctx, b, ref); !bytes.Equal(got, content) {
		t.Fatal("bytes from the restarted node differ")
	}
}
