// Command containerd fetches an image into a containerd content store
// through an Eagle node embedded in the process — no agent, no registry
// mirror — using containerd's own dispatcher, fetch handler and content
// store with the resolver of package eagleresolver.
//
//	go run ./examples/containerd \
//	    --seeder seeder-0:7070 --tracker http://tracker:7080/announce \
//	    --data-dir /var/lib/eagle/puller --content /var/lib/eagle/content \
//	    [--hosts-dir /etc/containerd/certs.d] [--peer-listen :6881] [--fallback] \
//	    registry.example.com/team/app:v1
//
// Manifests come from the registry; the config and the layers of the
// manifest for this machine's platform come through the swarm. The last
// line printed is
//
//	<ref> <manifest digest> blobs=<n> bytes=<blob bytes> peer_bytes=<bytes received from peers>
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/eagle-p2p/eagle"
	"github.com/eagle-p2p/eagle/examples/containerd/eagleresolver"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "containerd: %v\n", err)
		os.Exit(1)
	}
}

// errUsage reports bad command-line arguments; the usage has been printed.
var errUsage = errors.New("usage")

// listFlag is a repeatable, comma-separated string list flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// run fetches one image and prints a summary line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("containerd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var seeders, trackers listFlag
	fs.Var(&seeders, "seeder", "seeder gRPC address host:port (repeatable, comma-separated; required)")
	fs.Var(&trackers, "tracker", "tracker announce URL (repeatable, comma-separated; required)")
	dataDir := fs.String("data-dir", "", "the node's state: blob cache and torrent state (required)")
	contentDir := fs.String("content", "", "root of the containerd content store to fill (required)")
	hostsDir := fs.String("hosts-dir", "", "containerd hosts directory (hosts.toml files); default: the registry itself")
	peerListen := fs.String("peer-listen", ":6881", "peer-wire listen address")
	fallback := fs.Bool("fallback", false, "fetch a blob from the registry when Eagle cannot serve it")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	var tlsCfg mtls.Config
	fs.StringVar(&tlsCfg.CA, "tls-ca", "", "cluster CA bundle (PEM) of the internal planes' mutual TLS")
	fs.StringVar(&tlsCfg.Cert, "tls-cert", "", "this member's certificate (PEM)")
	fs.StringVar(&tlsCfg.Key, "tls-key", "", "this member's private key (PEM)")
	fs.BoolVar(&tlsCfg.Insecure, "tls-insecure", false, "talk to seeders, trackers and peers in plaintext")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() != 1 || *dataDir == "" || *contentDir == "" {
		fmt.Fprintln(stderr, "usage: containerd --seeder addr --tracker url --data-dir dir --content dir [flags] <image reference>")
		return errUsage
	}
	ref := fs.Arg(0)
	spec, err := reference.Parse(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("log level %q: %w", *logLevel, err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	node, err := eagle.NewNode(eagle.Config{
		TLS:     tlsCfg,
		DataDir: *dataDir,
		Seeders: seeders,
		P2P:     p2p.Config{ListenAddr: *peerListen, Trackers: trackers},
		// The node's registry endpoint is not served here; its
		// configuration still names the registry.
		Proxy:  proxy.Config{DefaultUpstream: spec.Hostname()},
		Logger: log,
	})
	if errors.Is(err, mtls.ErrInvalidConfig) {
		return fmt.Errorf("%w (flags --tls-ca, --tls-cert, --tls-key or --tls-insecure)", err)
	}
	if err != nil {
		return err
	}
	defer node.Close()

	var hosts docker.RegistryHosts
	if *hostsDir != "" {
		hosts = config.ConfigureHosts(ctx, config.HostOptions{HostDir: config.HostDirFromRoot(*hostsDir)})
	}
	resolver, err := eagleresolver.New(eagleresolver.Config{Hosts: hosts, Fallback: *fallback, Logger: log}, node.Engine)
	if err != nil {
		return err
	}
	store, err := local.NewStore(*contentDir)
	if err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	name, desc, err := resolver.Resolve(ctx, ref)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", ref, err)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		return err
	}
	var blobs, bytes atomic.Int64
	count := images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if !images.IsManifestType(d.MediaType) && !images.IsIndexType(d.MediaType) {
			blobs.Add(1)
			bytes.Add(d.Size)
		}
		return nil, nil
	})
	platform := platforms.Default()
	children := images.LimitManifests(images.FilterPlatforms(images.ChildrenHandler(store), platform), platform, 1)
	handler := images.Handlers(remotes.FetchHandler(store, fetcher), count, children)
	if err := images.Dispatch(ctx, handler, nil, desc); err != nil {
		return fmt.Errorf("fetch %s: %w", ref, err)
	}
	st := node.Engine.Stats()
	fmt.Fprintf(stdout, "%s %s blobs=%d bytes=%d peer_bytes=%d\n",
		ref, desc.Digest, blobs.Load(), bytes.Load(), st.BytesFromAgents+st.BytesFromSeeders)
	return nil
}
