// Package eagleresolver is a containerd remotes.Resolver whose blobs come
// through an Eagle node embedded in the same process: no agent, no registry
// mirror, no HTTP hop for layers.
//
// Manifests and indexes are resolved and fetched with containerd's own
// docker resolver, straight from the registry (they are small, and tags
// must be resolved where they live). Every other blob — image configs and
// layers — is read from the node's p2p engine, which gets it through the
// swarm: streamed as pieces are verified, with the whole-blob digest checked
// before the last byte is released, and seeded to other peers afterwards.
// The registry serves each blob once, to a seeder, whatever the number of
// processes pulling.
//
// Credentials are containerd's: the Authorization header containerd's
// authorizer holds for the repository goes with each blob read, and the
// node's engine asks the registry (a HEAD, through the node's shared
// authorizer and its cache) whether those credentials may read the blob
// before it hands out a byte, from its cache or the swarm; the seeder
// fetches from the registry with the same credentials. A first 401 is
// handed to containerd's authorizer, which logs in as containerd would. A
// private image stays private.
package eagleresolver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/transfer"
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/errdefs"
	"github.com/eagle-p2p/eagle/blob"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrSizeMismatch reports a blob whose size is not the one its descriptor
// names: the descriptor is wrong, and no registry would serve it either.
var ErrSizeMismatch = errors.New("eagleresolver: blob size does not match its descriptor")

// BlobSource serves blobs; *p2p.Engine (eagle.Node.Engine) implements it.
type BlobSource interface {
	// Fetch opens the blob for reading; reads return only verified bytes.
	Fetch(ctx context.Context, ref blob.Ref) (blob.Reader, error)
}

// Config configures a Resolver. The zero value is ready to use.
type Config struct {
	// Hosts configures the registries, as for containerd's docker
	// resolver (for example config.ConfigureHosts with a hosts.toml
	// directory). Default: docker.ConfigureDefaultRegistries with plain
	// HTTP for localhost.
	Hosts docker.RegistryHosts
	// Headers are sent with every registry request of the docker resolver.
	Headers http.Header
	// Fallback makes a blob that Eagle cannot serve (no seeder reachable,
	// a swarm failure) come straight from the registry instead, so that
	// pulls survive an Eagle outage. A registry's own refusal (not found,
	// unauthorized) is never retried that way. Default false.
	Fallback bool
	// Logger receives a warning for each fallback. Nil discards them.
	Logger *slog.Logger
}

// Resolver is a remotes.Resolver that fetches blobs through Eagle. Create
// it with New.
type Resolver struct {
	docker remotes.Resolver
	hosts  docker.RegistryHosts
	src    BlobSource
	opts   Config
}

var (
	_ remotes.Resolver            = (*Resolver)(nil)
	_ remotes.ResolverWithOptions = (*Resolver)(nil)
)

// New returns a Resolver that reads blobs from src (the engine of an
// embedded eagle.Node) and everything else from the registries in opts.
func New(opts Config, src BlobSource) (*Resolver, error) {
	if src == nil {
		return nil, errors.New("eagleresolver: nil BlobSource")
	}
	if opts.Hosts == nil {
		opts.Hosts = docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Resolver{
		docker: docker.NewResolver(docker.ResolverOptions{Hosts: opts.Hosts, Headers: opts.Headers}),
		hosts:  opts.Hosts,
		src:    src,
		opts:   opts,
	}, nil
}

// Resolve resolves ref to its name and manifest (or index) descriptor with
// containerd's docker resolver.
func (r *Resolver) Resolve(ctx context.Context, ref string) (string, ocispec.Descriptor, error) {
	return r.docker.Resolve(ctx, ref)
}

// Pusher returns containerd's docker pusher: Eagle only reads.
func (r *Resolver) Pusher(ctx context.Context, ref string) (remotes.Pusher, error) {
	return r.docker.Pusher(ctx, ref)
}

// SetOptions passes transfer options (download limiter, performance
// settings) to the docker resolver.
func (r *Resolver) SetOptions(options ...transfer.ImageResolverOption) {
	if ro, ok := r.docker.(remotes.ResolverWithOptions); ok {
		ro.SetOptions(options...)
	}
}

// Fetcher returns a fetcher for ref's repository: manifests and indexes
// from the registry, every other blob through Eagle.
func (r *Resolver) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	spec, err := reference.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("eagleresolver: %w", err)
	}
	direct, err := r.docker.Fetcher(ctx, ref)
	if err != nil {
		return nil, err
	}
	hostname := spec.Hostname()
	hosts, err := r.hosts(hostname)
	if err != nil {
		return nil, fmt.Errorf("eagleresolver: hosts of %s: %w", hostname, err)
	}
	// The registry itself is the last host with pull capability; the ones
	// before it are mirrors. The seeder fetches from the registry.
	var origin *docker.RegistryHost
	for i := range hosts {
		if hosts[i].Capabilities.Has(docker.HostCapabilityPull) {
			origin = &hosts[i]
		}
	}
	if origin == nil {
		return nil, fmt.Errorf("eagleresolver: no host to pull %s from: %w", hostname, errdefs.ErrNotFound)
	}
	if origin.Path != "/v2" {
		return nil, fmt.Errorf("eagleresolver: registry %s serves the API under %q; Eagle fetches from /v2 only: %w",
			origin.Host, origin.Path, errdefs.ErrNotImplemented)
	}
	return &fetcher{
		direct:     direct,
		src:        r.src,
		spec:       spec,
		host:       *origin,
		upstream:   origin.Scheme + "://" + origin.Host,
		repository: strings.TrimPrefix(spec.Locator, hostname+"/"),
		fallback:   r.opts.Fallback,
		log:        r.opts.Logger,
	}, nil
}

// fetcher fetches one repository's content.
type fetcher struct {
	direct     remotes.Fetcher
	src        BlobSource
	spec       reference.Spec
	host       docker.RegistryHost
	upstream   string
	repository string
	fallback   bool
	log        *slog.Logger
}

// Fetch returns desc's content. For blobs the reader is a blob.Reader, which
// is also an io.Seeker, so that containerd resumes an interrupted write
// where it stopped.
func (f *fetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if images.IsManifestType(desc.MediaType) || images.IsIndexType(desc.MediaType) {
		return f.direct.Fetch(ctx, desc)
	}
	ref := blob.Ref{Upstream: f.upstream, Repository: f.repository, Digest: desc.Digest}
	b, err := f.fetchWithCredentials(ctx, ref)
	if err == nil && b.Size() != desc.Size {
		b.Close()
		return nil, fmt.Errorf("eagleresolver: %s: %w: %d bytes, the descriptor says %d", desc.Digest, ErrSizeMismatch, b.Size(), desc.Size)
	}
	if err == nil {
		return b, nil
	}
	var refused *blob.OriginError
	switch {
	case errors.Is(err, blob.ErrNotFound), errors.As(err, &refused) && refused.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("eagleresolver: %s: %w: %w", desc.Digest, errdefs.ErrNotFound, err)
	case refused != nil && refused.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("eagleresolver: %s: %w: %w", desc.Digest, errdefs.ErrUnauthenticated, err)
	case refused != nil && refused.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("eagleresolver: %s: %w: %w", desc.Digest, errdefs.ErrPermissionDenied, err)
	case refused != nil, errors.Is(err, blob.ErrDigestMismatch), ctx.Err() != nil, !f.fallback:
		return nil, fmt.Errorf("eagleresolver: %s: %w", desc.Digest, err)
	}
	f.log.WarnContext(ctx, "eagle cannot serve the blob; fetching it from the registry",
		"registry", f.upstream, "repository", f.repository, "digest", desc.Digest, "err", err)
	return f.direct.Fetch(ctx, desc)
}

// fetchWithCredentials reads ref through Eagle with the credentials
// containerd holds for the registry. When the registry answers the
// engine's authorization check with 401, its challenge goes to containerd's
// authorizer, which logs in (fetches a token for the repository's pull
// scope) as containerd would, and the read is tried once more.
func (f *fetcher) fetchWithCredentials(ctx context.Context, ref blob.Ref) (blob.Reader, error) {
	ctx, err := docker.ContextWithRepositoryScope(ctx, f.spec, false)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	for attempt := 0; ; attempt++ {
		req, err := f.credentials(ctx, ref)
		if err != nil {
			return nil, err
		}
		ref.Authorization = req.Header.Get("Authorization")
		b, err := f.src.Fetch(ctx, ref)
		var oe *blob.OriginError
		if attempt > 0 || f.host.Authorizer == nil || !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized || oe.WWWAuthenticate == "" {
			return b, err
		}
		challenge := &http.Response{
			StatusCode: http.StatusUnauthorized,
			Header:     http.Header{"Www-Authenticate": {oe.WWWAuthenticate}},
			Request:    req,
		}
		if aerr := f.host.Authorizer.AddResponses(ctx, []*http.Response{challenge}); aerr != nil {
			return nil, fmt.Errorf("%w: registry %s wants credentials: %w", errdefs.ErrUnauthenticated, f.upstream, aerr)
		}
	}
}

// credentials returns the request containerd would send for ref's blob,
// with the host's configured headers and what containerd's authorizer
// holds (a bearer token for the repository's pull scope, or basic
// credentials) in its Authorization header. It sends nothing.
func (f *fetcher) credentials(ctx context.Context, ref blob.Ref) (*http.Request, error) {
	u := f.upstream + "/v2/" + f.repository + "/blobs/" + ref.Digest.String()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	req.Header = f.host.Header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if f.host.Authorizer != nil {
		if err := f.host.Authorizer.Authorize(ctx, req); err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", f.upstream, err)
		}
	}
	return req, nil
}
