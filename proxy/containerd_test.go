package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/eagle-p2p/eagle/internal/testenv"
)

// TestContainerdMirror pulls through the proxy with containerd's own
// resolver and fetcher, configured the way containerd is on a node: a
// hosts.toml naming the proxy as a mirror of the origin. containerd then
// sends ?ns=<origin host> on every request and no /v2/ ping.
func TestContainerdMirror(t *testing.T) {
	reg := testenv.Origin(t)
	e := newEnvWithOrigin(t, reg, Config{Upstreams: []string{reg.URL}}, nil)
	im := e.push(t, "eagle/containerd", 600*kib, 1500)

	hostsDir := t.TempDir()
	dir := filepath.Join(hostsDir, reg.Host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The origin is only reachable through the proxy: its server entry is
	// a closed port, so a fallback would fail the test instead of hiding
	// a proxy failure.
	toml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n",
		closedPortURL(t), e.srv.URL)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}

	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(context.Background(), config.HostOptions{
			HostDir: config.HostDirFromRoot(hostsDir),
			UpdateClient: func(c *http.Client) error {
				c.Transport = tr
				return nil
			},
		}),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	ref := reg.Host + "/" + im.Repository + ":" + im.Tag
	name, desc, err := resolver.Resolve(ctx, ref)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", ref, err)
	}
	if desc.Digest != im.Manifest.Digest || desc.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("resolved %+v, want %s", desc, im.Manifest.Digest)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]ocispec.Descriptor{desc}, im.Blobs()...) {
		rc, err := fetcher.Fetch(ctx, d)
		if err != nil {
			t.Fatalf("Fetch %s: %v", d.Digest, err)
		}
		verifier := d.Digest.Verifier()
		n, err := io.Copy(verifier, rc)
		rc.Close()
		if err != nil || n != d.Size || !verifier.Verified() {
			t.Fatalf("Fetch %s: %d of %d bytes, verified %v, err %v", d.Digest, n, d.Size, verifier.Verified(), err)
		}
	}
	// The blobs came from the blob source, which fetched each from the
	// origin once.
	if got, want := e.src.fetches.Load(), int64(len(im.Blobs())); got != want {
		t.Fatalf("blob source served %d fetches, want %d", got, want)
	}
	for _, b := range im.Blobs() {
		if n := reg.BlobGETs(b.Digest); n != 1 {
			t.Fatalf("origin served %s %d times, want 1", b.Digest, n)
		}
	}

	// A ranged read as containerd does it when it resumes a download.
	layer := im.Layers[0]
	rc, err := fetcher.Fetch(ctx, layer)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	defer rc.Close()
	if seeker, ok := rc.(io.Seeker); ok {
		if _, err := seeker.Seek(layer.Size-1000, io.SeekStart); err != nil {
			t.Fatalf("Seek: %v", err)
		}
	} else {
		t.Fatalf("containerd's blob reader %T cannot seek", rc)
	}
	tail, err := io.ReadAll(rc)
	if err != nil || len(tail) != 1000 {
		t.Fatalf("ranged read: %d bytes, %v", len(tail), err)
	}
	full := e.blobBytes(t, im.Repository, layer.Digest)
	if string(tail) != string(full[layer.Size-1000:]) {
		t.Fatal("ranged read differs from the origin's bytes")
	}
}
