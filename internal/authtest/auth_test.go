package authtest

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/pull"
)

var (
	users       = map[string]string{"alice": "s3cret", "bob": "hunter2"}
	layerSizes  = []int64{4 << 20, 2<<20 + 123, 1 << 20}
	pullTimeout = 2 * time.Minute
)

// An origin with htpasswd basic auth: 401 and its challenge pass through
// the agents untouched, containerd logs in at the agents as at a registry,
// the layers travel over P2P with the seeders fetching each from the origin
// once with the client's credentials, and a wrong password never gets the
// cached bytes.
func TestBasicAuthPullThroughCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	c := startCluster(t, 4, origin.Options{Htpasswd: users})
	img, err := origin.PushRandomImage(ctx, authClient(t, "alice", users["alice"]), c.Origin.URL, "auth/basic", "v1", layerSizes, 11)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	checkAuthPull(t, ctx, c, img, &credentials{user: "bob", password: users["bob"]},
		basic("alice", users["alice"]),
		map[string]http.Header{
			"wrong password": basic("alice", "hunter2"),
			"unknown user":   basic("eve", users["alice"]),
			"bearer":         {"Authorization": {"Bearer " + strings.Repeat("x", 40)}},
		})
}

// An origin with docker token auth and a token server: the same, with
// containerd fetching tokens from the realm the agents pass on.
func TestTokenAuthPullThroughCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	ts, err := origin.StartTokenServer(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ts.Close(); err != nil {
			t.Errorf("close token server: %v", err)
		}
	})
	c := startCluster(t, 4, origin.Options{Token: ts.Auth()})
	img, err := origin.PushRandomImage(ctx, authClient(t, "alice", users["alice"]), c.Origin.URL, "auth/token", "v1", layerSizes, 12)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	pushTokens := ts.Issued()

	otherRepo := bearer(t, ctx, ts, "alice", "repository:auth/other:pull")
	checkAuthPull(t, ctx, c, img, &credentials{user: "bob", password: users["bob"]},
		bearer(t, ctx, ts, "alice", "repository:auth/token:pull"),
		map[string]http.Header{
			"token for another repository": otherRepo,
			"forged token":                 {"Authorization": {otherRepo.Get("Authorization")[:len(otherRepo.Get("Authorization"))-4] + "AAAA"}},
			"basic credentials":            basic("alice", users["alice"]),
		})
	if ts.Issued() <= pushTokens+2 {
		t.Errorf("the token server issued no token for the pulls (%d in all, %d for the push)", ts.Issued(), pushTokens)
	}
}

// bearer returns an Authorization header with a token for scope, fetched
// from ts with user's password the way containerd does.
func bearer(t *testing.T, ctx context.Context, ts *origin.TokenServer, user, scope string) http.Header {
	t.Helper()
	tok, err := ts.Token(ctx, user, users[user], scope)
	if err != nil {
		t.Fatal(err)
	}
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// checkAuthPull checks a pull of img through c's agents from an origin that
// requires authentication. creds are the credentials containerd logs in
// with; good is an Authorization the origin accepts for img's repository,
// and wrong are ones it refuses.
func checkAuthPull(t *testing.T, ctx context.Context, c *cluster.Cluster, img origin.Image, creds *credentials, good http.Header, wrong map[string]http.Header) {
	t.Helper()
	c.Origin.ResetCounts()
	layer := img.Layers[0]
	blobPath := "/v2/" + img.Repository + "/blobs/" + layer.Digest.String()
	manifestPath := "/v2/" + img.Repository + "/manifests/" + img.Tag
	accept := http.Header{"Accept": {ocispec.MediaTypeImageManifest}}

	// Anonymous: the origin's 401 and challenge, byte for byte, for a blob
	// (answered by the proxy) and for a manifest (passed through).
	for _, path := range []string{blobPath, manifestPath} {
		atOrigin := request(t, ctx, http.MethodGet, c.Origin.URL+path, accept)
		atAgent := request(t, ctx, http.MethodGet, c.Agents[0].URL+path, accept)
		want := atOrigin.header.Values("WWW-Authenticate")
		if atOrigin.status != http.StatusUnauthorized || len(want) == 0 {
			t.Fatalf("anonymous GET %s at the origin: %d %q, want 401 with a challenge", path, atOrigin.status, want)
		}
		if got := atAgent.header.Values("WWW-Authenticate"); atAgent.status != http.StatusUnauthorized || !slices.Equal(got, want) {
			t.Errorf("anonymous GET %s through an agent: %d %q, want 401 %q", path, atAgent.status, got, want)
		}
	}
	if n := c.Origin.TotalBlobGETs(); n != 0 {
		t.Fatalf("anonymous requests got %d blobs from the origin", n)
	}

	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag
	var jobs []job
	agentHosts := map[string]bool{}
	for _, a := range c.Agents {
		jobs = append(jobs, job{agent: a})
		agentHosts[a.Host] = true
	}
	imageBytes := sizeOf(img.Blobs())
	for i, r := range pullAll(t, ctx, c, ref, creds, jobs) {
		a := c.Agents[i]
		if r.Manifest.Digest != img.Manifest.Digest || r.Bytes != imageBytes || len(r.Blobs) != len(img.Blobs()) {
			t.Errorf("%s pulled manifest %s, %d blobs, %d bytes; want %s, %d, %d",
				a.Name, r.Manifest.Digest, len(r.Blobs), r.Bytes, img.Manifest.Digest, len(img.Blobs()), imageBytes)
		}
		st := a.Node.Engine.Stats()
		if got := st.BytesFromAgents + st.BytesFromSeeders; got < imageBytes {
			t.Errorf("%s received %d bytes from peers, want the whole image (%d)", a.Name, got, imageBytes)
		}
	}
	// containerd logged in at the agents (the challenges came from them),
	// and never turned to the origin itself.
	asked := creds.askedHosts()
	if len(asked) == 0 {
		t.Error("containerd never asked for credentials")
	}
	for host := range asked {
		if !agentHosts[host] {
			t.Errorf("containerd asked for credentials for %s, which is not an agent", host)
		}
	}
	// Each blob left the origin once: to a seeder, which the origin would
	// have refused without the client's credentials.
	for _, b := range img.Blobs() {
		if n := c.Origin.BlobGETs(b.Digest); n != 1 {
			t.Errorf("origin served blob %s %d times, want 1", b.Digest, n)
		}
	}
	if got := c.Origin.BlobBytes(); got != imageBytes {
		t.Errorf("origin served %d blob bytes, want one copy (%d)", got, imageBytes)
	}

	// The layer is now cached on every agent: wrong credentials still get
	// the origin's refusal, never the bytes.
	for name, h := range wrong {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			r := request(t, ctx, method, c.Agents[0].URL+blobPath, h)
			if (r.status != http.StatusUnauthorized && r.status != http.StatusForbidden) || r.digest == layer.Digest || r.size >= layer.Size {
				t.Errorf("%s %s: %d, %d bytes; want 401/403 and no blob", name, method, r.status, r.size)
			}
			if r.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: 401 without a challenge", name, method)
			}
		}
	}
	// A pull with a wrong password fails, at the agent and at the origin
	// containerd falls back to, and fetches nothing.
	before := c.Origin.TotalBlobGETs()
	hosts := t.TempDir()
	if err := pull.WriteHostsTOML(hosts, c.Origin.Host, c.Agents[1].URL); err != nil {
		t.Fatal(err)
	}
	wrongCreds := &credentials{user: creds.user, password: creds.password + "-wrong"}
	if _, err := pull.Pull(ctx, ref, pull.Options{HostsDir: hosts, Credentials: wrongCreds.get}); err == nil {
		t.Error("a pull with a wrong password succeeded")
	}
	if after := c.Origin.TotalBlobGETs(); after != before {
		t.Errorf("a pull with a wrong password got %d blobs from the origin", after-before)
	}

	// Good credentials get it from the cache.
	r := request(t, ctx, http.MethodGet, c.Agents[0].URL+blobPath, good)
	if r.status != http.StatusOK || r.digest != layer.Digest || r.size != layer.Size {
		t.Errorf("GET with good credentials: %d, %s, %d bytes; want 200, %s", r.status, r.digest, r.size, layer.Digest)
	}
	if n := c.Origin.BlobGETs(layer.Digest); n != 1 {
		t.Errorf("origin served the cached layer again (%d GETs)", n)
	}
}
