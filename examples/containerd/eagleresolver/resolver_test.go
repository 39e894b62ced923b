package eagleresolver_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle"
	"github.com/eagle-p2p/eagle/examples/containerd/eagleresolver"
	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/proxy"
)

func TestMain(m *testing.M) {
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

var quiet = slog.New(slog.DiscardHandler)

// setup starts a cluster with one seeder and no agents, and pushes an image.
func setup(t *testing.T, ctx context.Context) (*cluster.Cluster, origin.Image) {
	t.Helper()
	c, err := cluster.Start(ctx, cluster.Options{Dir: t.TempDir(), Seeders: 1, AnnounceInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "demo/app", "v1", []int64{4<<20 + 5, 2 << 20}, 3)
	if err != nil {
		t.Fatal(err)
	}
	c.Origin.ResetCounts()
	return c, img
}

// newNode embeds a node in the test process, as a program would.
func newNode(t *testing.T, c *cluster.Cluster, seeders []string) *eagle.Node {
	t.Helper()
	node, err := eagle.NewNode(eagle.Config{
		DataDir: t.TempDir(),
		Seeders: seeders,
		P2P:     p2p.Config{ListenAddr: "127.0.0.1:0", Trackers: []string{c.TrackerURL}},
		TLS:     member(t, c, "node"),
		// The node's registry endpoint is not served here, but its
		// configuration names the registry all the same.
		Proxy:  proxy.Config{DefaultUpstream: c.Origin.URL},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := node.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	return node
}

// fetchImage resolves ref and fetches the manifest and every blob it names
// into a fresh containerd content store, with containerd's own dispatcher
// and fetch handler.
func fetchImage(ctx context.Context, t *testing.T, r *eagleresolver.Resolver, ref string) (content.Store, ocispec.Descriptor, error) {
	t.Helper()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	name, desc, err := r.Resolve(ctx, ref)
	if err != nil {
		return nil, desc, err
	}
	f, err := r.Fetcher(ctx, name)
	if err != nil {
		return nil, desc, err
	}
	err = images.Dispatch(ctx, images.Handlers(remotes.FetchHandler(store, f), images.ChildrenHandler(store)), nil, desc)
	return store, desc, err
}

// checkStore checks that the store holds every blob of img, each re-hashed
// from the store's own copy.
func checkStore(ctx context.Context, t *testing.T, store content.Store, img origin.Image) {
	t.Helper()
	for _, d := range append(img.Blobs(), img.Manifest) {
		ra, err := store.ReaderAt(ctx, d)
		if err != nil {
			t.Fatalf("store has no %s: %v", d.Digest, err)
		}
		got, err := digest.SHA256.FromReader(content.NewReader(ra))
		ra.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got != d.Digest || ra.Size() != d.Size {
			t.Errorf("store holds %d bytes hashing to %s for %s (%d bytes)", ra.Size(), got, d.Digest, d.Size)
		}
	}
}

func blobBytes(img origin.Image) int64 {
	var n int64
	for _, b := range img.Blobs() {
		n += b.Size
	}
	return n
}

// Two embedded nodes fetch an image into containerd content stores: the
// blobs come through the swarm, the second node's partly from the first,
// and the origin serves each blob once.
func TestFetchThroughEagle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, img := setup(t, ctx)
	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag

	for i := range 2 {
		node := newNode(t, c, c.SeederAddrs())
		r, err := eagleresolver.New(eagleresolver.Config{}, node.Engine)
		if err != nil {
			t.Fatal(err)
		}
		store, desc, err := fetchImage(ctx, t, r, ref)
		if err != nil {
			t.Fatalf("node %d: fetch %s: %v", i, ref, err)
		}
		if desc.Digest != img.Manifest.Digest {
			t.Fatalf("resolved %s, pushed %s", desc.Digest, img.Manifest.Digest)
		}
		checkStore(ctx, t, store, img)
		st := node.Engine.Stats()
		if got := st.BytesFromSeeders + st.BytesFromAgents; got < blobBytes(img) {
			t.Errorf("node %d received %d bytes from peers, want every blob (%d)", i, got, blobBytes(img))
		}
		for _, b := range img.Blobs() {
			if n := c.Origin.BlobGETs(b.Digest); n != 1 {
				t.Errorf("after node %d: origin served %s %d times, want 1", i, b.Digest, n)
			}
		}
	}
}

// A blob the origin does not have is NotFound, and a descriptor whose size
// is wrong is refused; neither falls back to the registry.
func TestFetchErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, img := setup(t, ctx)
	node := newNode(t, c, c.SeederAddrs())
	r, err := eagleresolver.New(eagleresolver.Config{Fallback: true, Logger: quiet}, node.Engine)
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.Fetcher(ctx, c.Origin.Host+"/"+img.Repository+":"+img.Tag)
	if err != nil {
		t.Fatal(err)
	}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("not pushed"), Size: 10}
	if rc, err := f.Fetch(ctx, missing); !errdefs.IsNotFound(err) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("missing blob: %v, want NotFound", err)
	}
	wrong := img.Layers[1]
	wrong.Size++
	if rc, err := f.Fetch(ctx, wrong); !errors.Is(err, eagleresolver.ErrSizeMismatch) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("wrong size: %v, want ErrSizeMismatch", err)
	}
	if n := c.Origin.BlobGETs(wrong.Digest); n != 1 {
		t.Errorf("origin served %s %d times, want once (to the seeder, not directly)", wrong.Digest, n)
	}
	if _, err := eagleresolver.New(eagleresolver.Config{}, nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	if _, err := r.Fetcher(ctx, "not a reference"); err == nil {
		t.Error("Fetcher accepted a malformed reference")
	}
}

// With no seeder reachable, a fetch fails, unless Fallback is set: then
// the blobs come straight from the registry.
func TestFallbackWhenEagleIsDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, img := setup(t, ctx)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	node := newNode(t, c, []string{dead})
	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag

	strict, err := eagleresolver.New(eagleresolver.Config{}, node.Engine)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := fetchImage(ctx, t, strict, ref); err == nil {
		t.Fatal("fetch without a seeder and without fallback succeeded")
	}
	if n := c.Origin.TotalBlobGETs(); n != 0 {
		t.Fatalf("without fallback the origin served %d blobs", n)
	}

	lenient, err := eagleresolver.New(eagleresolver.Config{Fallback: true, Logger: quiet}, node.Engine)
	if err != nil {
		t.Fatal(err)
	}
	store, _, err := fetchImage(ctx, t, lenient, ref)
	if err != nil {
		t.Fatalf("fetch with fallback: %v", err)
	}
	checkStore(ctx, t, store, img)
	for _, b := range img.Blobs() {
		if n := c.Origin.BlobGETs(b.Digest); n != 1 {
			t.Errorf("origin served %s %d times, want once (directly)", b.Digest, n)
		}
	}
	if st := node.Engine.Stats(); st.BytesFromSeeders+st.BytesFromAgents != 0 {
		t.Errorf("a node without seeders received %+v", st)
	}
}

// A registry that wants a token (docker token auth): the resolver logs in
// as containerd does and the seeder fetches with that token. A blob the
// node holds is handed only to a caller whose credentials the registry
// accepts.
func TestPrivateRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ts, err := origin.StartTokenServer(ctx, map[string]string{"ci": "secret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ts.Close(); err != nil {
			t.Errorf("close token server: %v", err)
		}
	})
	c, err := cluster.Start(ctx, cluster.Options{Dir: t.TempDir(), Seeders: 1, AnnounceInterval: time.Second,
		Origin: origin.Options{Token: ts.Auth()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	pushTransport := &http.Transport{}
	t.Cleanup(pushTransport.CloseIdleConnections)
	pushClient := &http.Client{Transport: origin.NewAuthTransport(pushTransport, "ci", "secret")}
	img, err := origin.PushRandomImage(ctx, pushClient, c.Origin.URL, "private/app", "v1", []int64{2<<20 + 1}, 8)
	if err != nil {
		t.Fatal(err)
	}
	c.Origin.ResetCounts()
	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag
	hosts := func(user, password string) docker.RegistryHosts {
		creds := func(string) (string, string, error) { return user, password, nil }
		return docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost),
			docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(creds))))
	}
	node := newNode(t, c, c.SeederAddrs())
	layer := img.Layers[0]

	r, err := eagleresolver.New(eagleresolver.Config{Hosts: hosts("ci", "secret"), Logger: quiet}, node.Engine)
	if err != nil {
		t.Fatal(err)
	}
	tokens := ts.Issued()
	store, _, err := fetchImage(ctx, t, r, ref)
	if err != nil {
		t.Fatalf("fetch with credentials: %v", err)
	}
	checkStore(ctx, t, store, img)
	if ts.Issued() == tokens {
		t.Error("no token was issued for the pull")
	}
	if st := node.Engine.Stats(); st.BytesFromSeeders+st.BytesFromAgents < blobBytes(img) {
		t.Errorf("the node received %+v, want every blob (%d bytes) from peers", st, blobBytes(img))
	}

	// readLayer fetches the layer through a fresh resolver that has not
	// resolved anything: its first request meets the registry's challenge.
	readLayer := func(opts eagleresolver.Config) error {
		t.Helper()
		opts.Logger = quiet
		r, err := eagleresolver.New(opts, node.Engine)
		if err != nil {
			t.Fatal(err)
		}
		f, err := r.Fetcher(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := f.Fetch(ctx, layer)
		if err != nil {
			return err
		}
		defer rc.Close()
		got, err := digest.SHA256.FromReader(rc)
		if err != nil {
			return err
		}
		if got != layer.Digest {
			t.Fatalf("read %s, want %s", got, layer.Digest)
		}
		return nil
	}
	if err := readLayer(eagleresolver.Config{Hosts: hosts("ci", "secret")}); err != nil {
		t.Errorf("a fresh resolver with credentials: %v", err)
	}
	for name, h := range map[string]docker.RegistryHosts{
		"no credentials":     hosts("", ""),
		"a wrong password":   hosts("ci", "guess"),
		"default registries": nil,
	} {
		if err := readLayer(eagleresolver.Config{Hosts: h, Fallback: true}); err == nil {
			t.Errorf("with %s the node handed out a blob of a private repository", name)
		}
	}
	for _, b := range img.Blobs() {
		if n := c.Origin.BlobGETs(b.Digest); n != 1 {
			t.Errorf("origin served %s %d times, want 1", b.Digest, n)
		}
	}
}

// member issues cluster credentials for name.
func member(t *testing.T, c *cluster.Cluster, name string) mtls.Config {
	t.Helper()
	m, err := c.Member(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
