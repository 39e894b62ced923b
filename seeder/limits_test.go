package seeder

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
	"github.com/eagle-p2p/eagle/storage/lru"
)

// The origin limit holds the seeder's origin reads to its cap, for one
// fetch and for four at once.
func TestRateLimitOriginFetch(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 8 s")
	}
	const limit = p2p.Rate(4 << 20)
	for _, n := range []int{1, 4} {
		layers := pushImage(t, int64(100+n), splitSizes(16<<20, n)...)
		ts := startSeeder(t, Config{OriginLimit: limit}, nil)
		stub := ts.dial(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		errs := make(chan error, len(layers))
		var total int64
		for _, l := range layers {
			total += l.Size
			go func() {
				_, err := stub.GetMetaInfo(ctx, request(testOrigin.URL, testRepo(t), l.Digest))
				errs <- err
			}()
		}
		for range layers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		got := float64(total) / time.Since(start).Seconds()
		ratio := got / float64(limit)
		t.Logf("%d fetch(es): %.2f MiB/s from the origin against a cap of %v (%.2f×)", n, got/(1<<20), limit, ratio)
		if math.Abs(ratio-1) > 0.15 {
			t.Errorf("%d fetch(es): %.2f× the cap, want within ±15%%", n, ratio)
		}
	}
}

func splitSizes(total int64, n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = total / int64(n)
	}
	return s
}

// A seeder with a size limit evicts what it served least recently to make
// room, and answers Unavailable (so clients try the next seeder) for a blob
// larger than its whole cache.
func TestLRUSeederCache(t *testing.T) {
	layers := pushImage(t, 7, 3<<20, 3<<20, 3<<20, 12<<20)
	fs, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	cache, err := lru.New(context.Background(), fs, 7<<20)
	if err != nil {
		t.Fatal(err)
	}
	ts := startSeeder(t, Config{}, cache)
	stub := ts.dial(t)
	ctx := context.Background()
	for _, l := range layers[:3] {
		if _, err := stub.GetMetaInfo(ctx, request(testOrigin.URL, testRepo(t), l.Digest)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fs.Stat(ctx, layers[0].Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the least recently used blob is still stored: %v", err)
	}
	for _, l := range layers[1:3] {
		if _, err := fs.Stat(ctx, l.Digest); err != nil {
			t.Errorf("a recent blob was evicted: %v", err)
		}
	}
	if used, reserved := cache.Usage(); used > cache.Limit() || reserved != 0 {
		t.Errorf("seeder cache holds %d (+%d reserved) bytes, over %d", used, reserved, cache.Limit())
	}
	// Asked again, the evicted blob is fetched from the origin again.
	before := testOrigin.BlobGETs(layers[0].Digest)
	if _, err := stub.GetMetaInfo(ctx, request(testOrigin.URL, testRepo(t), layers[0].Digest)); err != nil {
		t.Fatal(err)
	}
	if n := testOrigin.BlobGETs(layers[0].Digest) - before; n != 1 {
		t.Errorf("re-requesting an evicted blob made %d origin GETs, want 1", n)
	}
	_, err = stub.GetMetaInfo(ctx, request(testOrigin.URL, testRepo(t), layers[3].Digest))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a blob larger than the cache: %v, want Unavailable", err)
	}
}
