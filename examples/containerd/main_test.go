package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/plugins/content/local"
	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
)

func TestMain(m *testing.M) {
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

// The command fetches an image into a content store through an embedded
// node: every blob lands in the store, came over p2p, and left the origin
// once.
func TestRunFetchesIntoContentStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Dir: t.TempDir(), Seeders: 1, AnnounceInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "cli/app", "v1", []int64{2<<20 + 9, 1 << 20}, 5)
	if err != nil {
		t.Fatal(err)
	}
	c.Origin.ResetCounts()
	var imageBytes int64
	for _, b := range img.Blobs() {
		imageBytes += b.Size
	}

	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag
	contentDir := t.TempDir()
	var stdout, stderr bytes.Buffer
	member, err := c.Member("containerd")
	if err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{
		"--tls-ca", member.CA, "--tls-cert", member.Cert, "--tls-key", member.Key,
		"--seeder", strings.Join(c.SeederAddrs(), ","),
		"--tracker", c.TrackerURL,
		"--data-dir", t.TempDir(),
		"--content", contentDir,
		"--peer-listen", "127.0.0.1:0",
		ref,
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	var gotRef, gotDigest string
	var blobs, n, peer int64
	if _, err := fmt.Sscanf(stdout.String(), "%s %s blobs=%d bytes=%d peer_bytes=%d", &gotRef, &gotDigest, &blobs, &n, &peer); err != nil {
		t.Fatalf("output %q: %v", stdout.String(), err)
	}
	if gotRef != ref || gotDigest != img.Manifest.Digest.String() || blobs != int64(len(img.Blobs())) || n != imageBytes || peer < imageBytes {
		t.Errorf("output %q; want %s %s blobs=%d bytes=%d and peer_bytes ≥ bytes", stdout.String(), ref, img.Manifest.Digest, len(img.Blobs()), imageBytes)
	}
	store, err := local.NewStore(contentDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append(img.Blobs(), img.Manifest) {
		info, err := store.Info(ctx, d.Digest)
		if err != nil || info.Size != d.Size {
			t.Errorf("content store: %s: %+v, %v", d.Digest, info, err)
		}
	}
	for _, b := range img.Blobs() {
		if got := c.Origin.BlobGETs(b.Digest); got != 1 {
			t.Errorf("origin served %s %d times, want 1", b.Digest, got)
		}
	}
}

func TestRunRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"--data-dir", "d", "--content", "c"},
		{"--data-dir", "d", "--content", "c", "a:1", "b:2"},
		{"--bogus"},
	} {
		var stderr bytes.Buffer
		if err := run(context.Background(), args, &stderr, &stderr); err != errUsage {
			t.Errorf("run(%q) = %v, want errUsage", args, err)
		}
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"--data-dir", t.TempDir(), "--content", t.TempDir(), "https://example.com/app"}, &stderr, &stderr)
	if err == nil || !strings.Contains(err.Error(), "https://example.com/app") {
		t.Errorf("malformed reference: %v", err)
	}
	err = run(context.Background(), []string{"--data-dir", t.TempDir(), "--content", t.TempDir(), "127.0.0.1:1/a:b"}, &stderr, &stderr)
	if err == nil || !strings.Contains(err.Error(), "seeders") {
		t.Errorf("no seeders: %v", err)
	}
}
