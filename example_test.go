package eagle_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle"
	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/proxy"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage/filesystem"
	"github.com/eagle-p2p/eagle/tracker"
)

// One process embeds a whole cluster: a tracker, a seeder and a node that
// asks that seeder for metainfo directly, with no gRPC listener anywhere —
// a registry gateway that is also its cluster's seeder, say. Every plane
// that is left runs mutual TLS between cluster members: the tracker, and
// the peer wire over which the node gets the blob from the seeder's peer.
func Example_embedded() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "eagle-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)

	// The origin: a real registry (distribution/v3, in this process) with
	// one image of one 1 MiB layer.
	registry, err := origin.Start(ctx, origin.Options{Dir: filepath.Join(dir, "origin")})
	if err != nil {
		log.Fatal(err)
	}
	defer registry.Close()
	image, err := origin.PushRandomImage(ctx, nil, registry.URL, "team/app", "v1", []int64{1 << 20}, 1)
	if err != nil {
		log.Fatal(err)
	}
	layer := image.Layers[0]

	// Cluster membership: a certificate from the cluster CA for each part
	// (eagle certs writes the same files for a real cluster).
	ca, err := mtls.NewCA("example cluster CA", time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	member := func(name string) mtls.Config {
		cfg, err := ca.WriteMember(filepath.Join(dir, "tls"), name)
		if err != nil {
			log.Fatal(err)
		}
		return cfg
	}

	// The tracker: an http.Handler in one call, served over TLS, its
	// announces to members only.
	trk, err := tracker.New(tracker.Config{Logger: quiet}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer trk.Close()
	creds, err := mtls.Load(member("tracker"))
	if err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	trackerServer := &http.Server{Handler: creds.RequireMember(trk), TLSConfig: creds.ServerConfigOptionalClient()}
	go trackerServer.Serve(tls.NewListener(lis, trackerServer.TLSConfig))
	defer trackerServer.Close()
	announce := "https://" + lis.Addr().String() + "/announce"

	// The seeder: its store, its peer and its metainfo service in one
	// call. Nobody outside this process asks it for metainfo, so it serves
	// no gRPC (sd.Serve(listener) would).
	sd, err := seeder.New(ctx, seeder.SeederConfig{
		DataDir: filepath.Join(dir, "seeder"),
		P2P:     p2p.Config{ListenAddr: "127.0.0.1:0", Trackers: []string{announce}},
		Service: seeder.Config{AllowedUpstreams: []string{registry.Host}},
		TLS:     member("seeder"),
		Logger:  quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sd.Close()

	// The node takes the seeder itself as its metainfo source, instead
	// of seeder addresses.
	node, err := eagle.NewNode(eagle.Config{
		DataDir:  filepath.Join(dir, "node"),
		MetaInfo: sd,
		P2P:      p2p.Config{ListenAddr: "127.0.0.1:0", Trackers: []string{announce}},
		Proxy:    proxy.Config{DefaultUpstream: registry.URL},
		TLS:      member("node"),
		Logger:   quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	// Pull the layer as the node's registry endpoint would. The origin is
	// asked whether this caller (anonymous here; a real caller's
	// Authorization goes in the Ref) may read it, the seeder fetches it
	// from the origin, and the node gets it from the seeder's peer, every
	// piece verified on arrival.
	b, err := node.Engine.Fetch(ctx, blob.Ref{Upstream: registry.URL, Repository: image.Repository, Digest: layer.Digest})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	verifier := layer.Digest.Verifier()
	n, err := io.Copy(verifier, b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("pulled %d bytes, digest verified: %v, origin served it %d time(s)\n",
		n, verifier.Verified(), registry.BlobGETs(layer.Digest))
	// Output: pulled 1048576 bytes, digest verified: true, origin served it 1 time(s)
}

// A node takes one metainfo source: seeder addresses or, in code, a
// seeder in the process.
func TestNodeConfigMetaInfo(t *testing.T) {
	base := eagle.Config{
		DataDir: t.TempDir(),
		P2P:     p2p.Config{Trackers: []string{"http://127.0.0.1:1/announce"}},
		Proxy:   proxy.Config{DefaultUpstream: "http://127.0.0.1:1"},
		TLS:     mtls.Config{Insecure: true},
		Logger:  slog.New(slog.DiscardHandler),
	}
	for _, tc := range []struct {
		name     string
		seeders  []string
		metaInfo p2p.MetaInfoSource
		want     string // in the error; "" for none
	}{
		{"neither", nil, nil, "seeders"},
		{"both", []string{"127.0.0.1:1"}, &seeder.Server{}, "both"},
		{"addresses", []string{"127.0.0.1:1"}, nil, ""},
		{"in-process", nil, &seeder.Server{}, ""},
	} {
		cfg := base
		cfg.Seeders, cfg.MetaInfo = tc.seeders, tc.metaInfo
		err := cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate = %v, want an error naming %q (none if empty)", tc.name, err, tc.want)
		}
	}
}

// Config.Store takes any store: the node's blobs land there, DataDir/blobs
// is not made, and the store stays open after the node closed (it is the
// caller's). NewNodeContext's ctx bounds building the node.
func TestNodeStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := startCluster(t, 0)
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "e2e/store", "v1", []int64{700 << 10}, 7)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	member, err := c.Member("store-node")
	if err != nil {
		t.Fatal(err)
	}
	cfg := eagle.Config{
		DataDir: t.TempDir(),
		Seeders: c.SeederAddrs(),
		Store:   store,
		P2P:     p2p.Config{ListenAddr: "127.0.0.1:0", Trackers: []string{c.TrackerURL}},
		Proxy:   proxy.Config{DefaultUpstream: c.Origin.URL},
		TLS:     member,
		Logger:  slog.New(slog.DiscardHandler),
	}
	cancelled, stop := context.WithCancel(ctx)
	stop()
	if _, err := eagle.NewNodeContext(cancelled, cfg); !errors.Is(err, context.Canceled) {
		t.Errorf("NewNodeContext with a cancelled context: %v, want context.Canceled", err)
	}
	node, err := eagle.NewNodeContext(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := node.Engine.Fetch(ctx, blob.Ref{Upstream: c.Origin.URL, Repository: img.Repository, Digest: layer.Digest})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, b); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := node.Close(); err != nil {
		t.Errorf("close node: %v", err)
	}
	if info, err := store.Stat(ctx, layer.Digest); err != nil || info.Size != layer.Size {
		t.Errorf("the given store after the node closed: %+v, %v; want the blob", info, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "blobs")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data_dir/blobs: %v, want none when a store is given", err)
	}
}
