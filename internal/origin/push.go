package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrInvalidArgument is returned (wrapped) by PushRandomImage for a malformed
// base URL, repository, tag or layer size.
var ErrInvalidArgument = errors.New("origin: invalid argument")

// ErrBadResponse is returned (wrapped) when a registry answers a push with a
// response that breaks the distribution protocol: a missing upload location,
// a size or digest that differs from what was sent.
var ErrBadResponse = errors.New("origin: bad registry response")

// StatusError is the error for a registry request answered with an
// unexpected HTTP status.
type StatusError struct {
	Method     string
	URL        string
	StatusCode int
	// Body is the start of the response body: the registry's JSON error.
	Body string
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("origin: %s %s: status %d: %s", e.Method, e.URL, e.StatusCode, e.Body)
}

// Image describes an image that PushRandomImage pushed.
type Image struct {
	// Repository is the repository name within the registry, "eagle/test".
	Repository string
	// Tag is the tag the manifest was pushed by.
	Tag string
	// Manifest is the descriptor of the OCI image manifest.
	Manifest ocispec.Descriptor
	// Config is the descriptor of the image config.
	Config ocispec.Descriptor
	// Layers are the descriptors of the layers, in manifest order.
	Layers []ocispec.Descriptor
}

// Blobs returns the descriptors of the image's blobs: its config, then its
// layers. The returned slice is the caller's.
func (im Image) Blobs() []ocispec.Descriptor {
	return append([]ocispec.Descriptor{im.Config}, im.Layers...)
}

// maxErrorBody bounds how much of an error response is kept.
const maxErrorBody = 4 << 10

// PushRandomImage pushes to the registry at baseURL ("http://host:port") an
// image for linux/runtime.GOARCH with one layer per entry of layerSizes, and
// tags it repo:tag. client may be nil for http.DefaultClient; for a
// registry that requires authentication, give it an AuthTransport.
//
// Layer i is exactly layerSizes[i] bytes of media type
// application/vnd.oci.image.layer.v1.tar: an uncompressed tar holding one
// file of random bytes, followed by fewer than 512 zero bytes when the size
// is not a multiple of 512, so runtimes can unpack it. A layer smaller than
// 1536 bytes cannot hold a tar and is plain random bytes. The bytes depend on
// seed and i only: pushing with the same seed and sizes gives the same blobs
// and the same manifest digest. The config lists the layers' diff IDs.
//
// Each blob is streamed, never held in memory: POST to open an upload, one
// PATCH whose body is generated and hashed while it is sent, then PUT with
// the digest. The manifest is PUT by tag.
func PushRandomImage(ctx context.Context, client *http.Client, baseURL, repo, tag string, layerSizes []int64, seed int64) (Image, error) {
	p, err := newPusher(client, baseURL, repo, tag, layerSizes)
	if err != nil {
		return Image{}, err
	}
	return p.pushImage(ctx, tag, ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"}, layerSizes, seed)
}

// pushImage pushes the image PushRandomImage describes, for platform, and
// puts its manifest by tag, or by its digest when tag is "".
func (p *pusher) pushImage(ctx context.Context, tag string, platform ocispec.Platform, layerSizes []int64, seed int64) (Image, error) {
	im := Image{Repository: p.repo, Tag: tag, Layers: make([]ocispec.Descriptor, 0, len(layerSizes))}
	diffIDs := make([]digest.Digest, 0, len(layerSizes))
	history := make([]ocispec.History, 0, len(layerSizes))
	for i, size := range layerSizes {
		name := fmt.Sprintf("eagle-layer-%d.bin", i)
		layer, err := randomLayer(name, layerSeed(seed, i), size)
		if err != nil {
			return Image{}, err
		}
		desc, err := p.uploadBlob(ctx, layer, size)
		if err != nil {
			return Image{}, fmt.Errorf("origin: push layer %d: %w", i, err)
		}
		desc.MediaType = ocispec.MediaTypeImageLayer
		im.Layers = append(im.Layers, desc)
		// The layer is uncompressed: its diff ID is its digest.
		diffIDs = append(diffIDs, desc.Digest)
		history = append(history, ocispec.History{
			Created:   &tarEpoch,
			CreatedBy: fmt.Sprintf("eagle: %d random bytes in /%s", size, name),
		})
	}

	config, err := json.Marshal(ocispec.Image{
		Created:  &tarEpoch,
		Platform: platform,
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
		History: history,
	})
	if err != nil {
		return Image{}, fmt.Errorf("origin: encode image config: %w", err)
	}
	im.Config, err = p.uploadBlob(ctx, bytes.NewReader(config), int64(len(config)))
	if err != nil {
		return Image{}, fmt.Errorf("origin: push image config: %w", err)
	}
	im.Config.MediaType = ocispec.MediaTypeImageConfig

	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    im.Config,
		Layers:    im.Layers,
	})
	if err != nil {
		return Image{}, fmt.Errorf("origin: encode manifest: %w", err)
	}
	im.Manifest = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(manifest),
		Size:      int64(len(manifest)),
	}
	ref := tag
	if ref == "" {
		ref = im.Manifest.Digest.String()
	}
	if err := p.putManifest(ctx, ref, ocispec.MediaTypeImageManifest, manifest, im.Manifest.Digest); err != nil {
		return Image{}, err
	}
	return im, nil
}

// newPusher checks the arguments of a push and returns the pusher to repo
// at baseURL. client may be nil for http.DefaultClient.
func newPusher(client *http.Client, baseURL, repo, tag string, layerSizes []int64) (*pusher, error) {
	if client == nil {
		client = http.DefaultClient
	}
	base, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	named, err := reference.WithName(repo)
	if err == nil && strings.Contains(repo, ":") {
		err = errors.New("a repository within a registry has no host or port")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: repository %q: %w", ErrInvalidArgument, repo, err)
	}
	if _, err := reference.WithTag(named, tag); err != nil {
		return nil, fmt.Errorf("%w: tag %q: %w", ErrInvalidArgument, tag, err)
	}
	for i, size := range layerSizes {
		if size < 0 {
			return nil, fmt.Errorf("%w: layer %d has negative size %d", ErrInvalidArgument, i, size)
		}
	}
	return &pusher{client: client, base: base, repo: repo}, nil
}

// parseBaseURL checks that s is an http(s) URL of a registry and returns it
// without a trailing slash.
func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: base URL: %w", ErrInvalidArgument, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: base URL %q is not http(s)://host[:port]", ErrInvalidArgument, s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%w: base URL %q has a query, fragment or user", ErrInvalidArgument, s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// pusher sends blobs and manifests to one repository.
type pusher struct {
	client *http.Client
	base   *url.URL
	repo   string
}

// endpoint returns the URL of path (starting with /v2/) on the registry.
func (p *pusher) endpoint(path string) *url.URL {
	u := *p.base
	u.Path += path
	return &u
}

// uploadBlob uploads the size bytes of r as a blob and returns its
// descriptor, without media type.
func (p *pusher) uploadBlob(ctx context.Context, r io.Reader, size int64) (ocispec.Descriptor, error) {
	resp, err := p.do(ctx, http.MethodPost, p.endpoint("/v2/"+p.repo+"/blobs/uploads/"), nil, -1, nil, http.StatusAccepted)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("open upload: %w", err)
	}
	loc, err := location(resp)
	if err != nil {
		return ocispec.Descriptor{}, err
	}

	h := sha256.New()
	body := &hashingBody{r: r, h: h, closed: make(chan struct{})}
	resp, err = p.do(ctx, http.MethodPatch, loc, body, size,
		http.Header{"Content-Type": {"application/octet-stream"}}, http.StatusAccepted)
	// The transport may still be reading the body when Do returns; the
	// hash is complete only once it has closed it.
	if werr := body.wait(ctx); err == nil {
		err = werr
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("send blob: %w", err)
	}
	if body.n != size || body.err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("send blob: read %d of %d bytes: %w", body.n, size, errors.Join(body.err, io.ErrUnexpectedEOF))
	}
	// The registry reports the bytes it holds as Range: 0-<last>.
	if want := "0-" + strconv.FormatInt(size-1, 10); size > 0 && resp.Header.Get("Range") != want {
		return ocispec.Descriptor{}, fmt.Errorf("%w: upload of %d bytes acknowledged with Range %q", ErrBadResponse, size, resp.Header.Get("Range"))
	}
	if loc, err = location(resp); err != nil {
		return ocispec.Descriptor{}, err
	}

	d := digest.NewDigest(digest.SHA256, h)
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	resp, err = p.do(ctx, http.MethodPut, loc, nil, -1, nil, http.StatusCreated)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w", d, err)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return ocispec.Descriptor{}, fmt.Errorf("%w: blob %s committed as %s", ErrBadResponse, d, got)
	}
	return ocispec.Descriptor{Digest: d, Size: size}, nil
}

// putManifest puts manifest, of mediaType, by ref (a tag or its digest) and
// checks the digest the registry gives it.
func (p *pusher) putManifest(ctx context.Context, ref, mediaType string, manifest []byte, d digest.Digest) error {
	resp, err := p.do(ctx, http.MethodPut, p.endpoint("/v2/"+p.repo+"/manifests/"+ref),
		bytes.NewReader(manifest), int64(len(manifest)),
		http.Header{"Content-Type": {mediaType}}, http.StatusCreated)
	if err != nil {
		return fmt.Errorf("origin: put manifest: %w", err)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return fmt.Errorf("%w: manifest %s stored as %s", ErrBadResponse, d, got)
	}
	return nil
}

// do sends a request with body (size bytes; nil for none) and returns the
// response, whose body is drained and closed, if its status is want.
func (p *pusher) do(ctx context.Context, method string, u *url.URL, body io.Reader, size int64, header http.Header, want int) (*http.Response, error) {
	if body == nil || size == 0 {
		if c, ok := body.(io.Closer); ok {
			// The transport would have closed it.
			_ = c.Close()
		}
		body, size = http.NoBody, 0
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		if c, ok := body.(io.Closer); ok {
			_ = c.Close()
		}
		return nil, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	req.ContentLength = size
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, &StatusError{Method: method, URL: u.Redacted(), StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(msg))}
	}
	// Drain so the connection can be reused.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)); err != nil {
		return nil, fmt.Errorf("%s %s: read response: %w", method, u.Redacted(), err)
	}
	return resp, nil
}

// location returns the upload URL a registry response points to.
func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("%w: %s %s: no Location header", ErrBadResponse, resp.Request.Method, resp.Request.URL.Redacted())
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("%w: Location %q: %w", ErrBadResponse, loc, err)
	}
	return u, nil
}

// hashingBody is a request body that hashes what the transport reads and
// reports when the transport has closed it.
type hashingBody struct {
	r      io.Reader
	h      hash.Hash
	n      int64
	err    error // a read error other than io.EOF
	once   sync.Once
	closed chan struct{}
}

func (b *hashingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.h.Write(p[:n])
	b.n += int64(n)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// Close implements io.Closer; the transport calls it when done with the body.
func (b *hashingBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// wait waits until the transport has closed the body, after which its
// fields may be read.
func (b *hashingBody) wait(ctx context.Context) error {
	select {
	case <-b.closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the request body to be released: %w", ctx.Err())
	}
}
