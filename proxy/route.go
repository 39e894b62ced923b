package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// RouteKind is the kind of registry API request a path names. Its values
// are also the route label of eagle_proxy_requests_total.
type RouteKind string

// Route kinds, by path. The method does not change the kind: a blob GET,
// HEAD and DELETE are all RouteBlob.
const (
	// RoutePing is /v2/ (and /v2): the API version check.
	RoutePing RouteKind = "ping"
	// RouteBlob is /v2/<name>/blobs/<digest>.
	RouteBlob RouteKind = "blob"
	// RouteUpload is /v2/<name>/blobs/uploads/ and
	// /v2/<name>/blobs/uploads/<reference>: a push.
	RouteUpload RouteKind = "upload"
	// RouteManifest is /v2/<name>/manifests/<tag or digest>.
	RouteManifest RouteKind = "manifest"
	// RouteTags is /v2/<name>/tags/list.
	RouteTags RouteKind = "tags"
	// RouteReferrers is /v2/<name>/referrers/<digest>.
	RouteReferrers RouteKind = "referrers"
	// RouteCatalog is /v2/_catalog.
	RouteCatalog RouteKind = "catalog"
	// RouteOther is every other path, including a manifest reference that
	// is neither a tag nor a digest: no registry route, as the
	// distribution registry's router sees it.
	RouteOther RouteKind = "other"
)

// Errors of ParseRoute, for a path whose kind is known but whose parts are
// malformed. A registry answers them 400 with CodeNameInvalid and
// CodeDigestInvalid; the text of the errors that wrap them names the bad
// input and what is wrong with it, for the message.
var (
	// ErrNameInvalid reports a repository name that does not follow the
	// distribution grammar (lower case, no empty, "." or ".."
	// components, at most 255 characters), or that spans an escaped '/'.
	ErrNameInvalid = errors.New("invalid repository name")
	// ErrDigestInvalid reports a malformed digest, or one whose algorithm
	// is neither sha256 nor sha512.
	ErrDigestInvalid = errors.New("invalid digest")
)

// Route is what a registry API request asks for, read from its path.
type Route struct {
	// Kind is the kind of request; it is set even when ParseRoute
	// returns an error.
	Kind RouteKind
	// Name is the repository, valid by the distribution grammar, for
	// RouteBlob, RouteUpload, RouteManifest, RouteTags and
	// RouteReferrers.
	Name string
	// Digest is the blob's digest (RouteBlob), the subject's
	// (RouteReferrers), or the manifest's when it is asked for by digest
	// (RouteManifest): well formed, sha256 or sha512.
	Digest digest.Digest
	// Reference is the manifest's tag or digest (RouteManifest), or the
	// upload session (RouteUpload; empty for the POST that starts one),
	// as in the path. An upload session is the upstream's to judge.
	Reference string
}

// ParseRoute reads the registry API route of r from its path, with the
// parsers the proxy serves blobs with, so that an embedder checking
// access by repository sees exactly the name the proxy serves.
//
// The path is read decoded (r.URL.Path), as the distribution registry
// reads it. A name that spans an escaped '/' ("a%2Fb") is refused with
// ErrNameInvalid: a server that splits the path before decoding it would
// read another name.
//
// An error wraps ErrNameInvalid or ErrDigestInvalid. With it, Route holds
// the Kind and the fields that are valid: the name is checked before the
// digest, so Name is set when only the digest is malformed.
func ParseRoute(r *http.Request) (Route, error) {
	rt, herr := parseRoute(r.URL.Path, r.URL.EscapedPath())
	if herr != nil {
		return rt, &routeError{herr}
	}
	return rt, nil
}

// routeError is an error of ParseRoute: it wraps ErrNameInvalid or
// ErrDigestInvalid and carries the proxy's own answer to it.
type routeError struct{ ans *httpError }

func (e *routeError) Error() string { return e.ans.cause.Error() }
func (e *routeError) Unwrap() error { return e.ans.cause }

// anchoredTag matches a manifest tag, by the distribution grammar.
var anchoredTag = regexp.MustCompile(`^(?:` + reference.TagRegexp.String() + `)$`)

// parseRoute classifies a decoded request path; escaped is the path as
// the client sent it. Repository names may contain the words of the API
// ("blobs", "manifests", ...) as components, so the route is read from
// the end: the keyword is the next-to-last segment (the one before
// "uploads" for an upload session), and everything before it is the name.
func parseRoute(path, escaped string) (Route, *httpError) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	switch {
	case !ok:
		if path == "/v2" {
			return Route{Kind: RoutePing}, nil
		}
		return Route{Kind: RouteOther}, nil
	case rest == "":
		return Route{Kind: RoutePing}, nil
	case rest == "_catalog":
		return Route{Kind: RouteCatalog}, nil
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	if n < 3 {
		return Route{Kind: RouteOther}, nil
	}
	last := segs[n-1]
	rt := Route{Kind: RouteOther}
	nameEnd := n - 2
	checkDigest := false
	switch segs[n-2] {
	case "blobs":
		if last == "uploads" {
			rt.Kind = RouteUpload // the POST that starts one, without its '/'
		} else {
			rt.Kind, checkDigest = RouteBlob, true
		}
	case "uploads":
		if n >= 4 && segs[n-3] == "blobs" && last != "." && last != ".." {
			rt.Kind, rt.Reference, nameEnd = RouteUpload, last, n-3
		}
	case "manifests":
		switch {
		case strings.Contains(last, ":"):
			rt.Kind, rt.Reference, checkDigest = RouteManifest, last, true
		case anchoredTag.MatchString(last):
			rt.Kind, rt.Reference = RouteManifest, last
		}
	case "referrers":
		rt.Kind, checkDigest = RouteReferrers, true
	case "tags":
		if last == "list" {
			rt.Kind = RouteTags
		}
	}
	if rt.Kind == RouteOther {
		return rt, nil
	}
	kind := rt.Kind
	name := strings.Join(segs[:nameEnd], "/")
	if strings.Contains(strings.ToUpper(escaped), "%2F") {
		herr := newError(http.StatusBadRequest, CodeNameInvalid, "invalid repository name: the path has an escaped '/'",
			map[string]string{"name": truncate(name, 300)})
		herr.cause = fmt.Errorf("%w %q: the path has an escaped '/'", ErrNameInvalid, truncate(name, 300))
		return Route{Kind: kind}, herr
	}
	if _, herr := parseName(name); herr != nil {
		return Route{Kind: kind}, herr
	}
	rt.Name = name
	if checkDigest {
		d, herr := parseDigest(last)
		if herr != nil {
			return Route{Kind: kind, Name: name}, herr
		}
		rt.Digest = d
	}
	return rt, nil
}
