package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/logbuf"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/driver"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

func TestStorageDriverConfig(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()

	s, err := openStore(ctx, storageConfig{}, dir)
	if err != nil {
		t.Fatalf("default storage: %v", err)
	}
	fsStore, ok := s.(*filesystem.Store)
	if !ok || fsStore.Root() != filepath.Join(dir, "blobs") {
		t.Fatalf("default storage = %T, want the filesystem store at data_dir/blobs", s)
	}
	fsStore.Close()

	other := t.TempDir()
	s, err = openStore(ctx, storageConfig{Driver: "filesystem", Parameters: map[string]any{"rootdirectory": other}}, dir)
	if err != nil {
		t.Fatalf("filesystem with rootdirectory: %v", err)
	}
	fsStore, ok = s.(*filesystem.Store)
	if !ok || fsStore.Root() != other {
		t.Fatalf("filesystem storage = %T, want the filesystem store at %s", s, other)
	}
	fsStore.Close()

	s, err = openStore(ctx, storageConfig{Driver: "inmemory"}, dir)
	if err != nil {
		t.Fatalf("inmemory: %v", err)
	}
	if _, ok := s.(*driver.Store); !ok {
		t.Fatalf("inmemory storage = %T, want *driver.Store", s)
	}

	for _, tc := range []struct {
		cfg  storageConfig
		want string
	}{
		{storageConfig{Driver: "floppy"}, `unknown driver "floppy" (known: filesystem, inmemory, s3)`},
		{storageConfig{Driver: "filesystem", Parameters: map[string]any{"maxthreads": 4}}, "storage.parameters.maxthreads"},
		{storageConfig{Driver: "filesystem", Parameters: map[string]any{"rootdirectory": 7}}, "storage.parameters.rootdirectory"},
		{storageConfig{Driver: "s3", Parameters: map[string]any{"region": "us-east-1"}}, "bucket"},
	} {
		if _, err := openStore(ctx, tc.cfg, dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("openStore(%+v) error = %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}

	// Through the command: the YAML section is read and a bad driver stops
	// the seeder before it listens.
	var stdout, stderr bytes.Buffer
	cfg := "data_dir: " + dir + "\nmetrics_listen: 127.0.0.1:0\np2p:\n  listen_addr: 127.0.0.1:0\n  trackers: [https://127.0.0.1:1/announce]\n" +
		"seeder:\n  allowed_upstreams: [registry.example]\nstorage:\n  driver: floppy\n  parameters: {a: 1}\n" + tlsYAML(member(t, testCA(t), "seeder-0"))
	if code := run([]string{"seeder", "--config", writeFile(t, cfg), "--listen", "127.0.0.1:0"}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "floppy") {
		t.Fatalf("seeder with driver floppy: exit %d, stderr %q; want an error naming it", code, stderr.String())
	}
}

// TestStorageDriverSeederS3 runs "eagle seeder" with its blobs in S3 (the
// s3 driver against gofakes3 on 127.0.0.1): a metainfo request makes the
// seeder fetch the layer from origin into the bucket, a second one is
// served from the bucket.
func TestStorageDriverSeederS3(t *testing.T) {
	t.Setenv("AWS_CA_BUNDLE", "") // see storage/driver/s3's TestStorageDriverS3
	ctx := t.Context()
	reg, err := origin.Start(ctx, origin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	img, err := origin.PushRandomImage(ctx, http.DefaultClient, reg.URL, "e2e/s3", "v1", []int64{3 << 20}, 7)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]

	backend := s3mem.New()
	if err := backend.CreateBucket("blobs"); err != nil {
		t.Fatal(err)
	}
	s3srv := httptest.NewServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(func() {
		s3srv.Close()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	})
	params := map[string]any{
		"bucket": "blobs", "region": "us-east-1", "regionendpoint": s3srv.URL,
		"forcepathstyle": true, "secure": false, "accesskey": "a", "secretkey": "b",
		"rootdirectory": "/seeder-0",
	}
	paramsYAML, err := json.Marshal(params) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	// The seeder and its client are members of one cluster.
	ca := testCA(t)
	cfg := fmt.Sprintf("data_dir: %s\nlog_level: info\nmetrics_listen: 127.0.0.1:0\np2p:\n  listen_addr: 127.0.0.1:0\n  trackers: [https://127.0.0.1:1/announce]\n"+
		"seeder:\n  allowed_upstreams: [%q]\nstorage:\n  driver: s3\n  parameters: %s\n%s",
		t.TempDir(), reg.Host, paramsYAML, tlsYAML(member(t, ca, "seeder-0")))

	runCtx, stop := context.WithCancel(ctx)
	var stderr logbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runSeeder(runCtx, []string{"--config", writeFile(t, cfg), "--listen", "127.0.0.1:0"}, io.Discard, &stderr)
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("seeder: %v", err)
		}
	})
	addr := waitListening(t, &stderr, done)

	creds, err := mtls.Load(member(t, ca, "agent-0"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := seeder.NewClient(seeder.ClientConfig{Seeders: []string{addr}, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ref := blob.Ref{Upstream: reg.URL, Repository: "e2e/s3", Digest: layer.Digest}
	for range 2 {
		if _, err := c.MetaInfo(ctx, ref); err != nil {
			t.Fatalf("MetaInfo: %v", err)
		}
	}
	if n := reg.BlobGETs(layer.Digest); n != 1 {
		t.Fatalf("origin served the layer %d times, want 1", n)
	}
	// The gRPC service is for members: a client without a certificate is
	// refused.
	stranger, err := seeder.NewClient(seeder.ClientConfig{Seeders: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if _, err := stranger.MetaInfo(sctx, ref); err == nil {
		t.Error("the seeder answered a client without a certificate")
	}

	// The layer is in the bucket, under the seeder's prefix, intact.
	s, err := driver.Open(ctx, "s3", params)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Open(ctx, layer.Digest)
	if err != nil {
		t.Fatalf("the layer is not in the bucket: %v", err)
	}
	defer b.Close()
	got, err := digest.FromReader(storage.NewReader(b, 0))
	if err != nil || got != layer.Digest || b.Size() != layer.Size {
		t.Fatalf("bucket copy: %s, %d bytes, %v; want %s, %d bytes", got, b.Size(), err, layer.Digest, layer.Size)
	}
}

// waitListening returns the gRPC address the seeder logs once it listens.
func waitListening(t *testing.T, stderr *logbuf.Buffer, done chan error) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(stderr.String(), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				GRPC string `json:"grpc"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "seeder listening" {
				return rec.GRPC
			}
		}
		select {
		case err := <-done:
			done <- err // for the cleanup that waits for it
			t.Fatalf("seeder exited: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("seeder did not listen within 10s:\n%s", stderr.String())
	return ""
}
