// Package blob is the contract between Eagle's parts: how a blob is named
// at its origin registry (Ref), the reader a blob source hands out
// (Reader), the Source a registry endpoint serves blobs from, and the
// errors callers branch on. It imports no torrent code, so the registry
// proxy and the containerd resolver can depend on it without linking the
// peer.
package blob

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/opencontainers/go-digest"
)

// ErrNotFound reports that a blob does not exist at its origin.
var ErrNotFound = errors.New("blob: not found")

// ErrDigestMismatch reports that bytes did not hash to the digest they
// were asked for by. Nothing was cached.
var ErrDigestMismatch = errors.New("blob: digest mismatch")

// Ref names a blob at its origin registry and carries the credentials of
// the client that asked for it: every part that hands out bytes checks
// with the origin that these credentials may read the blob.
type Ref struct {
	// Upstream is the origin registry's base URL, e.g.
	// "https://registry-1.docker.io" or "http://127.0.0.1:5000".
	Upstream string
	// Repository is the repository name, e.g. "library/alpine".
	Repository string
	// Digest is the blob's content digest.
	Digest digest.Digest
	// Authorization is the client's Authorization header value, if any.
	Authorization string
}

// Reader is a blob being served: a sequential, seekable reader whose bytes
// have all been verified, and whose final bytes are released only after
// the whole blob passed its digest.
type Reader interface {
	io.ReadSeekCloser
	// Size is the blob's length in bytes.
	Size() int64
}

// Source serves blobs. The p2p engine implements it.
//
// Errors wrapping ErrNotFound mean the origin has no such blob; an
// *OriginError is the origin's refusal of the client's credentials; any
// other error means the source cannot serve the blob now, and a registry
// endpoint answers 5xx so that the runtime falls back to its next host.
type Source interface {
	// Stat returns the blob's size.
	Stat(ctx context.Context, ref Ref) (int64, error)
	// Fetch opens the blob for reading.
	Fetch(ctx context.Context, ref Ref) (Reader, error)
}

// OriginError is an origin's refusal (401, 403, 404, 429, ...), carried to
// the client so that it can answer the way the origin would have. It holds
// the status and the headers a client needs to log in or back off, never
// the origin's body.
type OriginError struct {
	// StatusCode is the HTTP status the origin answered.
	StatusCode int
	// WWWAuthenticate is the origin's WWW-Authenticate header, if any.
	WWWAuthenticate string
	// RetryAfter is the origin's Retry-After header, if any.
	RetryAfter string
}

// Refusal returns the origin's refusal in resp: an *OriginError for a 4xx,
// nil for any other status.
func Refusal(resp *http.Response) *OriginError {
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		return nil
	}
	return &OriginError{
		StatusCode:      resp.StatusCode,
		WWWAuthenticate: resp.Header.Get("WWW-Authenticate"),
		RetryAfter:      resp.Header.Get("Retry-After"),
	}
}

func (e *OriginError) Error() string {
	text := http.StatusText(e.StatusCode)
	if text == "" {
		return "origin answered " + strconv.Itoa(e.StatusCode)
	}
	return "origin answered " + strconv.Itoa(e.StatusCode) + " " + text
}
