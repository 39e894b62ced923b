package p2p_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/p2p"
)

// TestSuperSeedingSendsAboutOneCopy has six agents fetch one cold blob at
// once from a seeder whose uplink is capped well below theirs. A seeder
// that advertised every piece to every agent would be asked for the same
// first pieces by all six and send several copies; a super-seeding one
// hands out distinct pieces and lets the agents trade, so it sends about
// one.
func TestSuperSeedingSendsAboutOneCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 3 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, seed := startLimitedSeeder(t, trk, 4<<20)
	const size = 8 << 20
	ref, content := pushBlob(t, o, "superseed/blob", size)
	if _, err := newSeederClient(t, addr).MetaInfo(ctx, ref); err != nil {
		t.Fatal(err)
	}
	var agents []*p2p.Engine
	for range 6 {
		agents = append(agents, newEngine(t, p2p.RoleAgent, trk, newFSStore(t), newSeederClient(t, addr)))
	}
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() { checkFetch(t, ctx, a, ref, content, fmt.Sprintf("agent %d", i)) })
	}
	wg.Wait()
	sent := seed.Stats().BytesUploaded
	var fromSeeder int64
	for _, a := range agents {
		fromSeeder += a.Stats().BytesFromSeeders
	}
	copies := float64(sent) / size
	t.Logf("seeder sent %.2f copies (%d bytes); agents counted %d bytes from it", copies, sent, fromSeeder)
	if copies < 1 || copies > 1.25 {
		t.Errorf("seeder sent %.2f copies of the blob to six agents, want about 1", copies)
	}
}

// TestSeederServesLongPieces fetches a blob cut into 128 KiB pieces (over
// 64 MiB) from a super-seeding engine. It once hung: anacrolix counted
// wanted pieces rarest first against a 64 MiB budget, so the 512 pieces
// nobody offered used it all up and the agents never asked for the few the
// seeder did offer.
func TestSeederServesLongPieces(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 × 128 MiB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, seed := startLimitedSeeder(t, trk, 64<<20)
	const size = 128 << 20
	if p2p.PieceLength(size) <= p2p.MinPieceLength {
		t.Fatalf("piece length %d: the test needs pieces longer than the minimum", p2p.PieceLength(size))
	}
	ref, content := pushBlob(t, o, "superseed/long", size)
	// Warm: a cold blob would be streamed to one agent (cut-through),
	// and this test is about the swarm.
	if _, err := newSeederClient(t, addr).MetaInfo(ctx, ref); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		a := newEngine(t, p2p.RoleAgent, trk, newFSStore(t), newSeederClient(t, addr))
		wg.Go(func() { checkFetch(t, ctx, a, ref, content, fmt.Sprintf("agent %d", i)) })
	}
	wg.Wait()
	// Super-seeded (every seeded blob is; long pieces once were not), each
	// piece leaves the seeder about once: 1.00-1.02 copies here, even with
	// the machine's cores busy. Two agents cannot show the difference
	// from plain seeding (1.13-1.16) on a loaded CI machine, though: when
	// their trading lags, the seeder's last offers to one are pieces the
	// other holds, and 1.10 and 1.16 copies were seen there. The bound
	// catches a seeder sending each agent its own copy; that six agents
	// get about one is TestSuperSeedingSendsAboutOneCopy.
	if n := seed.Stats().PeersSeededPlainly; n > 0 {
		t.Logf("the seeder served %d agents plainly", n)
	}
	checkSeederCopies(t, seed, size, 1.3)
}

// TestSuperSeedingOpensIsolatedPeers has two agents that cannot find each
// other (their only tracker is down; each knows the seeder from its
// metainfo answer) fetch a blob from a super-seeding seeder with a slow
// uplink. Shown a few pieces at a time, each would wait for pieces the
// other holds; after isolationDelay the seeder serves each plainly, both
// finish, and it counts them.
func TestSuperSeedingOpensIsolatedPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 4 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, seed := startLimitedSeeder(t, trk, 2<<20)
	const size = 4 << 20
	ref, content := pushBlob(t, o, "superseed/isolated", size)
	if _, err := newSeederClient(t, addr).MetaInfo(ctx, ref); err != nil {
		t.Fatal(err)
	}
	const down = "https://127.0.0.1:1/announce"
	var agents []*p2p.Engine
	for range 2 {
		agents = append(agents, newEngine(t, p2p.RoleAgent, down, newFSStore(t), newSeederClient(t, addr)))
	}
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() { checkFetch(t, ctx, a, ref, content, fmt.Sprintf("agent %d", i)) })
	}
	wg.Wait()
	for i, a := range agents {
		if st := a.Stats(); st.BytesFromAgents != 0 || st.BytesFromSeeders < size {
			t.Errorf("agent %d: %d bytes from agents, %d from seeders; want 0 and the whole blob from the seeder", i, st.BytesFromAgents, st.BytesFromSeeders)
		}
	}
	if n := seed.Stats().PeersSeededPlainly; n != 2 {
		t.Errorf("seeder served %d agents plainly, want 2", n)
	}
	checkSeederCopies(t, seed, size*2, 1.1)
}

// TestSuperSeededBlobsPulledTogether has two agents each fetch three blobs
// at once from a super-seeding engine, as an image pull fetches its layers:
// offers and trades for three swarms share the same peers and sockets.
func TestSuperSeededBlobsPulledTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 × 96 MiB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, seed := startLimitedSeeder(t, trk, 64<<20)
	const size = 32 << 20
	var refs []blob.Ref
	var contents [][]byte
	for i := range 3 {
		ref, content := pushBlob(t, o, fmt.Sprintf("superseed/layer%d", i), size)
		// Warm, so that the pulls test the swarm, not the cut-through stream.
		if _, err := newSeederClient(t, addr).MetaInfo(ctx, ref); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
		contents = append(contents, content)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		a := newEngine(t, p2p.RoleAgent, trk, newFSStore(t), newSeederClient(t, addr))
		for j, ref := range refs {
			wg.Go(func() { checkFetch(t, ctx, a, ref, contents[j], fmt.Sprintf("agent %d blob %d", i, j)) })
		}
	}
	wg.Wait()
	// Super-seeded, each piece of each blob leaves the seeder about once.
	checkSeederCopies(t, seed, 3*size, 1.06)
}

// checkSeederCopies fails t unless seed sent from 1 to most copies of the
// total bytes of the blobs it seeded. With two agents, a seeder that seeds
// plainly sent 1.13–1.16 copies; super-seeding, 1.00.
func checkSeederCopies(t *testing.T, seed *p2p.Engine, total int64, most float64) {
	t.Helper()
	copies := float64(seed.Stats().BytesUploaded) / float64(total)
	t.Logf("seeder sent %.2f copies", copies)
	if copies < 1 || copies > most {
		t.Errorf("seeder sent %.2f copies, want about 1", copies)
	}
}

// checkFetch fetches ref through e and reports (with Errorf, so it may run
// on its own goroutine) unless it reads exactly want.
func checkFetch(t *testing.T, ctx context.Context, e *p2p.Engine, ref blob.Ref, want []byte, who string) {
	t.Helper()
	b, err := e.Fetch(ctx, ref)
	if err != nil {
		t.Errorf("%s: %v", who, err)
		return
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes, err %v, equal %v", who, len(got), err, bytes.Equal(got, want))
	}
}
