package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/blob"
)

// Authorizer decides whether a client may read a blob; *auth.Authorizer
// implements it. The proxy asks it before every blob read, and tells it
// to Forget a blob the upstream has just deleted.
type Authorizer interface {
	// Authorize returns nil when ref.Authorization may read the blob, a
	// *blob.OriginError with the origin's refusal, or another error when
	// it cannot tell.
	Authorize(ctx context.Context, ref blob.Ref) error
	// Forget drops what is known about the blob dgst in repository at
	// upstream, for every credential.
	Forget(upstream, repository string, dgst digest.Digest)
}

// authorize asks the Authorizer and turns its answer into the *httpError
// to answer the client with, or nil.
func (h *Handler) authorize(ctx context.Context, ref blob.Ref) *httpError {
	err := h.auth.Authorize(ctx, ref)
	if err == nil {
		return nil
	}
	detail := map[string]string{"repository": ref.Repository, "digest": string(ref.Digest)}
	var oe *blob.OriginError
	switch {
	case errors.As(err, &oe):
		herr := newError(oe.StatusCode, codeForStatus(oe.StatusCode),
			"origin refused access to blob: "+http.StatusText(oe.StatusCode), detail)
		herr.wwwAuthenticate = oe.WWWAuthenticate
		herr.retryAfter = oe.RetryAfter
		return herr
	case ctx.Err() != nil:
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "request canceled while authorizing", nil)
	}
	h.log.LogAttrs(ctx, slog.LevelWarn, "cannot authorize blob read; the client will fall back",
		slog.String("upstream", ref.Upstream), slog.String("repository", ref.Repository),
		slog.String("digest", string(ref.Digest)), slog.Any("error", err))
	if errors.Is(err, auth.ErrUntrusted) {
		return newError(http.StatusBadGateway, CodeUnavailable, "this upstream is not configured and has not served this blob to Eagle", detail)
	}
	return newError(http.StatusBadGateway, CodeUnavailable, "cannot authorize against origin now", detail)
}
