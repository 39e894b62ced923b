package proxy

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

// fileSource is a BlobSource serving committed blobs from a filesystem
// store, as the p2p engine serves a warm local hit.
type fileSource struct{ store *filesystem.Store }

func (s fileSource) Stat(ctx context.Context, ref blob.Ref) (int64, error) {
	info, err := s.store.Stat(ctx, ref.Digest)
	if err != nil {
		return 0, err
	}
	return info.Size, nil
}

func (s fileSource) Fetch(ctx context.Context, ref blob.Ref) (blob.Reader, error) {
	b, err := s.store.Open(ctx, ref.Digest)
	if err != nil {
		return nil, err
	}
	return storeBlob{io.NewSectionReader(b, 0, b.Size()), b}, nil
}

// BenchmarkProxyBlobCopy measures a warm hit: a 16 MiB blob in a filesystem
// store served by the Handler on a loopback listener and read whole by an
// HTTP client, which is the proxy's copy loop plus net/http.
func BenchmarkProxyBlobCopy(b *testing.B) {
	const size = 16 << 20
	store, err := filesystem.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	dgst := benchBlob(b, store, size)
	off := false
	h, err := New(Config{DefaultUpstream: "http://127.0.0.1:1" /* never asked: AuthorizeBlobs is off */, AuthorizeBlobs: &off}, fileSource{store})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	tr := &http.Transport{DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	u := srv.URL + "/v2/bench/blob/blobs/" + dgst.String()
	buf := make([]byte, 1<<20)
	b.SetBytes(size)
	for b.Loop() {
		resp, err := client.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, resp.Body, buf)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || n != size {
			b.Fatalf("GET: %s, %d bytes, %v", resp.Status, n, err)
		}
	}
}

// benchBlob stores size random bytes and returns their digest.
func benchBlob(b *testing.B, store storage.Store, size int64) digest.Digest {
	b.Helper()
	ctx := context.Background()
	random := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{7}), size) }
	dg := digest.Canonical.Digester()
	if _, err := io.Copy(dg.Hash(), random()); err != nil {
		b.Fatal(err)
	}
	w, err := store.Create(ctx, dg.Digest())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Cancel()
	if _, err := io.Copy(w, random()); err != nil {
		b.Fatal(err)
	}
	if _, err := w.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	return dg.Digest()
}
