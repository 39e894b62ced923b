package seeder

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

func TestOriginCutsBodyShort(t *testing.T) {
	layer := pushImage(t, 12, 600<<10)[0]
	gw := startGateway(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		w.Header().Set("Content-Length", strconv.FormatInt(layer.Size, 10))
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 1000)) // then the handler returns: the connection is cut
	})
	ts := startSeeder(t, Config{}, nil)
	_, err := ts.dial(t).GetMetaInfo(context.Background(), request(gw.URL, testRepo(t), layer.Digest))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if _, err := ts.store.Stat(context.Background(), layer.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("partial blob in store: %v", err)
	}
}

// A blob that rotted on disk is not handed out: it is dropped and fetched
// from the origin again.
func TestCorruptStoredBlobIsRefetched(t *testing.T) {
	layer := pushImage(t, 13, 300<<10)[0]
	root := t.TempDir()
	store, err := filesystem.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	req := request(testOrigin.URL, testRepo(t), layer.Digest)
	ts := startSeeder(t, Config{}, store)
	if _, err := ts.dial(t).GetMetaInfo(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	ts.stop()

	path := filepath.Join(root, "blobs", "sha256", layer.Digest.Encoded()[:2], layer.Digest.Encoded())
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open stored blob (filesystem layout changed?): %v", err)
	}
	if _, err := f.WriteAt([]byte("rot"), 1000); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ts2 := startSeeder(t, Config{}, store)
	resp, err := ts2.dial(t).GetMetaInfo(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	checkMetaInfo(t, store, layer, resp.GetMetainfo())
	if got := testOrigin.BlobGETs(layer.Digest); got != 2 {
		t.Errorf("origin blob GETs = %d, want 2 (the refetch)", got)
	}
}

// A cached metainfo whose blob left the store is not handed out: the blob
// is fetched again.
func TestDeletedBlobIsRefetched(t *testing.T) {
	layer := pushImage(t, 14, 5000)[0]
	ts := startSeeder(t, Config{}, nil)
	stub := ts.dial(t)
	req := request(testOrigin.URL, testRepo(t), layer.Digest)
	if _, err := stub.GetMetaInfo(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := ts.store.Delete(context.Background(), layer.Digest); err != nil {
		t.Fatal(err)
	}
	resp, err := stub.GetMetaInfo(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	checkMetaInfo(t, ts.store, layer, resp.GetMetainfo())
	if got := testOrigin.BlobGETs(layer.Digest); got != 2 {
		t.Errorf("origin blob GETs = %d, want 2", got)
	}
	if got := ts.srv.Stats().CacheHits; got != 0 {
		t.Errorf("cache hits = %d, want 0", got)
	}
}

func TestEmptyBlob(t *testing.T) {
	empty := digest.FromBytes(nil)
	gw := startGateway(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	})
	ts := startSeeder(t, Config{}, nil)
	_, err := ts.dial(t).GetMetaInfo(context.Background(), request(gw.URL, "a/b", empty))
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "empty") {
		t.Fatalf("err = %v, want FailedPrecondition about an empty blob", err)
	}
}
