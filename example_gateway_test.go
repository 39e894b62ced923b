package eagle_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle"
	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/proxy"
)

// A registry gateway mounts a node in front of its own router: the
// gateway keeps its routes (a health check, manifests relayed from the
// registry its own way) and the node takes the blob reads, which come
// from the swarm instead of the registry.
func ExampleNode_Middleware() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "eagle-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A cluster to join: the origin registry (distribution/v3), a tracker
	// and two seeders, all in this process.
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	image, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "team/app", "v1", []int64{1 << 20}, 1)
	if err != nil {
		log.Fatal(err)
	}
	member, err := c.Member("gateway")
	if err != nil {
		log.Fatal(err)
	}

	node, err := eagle.NewNode(eagle.Config{
		DataDir: dir + "/gateway",
		Seeders: c.SeederAddrs(),
		P2P:     p2p.Config{ListenAddr: "127.0.0.1:0", Trackers: []string{c.TrackerURL}},
		Proxy:   proxy.Config{DefaultUpstream: c.Origin.URL},
		TLS:     member,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	// The gateway's own router.
	registry, err := url.Parse(c.Origin.URL)
	if err != nil {
		log.Fatal(err)
	}
	var relayed atomic.Int64
	relay := httputil.NewSingleHostReverseProxy(registry)
	router := http.NewServeMux()
	router.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	router.Handle("/v2/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		relayed.Add(1)
		relay.ServeHTTP(w, r)
	}))
	gateway := httptest.NewServer(node.Middleware(router))
	defer gateway.Close()

	get := func(path string) []byte {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, gateway.URL+path, nil)
		if err != nil {
			log.Fatal(err)
		}
		req.Header.Set("Accept", image.Manifest.MediaType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			log.Fatalf("GET %s: %s, %v", path, resp.Status, err)
		}
		return b
	}
	fmt.Printf("healthz: %s\n", get("/healthz"))
	get("/v2/" + image.Repository + "/manifests/v1")
	layer := image.Layers[0]
	b := get("/v2/" + image.Repository + "/blobs/" + layer.Digest.String())
	fmt.Printf("requests relayed by the gateway's own handler: %d\n", relayed.Load())
	fmt.Printf("layer: %d bytes, digest matches: %v, served by the origin %d time(s)\n",
		len(b), digest.FromBytes(b) == layer.Digest, c.Origin.BlobGETs(layer.Digest))
	// Output:
	// healthz: ok
	// requests relayed by the gateway's own handler: 1
	// layer: 1048576 bytes, digest matches: true, served by the origin 1 time(s)
}
