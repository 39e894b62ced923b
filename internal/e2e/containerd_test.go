package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/proxy"
)

// TestContainerdPull: two containerd daemons pull the origin's image with
// "ctr images pull --hosts-dir", each hosts directory written by
// proxy.WriteHostsTOML (what "eagle agent --write-hosts-toml" runs) and
// naming its own agent as the origin's mirror. containerd sends
// ?ns=<origin> and no /v2/ ping.
func TestContainerdPull(t *testing.T) {
	requireTools(t, "containerd", "ctr")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	g := newEgressGuard(t)
	c := startCluster(t, ctx)
	img := pushImage(t, ctx, c, "eagle/ctr", "v1", 303)
	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag

	daemons := []*containerd{startContainerd(t, g), startContainerd(t, g)}
	errs := make([]error, len(daemons))
	var wg sync.WaitGroup
	for i, d := range daemons {
		hosts := writeHosts(t, c, c.Agents[i])
		wg.Go(func() { errs[i] = d.pull(ctx, hosts, ref) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("containerd %d: %v", i, err)
		}
	}
	for _, d := range daemons {
		checkContainerdImage(t, ctx, d, ref, img)
	}
	checkOriginOnce(t, c, img)
	checkP2P(t, img, c.Agents...)
}

// TestContainerdFallbackWhenAgentDown: with the hosts.toml that names an
// agent as the mirror, and that agent stopped, containerd pulls from the
// origin on its own.
func TestContainerdFallbackWhenAgentDown(t *testing.T) {
	requireTools(t, "containerd", "ctr")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	g := newEgressGuard(t)
	c := startCluster(t, ctx)
	img := pushImage(t, ctx, c, "eagle/fallback", "v1", 404)
	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag
	d := startContainerd(t, g)

	hosts := writeHosts(t, c, c.Agents[0])
	if err := c.Agents[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.pull(ctx, hosts, ref); err != nil {
		t.Fatalf("pull with the agent down: %v", err)
	}
	checkContainerdImage(t, ctx, d, ref, img)
	// The bytes came from the origin, once, to containerd itself: no
	// seeder fetched them.
	checkOriginOnce(t, c, img)
	for _, s := range c.Seeders {
		if st := s.Engine.Stats(); st.BytesUploaded != 0 {
			t.Errorf("seeder uploaded %d bytes with its only client down", st.BytesUploaded)
		}
	}
}

// writeHosts writes a containerd hosts directory that makes agent the
// mirror of the origin.
func writeHosts(t *testing.T, c *cluster.Cluster, agent *cluster.Agent) string {
	t.Helper()
	dir := t.TempDir()
	if err := proxy.WriteHostsTOML(dir, agent.URL, []string{c.Origin.URL}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkContainerdImage checks that containerd recorded ref with img's
// manifest digest and holds every blob of it in its content store (where
// each was verified against its digest on commit).
func checkContainerdImage(t *testing.T, ctx context.Context, d *containerd, ref string, img origin.Image) {
	t.Helper()
	got, err := d.imageDigest(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got != img.Manifest.Digest.String() {
		t.Errorf("%s: containerd recorded manifest %s, want %s", ref, got, img.Manifest.Digest)
	}
	content, err := d.contentDigests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range append(img.Blobs(), img.Manifest) {
		if !content[b.Digest.String()] {
			t.Errorf("%s: blob %s is not in containerd's content store", ref, b.Digest)
		}
	}
}
