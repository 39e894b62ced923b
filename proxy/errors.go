package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ErrorCode is a registry error code, as in the OCI distribution spec.
type ErrorCode string

// Error codes the proxy answers with, and UNSUPPORTED for an embedder's
// own answers (see WriteError). Most come from the OCI distribution spec;
// RANGE_INVALID and UNAVAILABLE are the ones distribution uses.
const (
	// CodeBlobUnknown: the blob is not known to the registry.
	CodeBlobUnknown ErrorCode = "BLOB_UNKNOWN"
	// CodeDigestInvalid: the digest is malformed or uses an unsupported algorithm.
	CodeDigestInvalid ErrorCode = "DIGEST_INVALID"
	// CodeNameInvalid: the repository name is malformed.
	CodeNameInvalid ErrorCode = "NAME_INVALID"
	// CodeRangeInvalid: the Range header is malformed or cannot be satisfied.
	CodeRangeInvalid ErrorCode = "RANGE_INVALID"
	// CodeUnauthorized: the origin wants (other) credentials.
	CodeUnauthorized ErrorCode = "UNAUTHORIZED"
	// CodeDenied: the origin refused access with these credentials.
	CodeDenied ErrorCode = "DENIED"
	// CodeTooManyRequests: the origin is rate limiting the client.
	CodeTooManyRequests ErrorCode = "TOOMANYREQUESTS"
	// CodeUnavailable: Eagle cannot serve the request now; the client
	// should try its next host (usually the origin).
	CodeUnavailable ErrorCode = "UNAVAILABLE"
	// CodeUnknown: an origin answer that has no more specific code.
	CodeUnknown ErrorCode = "UNKNOWN"
	// CodeUnsupported: the operation is not offered here (a push to a
	// read-only endpoint). The proxy itself relays such requests.
	CodeUnsupported ErrorCode = "UNSUPPORTED"
)

// Error is one entry of a registry error response.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
	Detail  any       `json:"detail,omitempty"`
}

// ErrorResponse is the body of every error the proxy itself answers:
// {"errors":[{"code":"...","message":"...","detail":...}]}.
type ErrorResponse struct {
	Errors []Error `json:"errors"`
}

// httpError is an error answer not yet written: status, the error entry,
// and the headers that go with it.
type httpError struct {
	status          int
	err             Error
	wwwAuthenticate string
	retryAfter      string
	contentRange    string
	// cause is the error ParseRoute reports for this answer (wrapping
	// ErrNameInvalid or ErrDigestInvalid); nil for the others.
	cause error
}

func (e *httpError) Error() string {
	return strconv.Itoa(e.status) + " " + string(e.err.Code) + ": " + e.err.Message
}

// newError builds an httpError.
func newError(status int, code ErrorCode, msg string, detail any) *httpError {
	return &httpError{status: status, err: Error{Code: code, Message: msg, Detail: detail}}
}

// codeForStatus picks the error code that matches an origin's refusal.
func codeForStatus(status int) ErrorCode {
	switch status {
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeDenied
	case http.StatusNotFound:
		return CodeBlobUnknown
	case http.StatusTooManyRequests:
		return CodeTooManyRequests
	default:
		return CodeUnknown
	}
}

// WriteError answers a registry API request with an error in the OCI
// distribution format, as the proxy answers its own:
//
//	{"errors":[{"code":"NAME_INVALID","message":"...","detail":...}]}
//
// with Content-Type application/json and the registry API version header
// (Docker believes a /v2/ challenge only with it). Headers already set for
// a blob (Content-Length, Content-Range, Docker-Content-Digest, Etag,
// Accept-Ranges) are removed; others, such as WWW-Authenticate, are kept,
// so set a challenge before calling it. A nil detail is left out, and so
// is one that does not marshal to JSON. The body is written for HEAD too;
// net/http drops it and keeps its Content-Length.
func WriteError(w http.ResponseWriter, status int, code ErrorCode, message string, detail any) {
	newError(status, code, message, detail).write(w)
}

// write sends the error as an OCI JSON error response.
func (e *httpError) write(w http.ResponseWriter) {
	h := w.Header()
	for _, k := range []string{"Content-Length", "Content-Range", "Docker-Content-Digest", "Etag", "Accept-Ranges"} {
		h.Del(k)
	}
	if e.wwwAuthenticate != "" {
		h.Set("WWW-Authenticate", e.wwwAuthenticate)
	}
	if e.retryAfter != "" {
		h.Set("Retry-After", e.retryAfter)
	}
	if e.contentRange != "" {
		h.Set("Content-Range", e.contentRange)
	}
	body, err := json.Marshal(ErrorResponse{Errors: []Error{e.err}})
	if err != nil {
		// A detail that does not marshal (WriteError takes any):
		// the entry without it rather than no answer.
		body, _ = json.Marshal(ErrorResponse{Errors: []Error{{Code: e.err.Code, Message: e.err.Message}}})
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}
