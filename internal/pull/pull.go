// Package pull pulls an image the way containerd does: with containerd's
// own remotes/docker resolver and fetcher, configured by a hosts.toml that
// names an Eagle node as the mirror of the origin registry. Every blob is
// streamed and checked against its digest; nothing is held in memory whole.
//
// It serves the end-to-end tests, the benchmarks and the demo.
package pull

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/eagle-p2p/eagle/proxy"
)

// WriteHostsTOML writes, under root, the hosts.toml that makes mirrorURL
// (an Eagle node, e.g. "http://127.0.0.1:5001") the mirror for pulls of
// originHost (e.g. "127.0.0.1:5000", served over plain HTTP). containerd
// needs the mirror's scheme written out: without it, it tries https, fails,
// and silently pulls from the origin.
func WriteHostsTOML(root, originHost, mirrorURL string) error {
	return proxy.WriteHostsTOML(root, mirrorURL, []string{"http://" + originHost})
}

// Result is what a pull moved.
type Result struct {
	// Index is the image index the reference resolved to, when it named
	// one (a multi-platform image); zero otherwise.
	Index ocispec.Descriptor
	// Manifest is the resolved manifest: the one the reference named, or
	// the index's manifest for the platform pulled.
	Manifest ocispec.Descriptor
	// Blobs are the config and layer descriptors, in manifest order.
	Blobs []ocispec.Descriptor
	// Bytes is the number of blob bytes received (config and layers).
	Bytes int64
	// Duration is the wall time of the whole pull.
	Duration time.Duration
}

// Options configure Pull.
type Options struct {
	// HostsDir is a containerd hosts directory (see WriteHostsTOML).
	HostsDir string
	// Client is the HTTP client; nil means a fresh client.
	Client *http.Client
	// Parallel is how many blobs are fetched at once (containerd's default is 3).
	Parallel int
	// Platform picks the manifest when the reference names an image
	// index (containerd's platforms.Only matching). Zero means
	// linux/runtime.GOARCH.
	Platform ocispec.Platform
	// Credentials returns the user name and password for a registry host
	// (the mirror's host when the challenge came through the mirror). It
	// is containerd's HostOptions.Credentials: containerd's authorizer
	// answers Basic challenges with them, and Bearer challenges by
	// fetching a token with them. nil means anonymous.
	Credentials func(host string) (user, password string, err error)
}

// Pull resolves ref (e.g. "127.0.0.1:5000/demo/app:latest") with
// containerd's resolver and fetches the manifest, the config and every
// layer, checking each against its digest.
func Pull(ctx context.Context, ref string, opts Options) (Result, error) {
	start := time.Now()
	if opts.Parallel <= 0 {
		opts.Parallel = 3
	}
	hostOpts := config.HostOptions{HostDir: config.HostDirFromRoot(opts.HostsDir), Credentials: opts.Credentials}
	if opts.Client != nil {
		hostOpts.UpdateClient = func(c *http.Client) error { *c = *opts.Client; return nil }
	}
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: config.ConfigureHosts(ctx, hostOpts)})
	name, desc, err := resolver.Resolve(ctx, ref)
	if err != nil {
		return Result{}, fmt.Errorf("pull: resolve %s: %w", ref, err)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		return Result{}, fmt.Errorf("pull: %w", err)
	}
	var index ocispec.Descriptor
	if isIndex(desc.MediaType) {
		index = desc
		if desc, err = pickManifest(ctx, fetcher, index, opts.Platform); err != nil {
			return Result{Index: index}, fmt.Errorf("pull: %s: %w", ref, err)
		}
	}
	var manifest ocispec.Manifest
	if err := fetchJSON(ctx, fetcher, desc, &manifest, images.MediaTypeDockerSchema2Manifest, ocispec.MediaTypeImageManifest); err != nil {
		return Result{Index: index}, err
	}
	if manifest.Config.Digest == "" {
		return Result{}, fmt.Errorf("pull: %s: manifest %s has no config (media type %s)", ref, desc.Digest, desc.MediaType)
	}
	res := Result{Index: index, Manifest: desc, Blobs: append([]ocispec.Descriptor{manifest.Config}, manifest.Layers...)}
	var (
		mu sync.Mutex
		g  errgroup.Group
	)
	g.SetLimit(opts.Parallel)
	for _, b := range res.Blobs {
		g.Go(func() error {
			n, err := fetchVerified(ctx, fetcher, b, io.Discard)
			mu.Lock()
			res.Bytes += n
			mu.Unlock()
			return err
		})
	}
	err = g.Wait()
	res.Duration = time.Since(start)
	return res, err
}

// fetchJSON fetches desc, a manifest or index of one of mediaTypes, and
// decodes it into v.
func fetchJSON(ctx context.Context, f remotes.Fetcher, desc ocispec.Descriptor, v any, mediaTypes ...string) error {
	if !slices.Contains(mediaTypes, desc.MediaType) {
		return fmt.Errorf("pull: %s: unsupported media type %s", desc.Digest, desc.MediaType)
	}
	if desc.Size > 4<<20 {
		return fmt.Errorf("pull: manifest %s is %d bytes, over 4 MiB", desc.Digest, desc.Size)
	}
	var sb strings.Builder
	if _, err := fetchVerified(ctx, f, desc, &sb); err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(sb.String()), v); err != nil {
		return fmt.Errorf("pull: decode %s: %w", desc.Digest, err)
	}
	return nil
}

// fetchVerified streams desc into w and checks its size and digest.
func fetchVerified(ctx context.Context, f remotes.Fetcher, desc ocispec.Descriptor, w io.Writer) (int64, error) {
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return 0, fmt.Errorf("pull: fetch %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	v := desc.Digest.Verifier()
	n, err := io.Copy(io.MultiWriter(w, v), rc)
	if err != nil {
		return n, fmt.Errorf("pull: read %s after %d bytes: %w", desc.Digest, n, err)
	}
	if n != desc.Size {
		return n, fmt.Errorf("pull: %s: got %d bytes, want %d", desc.Digest, n, desc.Size)
	}
	if !v.Verified() {
		return n, fmt.Errorf("pull: %s: %w", desc.Digest, errDigest)
	}
	return n, nil
}

var errDigest = fmt.Errorf("content does not match its digest (%s)", digest.Canonical)
