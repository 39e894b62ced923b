package seeder

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
)

// ErrInvalidRequest reports a GetMetaInfo request with a malformed field.
// The server answers it with codes.InvalidArgument.
var ErrInvalidRequest = errors.New("seeder: invalid request")

// maxAuthorizationLen bounds the forwarded Authorization value; registry
// bearer tokens are a few KiB at most.
const maxAuthorizationLen = 16 << 10

// blobRequest is a validated GetMetaInfo request.
type blobRequest struct {
	upstream      *url.URL // scheme and host only
	repository    string
	digest        digest.Digest
	authorization string
	// asked is when the caller's request arrived (zero: unknown).
	asked time.Time
}

// blobURL is where the origin serves the blob.
func (r blobRequest) blobURL() string {
	u := url.URL{
		Scheme: r.upstream.Scheme,
		Host:   r.upstream.Host,
		Path:   "/v2/" + r.repository + "/blobs/" + r.digest.String(),
	}
	return u.String()
}

// parseRequest validates every field of req and returns them parsed. Its
// errors wrap ErrInvalidRequest and name the offending field.
func parseRequest(req *seederpb.GetMetaInfoRequest) (blobRequest, error) {
	dgst := digest.Digest(req.GetDigest())
	if err := storage.ValidateDigest(dgst); err != nil {
		return blobRequest{}, fmt.Errorf("%w: digest: %w", ErrInvalidRequest, err)
	}
	if err := validateRepository(req.GetRepository()); err != nil {
		return blobRequest{}, fmt.Errorf("%w: repository %q: %w", ErrInvalidRequest, req.GetRepository(), err)
	}
	u, err := parseUpstream(req.GetUpstream())
	if err != nil {
		return blobRequest{}, fmt.Errorf("%w: upstream %q: %w", ErrInvalidRequest, req.GetUpstream(), err)
	}
	auth := req.GetAuthorization()
	if len(auth) > maxAuthorizationLen {
		return blobRequest{}, fmt.Errorf("%w: authorization is %d bytes, more than %d", ErrInvalidRequest, len(auth), maxAuthorizationLen)
	}
	if strings.ContainsAny(auth, "\r\n\x00") {
		return blobRequest{}, fmt.Errorf("%w: authorization contains a control character", ErrInvalidRequest)
	}
	return blobRequest{upstream: u, repository: req.GetRepository(), digest: dgst, authorization: auth}, nil
}

// validateRepository checks a repository name against the distribution
// grammar, with a precise reason for the common mistakes.
func validateRepository(name string) error {
	switch {
	case name == "":
		return reference.ErrNameEmpty
	case len(name) > reference.RepositoryNameTotalLengthMax:
		return reference.ErrNameTooLong
	case strings.ToLower(name) != name:
		return reference.ErrNameContainsUppercase
	}
	if _, err := reference.WithName(name); err != nil {
		return err
	}
	return nil
}

// parseUpstream accepts an http or https base URL with a host and nothing
// after it but an optional "/".
func parseUpstream(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scheme %q is not http or https", u.Scheme)
	case u.Opaque != "":
		return nil, errors.New(`want "scheme://host[:port]"`)
	case u.User != nil:
		return nil, errors.New("has user info; pass credentials as authorization")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("no host")
	case u.Path != "" && u.Path != "/":
		return nil, fmt.Errorf("has path %q", u.Path)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("has a query")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, errors.New("has a fragment")
	}
	if strings.HasSuffix(u.Host, ":") {
		return nil, errors.New("empty port")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("bad port %q", p)
		}
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}
