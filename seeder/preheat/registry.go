package preheat

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker/auth"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of manifests and indexes that a preheat follows.
const (
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// maxManifest bounds a manifest or index read from an origin (the
// distribution registry refuses manifests over 4 MiB).
const maxManifest = 4 << 20

// manifestAccept is the Accept header of every manifest GET.
var manifestAccept = strings.Join([]string{ocispec.MediaTypeImageIndex, mediaTypeDockerList, ocispec.MediaTypeImageManifest, mediaTypeDockerManifest}, ", ")

// isIndex and isManifest tell manifest media types apart.
func isIndex(mt string) bool { return mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerList }
func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == mediaTypeDockerManifest
}

// target is one image to preheat: where it lives and which manifest.
type target struct {
	upstream  string // "http(s)://host[:port]"
	host      string // "host[:port]"
	repo      string
	reference string // a tag or a digest
}

func (t target) String() string {
	sep := ":"
	if _, err := digest.Parse(t.reference); err == nil {
		sep = "@"
	}
	return t.host + "/" + t.repo + sep + t.reference
}

// authorizer obtains the Authorization an origin wants for pulling one
// repository, with the operator's credentials for the registry: a Basic
// header, or a Bearer token with pull scope from the registry's token
// service (containerd's token client), or a token file. It remembers the
// value until it expires or is refused.
type authorizer struct {
	reg    Registry
	client *http.Client
	t      target

	mu      sync.Mutex
	value   string
	expires time.Time // zero: until refused
	known   bool
}

// header returns the Authorization to send ("" for none).
func (a *authorizer) header(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.known && (a.expires.IsZero() || time.Now().Before(a.expires)) {
		return a.value, nil
	}
	v, exp, err := a.login(ctx)
	if err != nil {
		return "", err
	}
	a.value, a.expires, a.known = v, exp, true
	return v, nil
}

// invalidate forgets a value the origin refused.
func (a *authorizer) invalidate(refused string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.value == refused {
		a.known = false
	}
}

// login asks the registry's /v2/ endpoint for its challenge and answers it.
func (a *authorizer) login(ctx context.Context) (string, time.Time, error) {
	if a.reg.TokenFile != "" {
		b, err := os.ReadFile(a.reg.TokenFile)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("preheat: token_file for %s: %w", a.t.host, err)
		}
		return "Bearer " + strings.TrimSpace(string(b)), time.Time{}, nil
	}
	password := a.reg.Password
	if a.reg.PasswordFile != "" {
		b, err := os.ReadFile(a.reg.PasswordFile)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("preheat: password_file for %s: %w", a.t.host, err)
		}
		password = strings.TrimSpace(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.t.upstream+"/v2/", nil)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("preheat: %w", err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("preheat: ping %s: %w", a.t.host, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return "", time.Time{}, nil // anonymous access (or an error the manifest GET will report)
	}
	for _, c := range auth.ParseAuthHeader(resp.Header) {
		switch c.Scheme {
		case auth.BearerAuth:
			to, err := auth.GenerateTokenOptions(ctx, a.t.host, a.reg.Username, password, c)
			if err != nil {
				return "", time.Time{}, fmt.Errorf("preheat: token challenge of %s: %w", a.t.host, err)
			}
			to.Scopes = []string{"repository:" + a.t.repo + ":pull"}
			tr, err := auth.FetchToken(ctx, a.client, nil, to)
			if err != nil {
				return "", time.Time{}, fmt.Errorf("preheat: token for %s from %s: %w", a.t.host, to.Realm, err)
			}
			tok := tr.Token
			if tok == "" {
				tok = tr.AccessToken
			}
			exp := time.Now().Add(time.Minute) // the spec's default lifetime
			if tr.ExpiresInSeconds > 0 {
				exp = time.Now().Add(time.Duration(tr.ExpiresInSeconds) * time.Second)
			}
			// Renew a little early: a blob's fetch starts after the check.
			return "Bearer " + tok, exp.Add(-10 * time.Second), nil
		case auth.BasicAuth:
			if a.reg.Username == "" {
				return "", time.Time{}, fmt.Errorf("preheat: %s asks for a user name and password: %w", a.t.host, ErrUnauthorized)
			}
			return "Basic " + base64.StdEncoding.EncodeToString([]byte(a.reg.Username+":"+password)), time.Time{}, nil
		}
	}
	return "", time.Time{}, fmt.Errorf("preheat: %s answered 401 without a Basic or Bearer challenge: %w", a.t.host, ErrUnauthorized)
}

// fetchManifest GETs t's manifest named by ref (a tag or digest) and
// returns its bytes, media type and digest. A digest reference is checked
// against the bytes.
func fetchManifest(ctx context.Context, client *http.Client, az *authorizer, t target, ref string) ([]byte, string, digest.Digest, error) {
	for attempt := 0; ; attempt++ {
		authz, err := az.header(ctx)
		if err != nil {
			return nil, "", "", err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.upstream+"/v2/"+t.repo+"/manifests/"+ref, nil)
		if err != nil {
			return nil, "", "", fmt.Errorf("preheat: %w", err)
		}
		req.Header.Set("Accept", manifestAccept)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", "", fmt.Errorf("preheat: manifest %s of %s: %w", ref, t, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
		_ = resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0:
			az.invalidate(authz)
			continue
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return nil, "", "", fmt.Errorf("preheat: manifest %s of %s: status %d: %w", ref, t, resp.StatusCode, ErrUnauthorized)
		case resp.StatusCode == http.StatusNotFound:
			return nil, "", "", fmt.Errorf("preheat: manifest %s of %s: %w", ref, t, ErrNotFound)
		case resp.StatusCode != http.StatusOK:
			return nil, "", "", fmt.Errorf("preheat: manifest %s of %s: status %d", ref, t, resp.StatusCode)
		}
		if err != nil {
			return nil, "", "", fmt.Errorf("preheat: manifest %s of %s: %w", ref, t, err)
		}
		if len(body) > maxManifest {
			return nil, "", "", fmt.Errorf("preheat: manifest %s of %s is over %d bytes", ref, t, maxManifest)
		}
		dgst := digest.FromBytes(body)
		if want, err := digest.Parse(ref); err == nil && want != dgst {
			return nil, "", "", fmt.Errorf("preheat: manifest %s of %s: got %s", ref, t, dgst)
		}
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if !isIndex(mt) && !isManifest(mt) {
			// Some registries answer application/json: take the
			// document's own mediaType.
			var probe struct {
				MediaType string `json:"mediaType"`
			}
			_ = json.Unmarshal(body, &probe)
			mt = probe.MediaType
		}
		return body, mt, dgst, nil
	}
}

// resolve reads t's manifest (and, for an index, each matching platform's
// manifest) and returns the blobs to warm: configs and layers, each once,
// in manifest order. match nil takes every platform.
func resolve(ctx context.Context, client *http.Client, az *authorizer, t target, match platforms.Matcher) ([]ocispec.Descriptor, error) {
	body, mt, dgst, err := fetchManifest(ctx, client, az, t, t.reference)
	if err != nil {
		return nil, err
	}
	manifests := []ocispec.Descriptor{{MediaType: mt, Digest: dgst}}
	bodies := [][]byte{body}
	if isIndex(mt) {
		var idx ocispec.Index
		if err := json.Unmarshal(body, &idx); err != nil {
			return nil, fmt.Errorf("preheat: index %s of %s: %w", dgst, t, ErrBadManifest)
		}
		manifests, bodies = nil, nil
		for _, m := range idx.Manifests {
			if !isManifest(m.MediaType) {
				continue
			}
			if match != nil && (m.Platform == nil || !match.Match(*m.Platform)) {
				continue
			}
			b, mmt, _, err := fetchManifest(ctx, client, az, t, m.Digest.String())
			if err != nil {
				return nil, err
			}
			manifests = append(manifests, ocispec.Descriptor{MediaType: mmt, Digest: m.Digest})
			bodies = append(bodies, b)
		}
		if len(manifests) == 0 {
			return nil, fmt.Errorf("preheat: index %s of %s: %w", dgst, t, ErrNoPlatform)
		}
	} else if !isManifest(mt) {
		return nil, fmt.Errorf("preheat: %s of %s has media type %q: %w", dgst, t, mt, ErrBadManifest)
	}
	var (
		out  []ocispec.Descriptor
		seen = map[digest.Digest]bool{}
	)
	for i, b := range bodies {
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil || !isManifest(manifests[i].MediaType) {
			return nil, fmt.Errorf("preheat: manifest %s of %s: %w", manifests[i].Digest, t, ErrBadManifest)
		}
		for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
			if d.Digest.Validate() != nil || seen[d.Digest] || len(d.URLs) > 0 || strings.Contains(d.MediaType, "nondistributable") || strings.Contains(d.MediaType, "foreign") {
				// Foreign layers live elsewhere and never in the registry.
				continue
			}
			seen[d.Digest] = true
			out = append(out, ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size})
		}
	}
	return out, nil
}

// parsePlatforms turns a platform filter into a matcher; empty means nil
// (every platform).
func parsePlatforms(list []string) (platforms.Matcher, error) {
	if len(list) == 0 {
		return nil, nil
	}
	ps := make([]ocispec.Platform, 0, len(list))
	for i, s := range list {
		p, err := platforms.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("platforms[%d] %q: %w", i, s, errors.Join(ErrBadRequest, err))
		}
		ps = append(ps, p)
	}
	return platforms.Any(ps...), nil
}
