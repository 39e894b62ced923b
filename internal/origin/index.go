package origin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Index describes a multi-platform image that PushRandomIndex pushed.
type Index struct {
	// Repository is the repository name within the registry.
	Repository string
	// Tag is the tag the index was pushed by.
	Tag string
	// Descriptor is the descriptor of the OCI image index.
	Descriptor ocispec.Descriptor
	// Images are the platform images, in the order of the platforms
	// given. Each Manifest descriptor carries its Platform, as in the
	// index; their Tag is empty (they are pushed by digest).
	Images []Image
}

// PushRandomIndex pushes to the registry at baseURL a multi-platform image:
// for each of platforms an image like PushRandomImage's (one layer per entry
// of layerSizes, a config naming the platform), pushed by digest, then an
// OCI image index over their manifests, tagged repo:tag. client may be nil
// for http.DefaultClient; for a registry that requires authentication, give
// it an AuthTransport.
//
// The images' layers are distinct (each platform's bytes come from its own
// seed derived from seed), so pulling one platform never fetches another's
// layers. The same arguments give the same blobs and index digest.
// Platforms must be non-empty, each with an OS and an architecture, and
// distinct after normalisation.
func PushRandomIndex(ctx context.Context, client *http.Client, baseURL, repo, tag string, plats []ocispec.Platform, layerSizes []int64, seed int64) (Index, error) {
	p, err := newPusher(client, baseURL, repo, tag, layerSizes)
	if err != nil {
		return Index{}, err
	}
	if len(plats) == 0 {
		return Index{}, fmt.Errorf("%w: an index needs at least one platform", ErrInvalidArgument)
	}
	seen := make(map[string]int, len(plats))
	for i, pl := range plats {
		if pl.OS == "" || pl.Architecture == "" {
			return Index{}, fmt.Errorf("%w: platform %d (%+v) has no OS or architecture", ErrInvalidArgument, i, pl)
		}
		key := platforms.FormatAll(platforms.Normalize(pl))
		if j, dup := seen[key]; dup {
			return Index{}, fmt.Errorf("%w: platforms %d and %d are both %s", ErrInvalidArgument, j, i, key)
		}
		seen[key] = i
	}

	ix := Index{Repository: repo, Tag: tag, Images: make([]Image, 0, len(plats))}
	manifests := make([]ocispec.Descriptor, 0, len(plats))
	for i, pl := range plats {
		im, err := p.pushImage(ctx, "", pl, layerSizes, platformSeed(seed, i))
		if err != nil {
			return Index{}, fmt.Errorf("origin: push image for %s: %w", platforms.Format(pl), err)
		}
		im.Manifest.Platform = &pl
		ix.Images = append(ix.Images, im)
		manifests = append(manifests, im.Manifest)
	}

	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: manifests,
	})
	if err != nil {
		return Index{}, fmt.Errorf("origin: encode index: %w", err)
	}
	ix.Descriptor = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageIndex,
		Digest:    digest.FromBytes(index),
		Size:      int64(len(index)),
	}
	if err := p.putManifest(ctx, tag, ocispec.MediaTypeImageIndex, index, ix.Descriptor.Digest); err != nil {
		return Index{}, fmt.Errorf("origin: put index: %w", err)
	}
	return ix, nil
}

// platformSeed derives the seed of the image for platform i of an index
// pushed with seed.
func platformSeed(seed int64, i int) int64 {
	s := uint64(seed) ^ uint64(i+1)*0x9e3779b97f4a7c15
	splitmix64(&s)
	return int64(splitmix64(&s))
}
