package seeder

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Eight concurrent calls for a cold blob make one origin fetch of the
// blob's bytes; refusals, unknown blobs and bad requests are counted by
// their result and gRPC code.
func TestMetrics(t *testing.T) {
	layer := pushImage(t, 40, 1<<20+17)[0]
	reg := prometheus.NewRegistry()
	ts := startSeeder(t, Config{Metrics: reg}, nil)
	stub := ts.dial(t)
	ctx := context.Background()

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := stub.GetMetaInfo(ctx, request(testOrigin.URL, testRepo(t), layer.Digest)); err != nil {
				t.Errorf("GetMetaInfo: %v", err)
			}
		})
	}
	wg.Wait()

	missing := digest.FromString("not in the registry")
	if _, err := stub.GetMetaInfo(ctx, request(testOrigin.URL, testRepo(t), missing)); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown blob: %v, want NotFound", err)
	}
	refusing := startGateway(t, func(w http.ResponseWriter, _ *http.Request, _ http.Handler) {
		http.Error(w, "no", http.StatusForbidden)
	})
	other := pushImage(t, 41, 4096)[0]
	if _, err := stub.GetMetaInfo(ctx, request(refusing.URL, testRepo(t), other.Digest)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("refused blob: %v, want PermissionDenied", err)
	}
	if _, err := stub.GetMetaInfo(ctx, request(testOrigin.URL, testRepo(t), "sha256:short")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad digest: %v, want InvalidArgument", err)
	}

	// The unknown and the refused blob were refused by the authorization
	// HEAD: no fetch started.
	want := fmt.Sprintf(`
# HELP eagle_seeder_origin_bytes_total Blob bytes received from origins.
# TYPE eagle_seeder_origin_bytes_total counter
eagle_seeder_origin_bytes_total %d
# HELP eagle_seeder_origin_fetches_total Blob fetches from origins that ended, by result: success, not_found, refused (a 4xx for the client's credentials), digest_mismatch, unavailable (network error or 5xx), canceled, error.
# TYPE eagle_seeder_origin_fetches_total counter
eagle_seeder_origin_fetches_total{result="canceled"} 0
eagle_seeder_origin_fetches_total{result="digest_mismatch"} 0
eagle_seeder_origin_fetches_total{result="error"} 0
eagle_seeder_origin_fetches_total{result="not_found"} 0
eagle_seeder_origin_fetches_total{result="refused"} 0
eagle_seeder_origin_fetches_total{result="success"} 1
eagle_seeder_origin_fetches_total{result="unavailable"} 0
# HELP eagle_seeder_requests_total GetMetaInfo calls answered, by gRPC status code (OK, NotFound, Unauthenticated, ...).
# TYPE eagle_seeder_requests_total counter
eagle_seeder_requests_total{code="InvalidArgument"} 1
eagle_seeder_requests_total{code="NotFound"} 1
eagle_seeder_requests_total{code="OK"} 8
eagle_seeder_requests_total{code="PermissionDenied"} 1
`, layer.Size)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"eagle_seeder_origin_bytes_total", "eagle_seeder_origin_fetches_total", "eagle_seeder_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testOrigin.BlobGETs(layer.Digest); n != 1 {
		t.Errorf("origin blob GETs = %d, want 1", n)
	}
	// Joiners of the one fetch are not cache hits; only calls after it are.
	hits := gathered(t, reg, "eagle_seeder_metainfo_cache_hits_total")
	if _, err := stub.GetMetaInfo(ctx, request(testOrigin.URL, testRepo(t), layer.Digest)); err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, reg, "eagle_seeder_metainfo_cache_hits_total"); got != hits+1 {
		t.Errorf("cache hits went from %v to %v after a warm call, want +1", hits, got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// Close unregisters; a registry cannot take two servers at once.
	if _, err := NewServer(Config{AllowedUpstreams: []string{"127.0.0.1"}, Metrics: reg}, ts.store, ts.seeding); err == nil {
		t.Error("a second server registered the same metrics")
	}
	ts.stop()
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("after Close the registry holds %d metrics (%v), want none", n, err)
	}
}

// gathered returns the value of the unlabelled counter name in g.
func gathered(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0
}
