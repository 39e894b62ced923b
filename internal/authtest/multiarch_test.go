package authtest

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/pull"
)

// A multi-platform image: the index passes through the agents unchanged,
// each agent pulls the platform it asks for, each platform's layers travel
// over P2P and leave the origin once, and no agent downloads a platform it
// did not ask for.
func TestMultiArchPull(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	c := startCluster(t, 4, origin.Options{Htpasswd: users})
	amd64 := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	ix, err := origin.PushRandomIndex(ctx, authClient(t, "alice", users["alice"]), c.Origin.URL, "multi/app", "v1",
		[]ocispec.Platform{amd64, arm64}, []int64{3 << 20, 1<<20 + 77}, 21)
	if err != nil {
		t.Fatalf("push index: %v", err)
	}
	images := map[string]origin.Image{"amd64": ix.Images[0], "arm64": ix.Images[1]}
	c.Origin.ResetCounts()

	// The index through an agent is the origin's, byte for byte.
	indexPath := "/v2/multi/app/manifests/v1"
	hdr := basic("alice", users["alice"])
	hdr.Set("Accept", ocispec.MediaTypeImageIndex)
	for _, base := range []string{c.Origin.URL, c.Agents[0].URL} {
		r := request(t, ctx, http.MethodGet, base+indexPath, hdr)
		if r.status != http.StatusOK || r.digest != ix.Descriptor.Digest || r.size != ix.Descriptor.Size ||
			r.header.Get("Content-Type") != ocispec.MediaTypeImageIndex {
			t.Fatalf("GET index at %s: %d %q, %s %d bytes; want 200, %s %d bytes", base, r.status, r.header.Get("Content-Type"), r.digest, r.size, ix.Descriptor.Digest, ix.Descriptor.Size)
		}
	}

	ref := c.Origin.Host + "/" + ix.Repository + ":" + ix.Tag
	a := c.Agents
	jobs := []job{
		{a[0], amd64}, {a[1], arm64},
		{a[2], amd64}, {a[2], arm64},
		{a[3], amd64}, {a[3], arm64},
	}
	creds := &credentials{user: "bob", password: users["bob"]}
	for i, r := range pullAll(t, ctx, c, ref, creds, jobs) {
		im := images[jobs[i].platform.Architecture]
		if r.Index.Digest != ix.Descriptor.Digest || r.Manifest.Digest != im.Manifest.Digest ||
			r.Bytes != sizeOf(im.Blobs()) || len(r.Blobs) != len(im.Blobs()) {
			t.Errorf("%s pulling %s: index %s, manifest %s, %d bytes; want %s, %s, %d",
				jobs[i].agent.Name, platforms.Format(jobs[i].platform), r.Index.Digest, r.Manifest.Digest, r.Bytes,
				ix.Descriptor.Digest, im.Manifest.Digest, sizeOf(im.Blobs()))
		}
	}

	amdBytes, armBytes := sizeOf(images["amd64"].Blobs()), sizeOf(images["arm64"].Blobs())
	for i, want := range []struct{ min, max int64 }{
		{amdBytes, amdBytes + armBytes - 1}, // agent-0: amd64 only
		{armBytes, amdBytes + armBytes - 1}, // agent-1: arm64 only
		{amdBytes + armBytes, -1},
		{amdBytes + armBytes, -1},
	} {
		st := a[i].Node.Engine.Stats()
		got := st.BytesFromAgents + st.BytesFromSeeders
		if got < want.min || (want.max >= 0 && got > want.max) {
			t.Errorf("%s received %d bytes from peers, want %d..%d", a[i].Name, got, want.min, want.max)
		}
	}
	// A platform the index does not have.
	hosts := t.TempDir()
	if err := pull.WriteHostsTOML(hosts, c.Origin.Host, a[0].URL); err != nil {
		t.Fatal(err)
	}
	s390x := ocispec.Platform{OS: "linux", Architecture: "s390x"}
	if _, err := pull.Pull(ctx, ref, pull.Options{HostsDir: hosts, Platform: s390x, Credentials: creds.get}); !errors.Is(err, pull.ErrNoPlatform) {
		t.Errorf("pull for linux/s390x: %v, want ErrNoPlatform", err)
	}

	var all int64
	for _, im := range ix.Images {
		for _, b := range im.Blobs() {
			all += b.Size
			if n := c.Origin.BlobGETs(b.Digest); n != 1 {
				t.Errorf("origin served blob %s (%s) %d times, want 1", b.Digest, platforms.Format(*im.Manifest.Platform), n)
			}
		}
	}
	if got := c.Origin.BlobBytes(); got != all {
		t.Errorf("origin served %d blob bytes, want one copy of each platform's (%d)", got, all)
	}
}
