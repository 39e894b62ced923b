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
// Credentials are containerd's: before a blob is read through Eagle, the
// registry is asked (HEAD) whether the credentials containerd's authorizer
// holds for the repository may read it — the check the Eagle proxy makes for
// every client, since the node's cache and the seeders serve what they hold
// to anyone who names it — and the seeder fetches from the registry with the
// same credentials. A private image stays private.
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
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/eagle-p2p/eagle/p2p"
)

// ErrSizeMismatch reports a blob whose size is not the one its descriptor
// names: the descriptor is wrong, and no registry would serve it either.
var ErrSizeMismatch = errors.New("eagleresolver: blob size does not match its descriptor")

// BlobSource serves blobs; *p2p.Engine (eagle.Node.Engine) implements it.
type BlobSource interface {
	// Fetch opens the blob for reading; reads return only verified bytes.
	Fetch(ctx context.Context, ref p2p.BlobRef) (p2p.Blob, error)
}

// Options configure New. The zero value is ready to use.
type Options struct {
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
	// SkipAuthorization turns off the access check made before each blob
	// is read through Eagle: a HEAD at the registry with the resolver's
	// credentials. Eagle's caches and seeders serve a blob they hold to
	// anyone who names it, so without the check a caller with no (or
	// other) credentials gets any blob this node or the seeders fetched
	// before. Skip it only when every user of the node may read every
	// image. Default false.
	SkipAuthorization bool
	// Logger receives a warning for each fallback. Default slog.Default().
	Logger *slog.Logger
}

// Resolver is a remotes.Resolver that fetches blobs through Eagle. Create
// it with New.
type Resolver struct {
	docker remotes.Resolver
	hosts  docker.RegistryHosts
	src    BlobSource
	opts   Options
}

var (
	_ remotes.Resolver            = (*Resolver)(nil)
	_ remotes.ResolverWithOptions = (*Resolver)(nil)
)

// New returns a Resolver that reads blobs from src (the engine of an
// embedded eagle.Node) and everything else from the registries in opts.
func New(src BlobSource, opts Options) (*Resolver, error) {
	if src == nil {
		return nil, errors.New("eagleresolver: nil BlobSource")
	}
	if opts.Hosts == nil {
		opts.Hosts = docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost))
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
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
		check:      !r.opts.SkipAuthorization,
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
	check      bool
	log        *slog.Logger
}

// Fetch returns desc's content. For blobs the reader is a p2p.Blob, which
// is also an io.Seeker, so that containerd resumes an interrupted write
// where it stopped.
func (f *fetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if images.IsManifestType(desc.MediaType) || images.IsIndexType(desc.MediaType) {
		return f.direct.Fetch(ctx, desc)
	}
	authz, err := f.credentials(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("eagleresolver: %s: %w", desc.Digest, err)
	}
	b, err := f.src.Fetch(ctx, p2p.BlobRef{
		Upstream:      f.upstream,
		Repository:    f.repository,
		Digest:        desc.Digest,
		Authorization: authz,
	})
	if err == nil && b.Size() != desc.Size {
		b.Close()
		return nil, fmt.Errorf("eagleresolver: %s: %w: %d bytes, the descriptor says %d", desc.Digest, ErrSizeMismatch, b.Size(), desc.Size)
	}
	if err == nil {
		return b, nil
	}
	var refused *p2p.OriginError
	switch {
	case errors.Is(err, p2p.ErrNotFound):
		return nil, fmt.Errorf("eagleresolver: %s: %w: %w", desc.Digest, errdefs.ErrNotFound, err)
	case errors.As(err, &refused), errors.Is(err, p2p.ErrDigestMismatch), ctx.Err() != nil, !f.fallback:
		return nil, fmt.Errorf("eagleresolver: %s: %w", desc.Digest, err)
	}
	f.log.WarnContext(ctx, "eagle cannot serve the blob; fetching it from the registry",
		"registry", f.upstream, "repository", f.repository, "digest", desc.Digest, "err", err)
	return f.direct.Fetch(ctx, desc)
}

// credentials returns the Authorization header the registry gets from
// containerd for desc: the host's configured headers, then what the
// authorizer holds (a bearer token for the repository's pull scope, or
// basic credentials); empty for an anonymous registry.
//
// Unless SkipAuthorization is set, it first asks the registry (HEAD) whether
// these credentials may read the blob, as the proxy does for every client:
// the node's cache and the seeders serve any blob they hold to whoever asks,
// so the registry must say yes before Eagle is asked. A first 401 is handed
// to the authorizer, which then logs in as containerd would (this is where
// a registry reached only through mirrors so far gets its token).
func (f *fetcher) credentials(ctx context.Context, desc ocispec.Descriptor) (string, error) {
	u := f.upstream + "/v2/" + f.repository + "/blobs/" + desc.Digest.String()
	ctx, err := docker.ContextWithRepositoryScope(ctx, f.spec, false)
	if err != nil {
		return "", fmt.Errorf("credentials: %w", err)
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
		if err != nil {
			return "", fmt.Errorf("credentials: %w", err)
		}
		req.Header = f.host.Header.Clone()
		if req.Header == nil {
			req.Header = http.Header{}
		}
		if f.host.Authorizer != nil {
			if err := f.host.Authorizer.Authorize(ctx, req); err != nil {
				return "", fmt.Errorf("credentials for %s: %w", f.upstream, err)
			}
		}
		authz := req.Header.Get("Authorization")
		if !f.check {
			return authz, nil
		}
		client := f.host.Client
		if client == nil {
			client = http.DefaultClient
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("check access at the registry: %w", err)
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return authz, nil
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0 && f.host.Authorizer != nil:
			if err := f.host.Authorizer.AddResponses(ctx, []*http.Response{resp}); err != nil {
				return "", fmt.Errorf("%w: registry %s wants credentials: %w", errdefs.ErrUnauthenticated, f.upstream, err)
			}
		case resp.StatusCode == http.StatusUnauthorized:
			return "", fmt.Errorf("%w: registry %s refused the credentials", errdefs.ErrUnauthenticated, f.upstream)
		case resp.StatusCode == http.StatusForbidden:
			return "", fmt.Errorf("%w: registry %s denied access to %s", errdefs.ErrPermissionDenied, f.upstream, f.repository)
		case resp.StatusCode == http.StatusNotFound:
			return "", fmt.Errorf("%w: registry %s has no such blob in %s", errdefs.ErrNotFound, f.upstream, f.repository)
		default:
			return "", fmt.Errorf("check access at the registry: %s answered %s", f.upstream, resp.Status)
		}
	}
}
