package proxy

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// This file holds the parsers of client input on the blob route: the
// repository name, the digest (both also read by ParseRoute) and the Range
// header. All of them return an *httpError ready to be written, never
// panic, and are fuzzed.

// anchoredName is the grammar of a repository name on the registry API,
// from the OCI distribution spec: lower-case components of letters and
// digits joined by '.', '_', '__' or dashes, separated by '/'.
// reference.WithName is laxer here: it takes a first component as a
// registry host, with upper case and a port ("Library/alpine",
// "localhost:5000/app").
var anchoredName = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

// parseName validates a repository name with the registry API grammar
// (anchoredName) and its length limit.
func parseName(name string) (string, *httpError) {
	detail := map[string]string{"name": truncate(name, 300)}
	var msg, reason string
	switch {
	case len(name) > reference.RepositoryNameTotalLengthMax:
		msg = fmt.Sprintf("repository name must not be more than %d characters", reference.RepositoryNameTotalLengthMax)
		reason = msg
	case !anchoredName.MatchString(name):
		msg = "invalid repository name"
		reason = "components must be lower-case letters and digits joined by '.', '_', '__' or '-'"
	default:
		return name, nil
	}
	herr := newError(http.StatusBadRequest, CodeNameInvalid, msg, detail)
	herr.cause = fmt.Errorf("%w %q: %s", ErrNameInvalid, truncate(name, 300), reason)
	return "", herr
}

// parseDigest validates a blob digest: well formed, sha256 or sha512.
func parseDigest(s string) (digest.Digest, *httpError) {
	d := digest.Digest(s)
	detail := map[string]string{"digest": truncate(s, 200)}
	var herr *httpError
	if err := d.Validate(); err != nil {
		herr = newError(http.StatusBadRequest, CodeDigestInvalid, "invalid digest: "+err.Error(), detail)
		herr.cause = fmt.Errorf("%w %q: %w", ErrDigestInvalid, truncate(s, 200), err)
		return "", herr
	}
	switch d.Algorithm() {
	case digest.SHA256, digest.SHA512:
		return d, nil
	}
	msg := fmt.Sprintf("unsupported digest algorithm %q", d.Algorithm())
	herr = newError(http.StatusBadRequest, CodeDigestInvalid, msg, detail)
	herr.cause = fmt.Errorf("%w %q: %s", ErrDigestInvalid, truncate(s, 200), msg)
	return "", herr
}

// byteRange is one parsed "bytes=" range spec, before the blob size is known.
type byteRange struct {
	first, last int64 // last < 0: open-ended ("a-"); unused for a suffix
	suffix      int64 // > 0 or 0 with isSuffix: "-n"
	isSuffix    bool
}

// errRangeSyntax wraps every malformed-Range error.
var errRangeSyntax = errors.New("malformed Range header")

// parseRange parses a Range header value holding exactly one byte range:
// "bytes=a-b", "bytes=a-" or "bytes=-n".
func parseRange(h string) (byteRange, error) {
	unit, spec, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return byteRange{}, fmt.Errorf("%w: only \"bytes=\" ranges are supported", errRangeSyntax)
	}
	if strings.Contains(spec, ",") {
		return byteRange{}, fmt.Errorf("%w: multiple ranges are not supported", errRangeSyntax)
	}
	spec = strings.Trim(spec, " \t")
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return byteRange{}, fmt.Errorf("%w: range %q has no '-'", errRangeSyntax, truncate(spec, 64))
	}
	if a == "" {
		n, err := parseRangeInt(b)
		if err != nil {
			return byteRange{}, err
		}
		return byteRange{suffix: n, isSuffix: true}, nil
	}
	first, err := parseRangeInt(a)
	if err != nil {
		return byteRange{}, err
	}
	if b == "" {
		return byteRange{first: first, last: -1}, nil
	}
	last, err := parseRangeInt(b)
	if err != nil {
		return byteRange{}, err
	}
	// An end before the start (RFC 9110 calls the spec invalid) is kept:
	// it is answered 416, as net/http — and so the distribution registry —
	// does and the OCI conformance suite requires ("bytes=500-0").
	return byteRange{first: first, last: last}, nil
}

// unsatisfiable tells whether no blob of any size can satisfy the range
// ("bytes=-0", or an end before the start), so that the answer is 416
// whatever the blob holds.
func (r byteRange) unsatisfiable() bool {
	if r.isSuffix {
		return r.suffix == 0
	}
	return r.last >= 0 && r.last < r.first
}

// parseRangeInt parses a non-negative decimal without sign or spaces.
func parseRangeInt(s string) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, fmt.Errorf("%w: bad position %q", errRangeSyntax, truncate(s, 32))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: bad position %q", errRangeSyntax, truncate(s, 32))
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n == math.MaxInt64 {
		return 0, fmt.Errorf("%w: position %q out of range", errRangeSyntax, truncate(s, 32))
	}
	return n, nil
}

// resolve applies the range to a blob of the given size and returns the
// offset and length to send; ok is false when the range is unsatisfiable.
func (r byteRange) resolve(size int64) (start, length int64, ok bool) {
	if r.unsatisfiable() {
		return 0, 0, false
	}
	if r.isSuffix {
		if size == 0 {
			return 0, 0, false
		}
		n := min(r.suffix, size)
		return size - n, n, true
	}
	if r.first >= size {
		return 0, 0, false
	}
	last := size - 1
	if r.last >= 0 && r.last < last {
		last = r.last
	}
	return r.first, last - r.first + 1, true
}
