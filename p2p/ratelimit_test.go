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
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
)

// startLimitedSeeder runs a real seeder whose engine's upload is capped.
func startLimitedSeeder(t *testing.T, trackerURL string, upload p2p.Rate) (string, *p2p.Engine) {
	t.Helper()
	store := newFSStore(t)
	eng, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "seeder"), SkipAuthorization: true,
		ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(), Trackers: []string{trackerURL},
		Role: p2p.RoleSeeder, Logger: quiet, UploadLimit: upload,
	}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	_, addr := serveSeeder(t, store, eng)
	return addr, eng
}

// measureRate fetches every ref through e at once and returns the achieved
// rate in bytes per second. The seeder is warmed first, so that only the
// peer-to-peer transfer is timed.
func measureRate(t *testing.T, ctx context.Context, e *p2p.Engine, src p2p.MetaInfoSource, refs []blob.Ref, want [][]byte) float64 {
	t.Helper()
	var total int64
	for i, ref := range refs {
		if _, err := src.MetaInfo(ctx, ref); err != nil {
			t.Fatal(err)
		}
		total += int64(len(want[i]))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := e.Fetch(ctx, ref)
			if err != nil {
				t.Error(err)
				return
			}
			defer b.Close()
			got, err := io.ReadAll(b)
			if err != nil || !bytes.Equal(got, want[i]) {
				t.Errorf("blob %d: %d bytes, err %v, equal %v", i, len(got), err, bytes.Equal(got, want[i]))
			}
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// checkRate fails t if got is over the cap by more than a burst's worth,
// which is what a limit promises, or far under it, which is a limiter that
// throttles below its rate (a bucket too small, a wait too long). How close
// to the cap a node gets is a benchmark's measure, not a test's: on a
// loaded two-core CI machine the same build reached 0.84 × here, and 0.97
// alone.
func checkRate(t *testing.T, what string, got float64, limit p2p.Rate) {
	t.Helper()
	ratio := got / float64(limit)
	t.Logf("%s: %.2f MiB/s against a cap of %v (%.2f×)", what, got/(1<<20), limit, ratio)
	if ratio > 1.15 {
		t.Errorf("%s: achieved %.2f× the cap, want at most 1.15×", what, ratio)
	}
	if ratio < 0.6 {
		t.Errorf("%s: achieved %.2f× the cap, want at least 0.6×", what, ratio)
	}
}

func TestRateLimitDownload(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 8 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _ := startLimitedSeeder(t, trk, 0)
	const limit = p2p.Rate(4 << 20)
	for _, n := range []int{1, 4} {
		var refs []blob.Ref
		var want [][]byte
		for i := range n {
			ref, content := pushBlob(t, o, fmt.Sprintf("limit/down%d-%d", n, i), int64(16<<20/n))
			refs, want = append(refs, ref), append(want, content)
		}
		store := newFSStore(t)
		src := newSeederClient(t, addr)
		agent := newLimitedAgent(t, trk, store, src, limit)
		got := measureRate(t, ctx, agent, src, refs, want)
		agent.Close()
		checkRate(t, fmt.Sprintf("download, %d blob(s)", n), got, limit)
	}
}

func TestRateLimitUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 8 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	const limit = p2p.Rate(4 << 20)
	addr, _ := startLimitedSeeder(t, trk, limit)
	for _, n := range []int{1, 4} {
		var refs []blob.Ref
		var want [][]byte
		for i := range n {
			ref, content := pushBlob(t, o, fmt.Sprintf("limit/up%d-%d", n, i), int64(16<<20/n))
			refs, want = append(refs, ref), append(want, content)
		}
		store := newFSStore(t)
		src := newSeederClient(t, addr)
		agent := newEngine(t, p2p.RoleAgent, trk, store, src)
		got := measureRate(t, ctx, agent, src, refs, want)
		checkRate(t, fmt.Sprintf("upload, %d blob(s)", n), got, limit)
	}
}
