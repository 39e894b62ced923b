package pull

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrNoPlatform is returned (wrapped) when an image index has no manifest
// for the platform asked for.
var ErrNoPlatform = errors.New("no manifest for the platform")

// isIndex reports whether mediaType is an OCI image index or a Docker
// manifest list.
func isIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == images.MediaTypeDockerSchema2ManifestList
}

// pickManifest fetches the index desc and returns the descriptor of its
// manifest for platform (zero: linux/runtime.GOARCH), the best match by
// containerd's platforms.Only when several match. An entry without a
// platform matches nothing, as in containerd.
func pickManifest(ctx context.Context, f remotes.Fetcher, desc ocispec.Descriptor, platform ocispec.Platform) (ocispec.Descriptor, error) {
	if platform.OS == "" && platform.Architecture == "" {
		platform = ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	}
	var index ocispec.Index
	if err := fetchJSON(ctx, f, desc, &index, ocispec.MediaTypeImageIndex, images.MediaTypeDockerSchema2ManifestList); err != nil {
		return ocispec.Descriptor{}, err
	}
	match := platforms.Only(platform)
	var best *ocispec.Descriptor
	for i := range index.Manifests {
		m := &index.Manifests[i]
		if m.Platform == nil || !match.Match(*m.Platform) {
			continue
		}
		if best == nil || match.Less(*m.Platform, *best.Platform) {
			best = m
		}
	}
	if best == nil {
		return ocispec.Descriptor{}, fmt.Errorf("index %s: %w %s", desc.Digest, ErrNoPlatform, platforms.Format(platform))
	}
	return *best, nil
}
