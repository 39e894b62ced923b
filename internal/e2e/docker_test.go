package e2e

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/origin"
)

// TestDockerPullDirect: two Docker engines pull
// 127.0.0.1:<agent port>/<repo>:<tag>, each through its own agent, at the
// same time; the agents' default upstream is the origin. dockerd talks to
// the agent as to any registry (it pings /v2/ and sends no ns).
func TestDockerPullDirect(t *testing.T) {
	requireTools(t, "dockerd", "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	g := newEgressGuard(t)
	c := startCluster(t, ctx)
	img := pushImage(t, ctx, c, "eagle/direct", "v1", 101)
	daemons := []*dockerd{startDockerd(t, g, nil), startDockerd(t, g, nil)}

	repos := make([]string, len(daemons))
	for i := range daemons {
		repos[i] = c.Agents[i].Host + "/" + img.Repository
	}
	dockerPullAll(t, ctx, daemons, func(i int) string { return repos[i] + ":" + img.Tag })
	for i, d := range daemons {
		checkDockerImage(t, ctx, d, repos[i]+":"+img.Tag, repos[i], img)
	}
	checkOriginOnce(t, c, img)
	checkP2P(t, img, c.Agents...)
}

// TestDockerRegistryMirror: two Docker engines with an agent in
// daemon.json's registry-mirrors pull an official image by its short name,
// "docker pull <name>", which Docker sends to the mirror as
// library/<name>. The origin stands in for Docker Hub: it is the agents'
// default upstream and holds the image as library/<name>. Were the mirror
// to fail, dockerd would go to registry-1.docker.io, which the egress guard
// refuses and reports.
func TestDockerRegistryMirror(t *testing.T) {
	requireTools(t, "dockerd", "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	g := newEgressGuard(t)
	c := startCluster(t, ctx)
	const name = "eagle-mirrored"
	img := pushImage(t, ctx, c, "library/"+name, "latest", 202)
	daemons := make([]*dockerd, 2)
	for i := range daemons {
		daemons[i] = startDockerd(t, g, map[string]any{"registry-mirrors": []string{c.Agents[i].URL}})
	}

	dockerPullAll(t, ctx, daemons, func(int) string { return name })
	for _, d := range daemons {
		checkDockerImage(t, ctx, d, name, name, img)
	}
	checkOriginOnce(t, c, img)
	checkP2P(t, img, c.Agents...)
}

// dockerPullAll runs "docker pull ref(i)" on every daemon at once.
func dockerPullAll(t *testing.T, ctx context.Context, daemons []*dockerd, ref func(i int) string) {
	t.Helper()
	errs := make([]error, len(daemons))
	var wg sync.WaitGroup
	for i, d := range daemons {
		wg.Go(func() { _, errs[i] = d.docker(ctx, "pull", ref(i)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("dockerd %d: %v", i, err)
		}
	}
}

// checkDockerImage checks that the daemon holds ref as img: the image ID
// is the config's digest, the manifest digest is recorded as
// repo@<digest>, and the layers' diff IDs are img's (uncompressed) layers.
func checkDockerImage(t *testing.T, ctx context.Context, d *dockerd, ref, repo string, img origin.Image) {
	t.Helper()
	got, err := d.inspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != img.Config.Digest.String() {
		t.Errorf("%s: image ID %s, want the config digest %s", ref, got.ID, img.Config.Digest)
	}
	if want := repo + "@" + img.Manifest.Digest.String(); !slices.Contains(got.RepoDigests, want) {
		t.Errorf("%s: RepoDigests %v, want %s", ref, got.RepoDigests, want)
	}
	var layers []string
	for _, l := range img.Layers {
		layers = append(layers, l.Digest.String())
	}
	if !slices.Equal(got.RootFS.Layers, layers) {
		t.Errorf("%s: layers %v, want %v", ref, got.RootFS.Layers, layers)
	}
}
