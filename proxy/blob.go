package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/gorilla/mux"
)

// copyBufSize is the size of the pooled buffers blob bodies are copied
// with: large enough that a warm hit moves at disk/loopback speed in few
// syscalls, small enough that hundreds of concurrent pulls stay cheap.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// serveBlob answers GET and HEAD /v2/<name>/blobs/<digest> from the
// BlobSource, after checking the request and the client's access.
func (h *Handler) serveBlob(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	vars := mux.Vars(r)
	name, herr := parseName(vars["name"])
	if herr != nil {
		herr.write(w)
		return
	}
	dgst, herr := parseDigest(vars["digest"])
	if herr != nil {
		herr.write(w)
		return
	}
	var rng *byteRange
	if v := r.Header.Values("Range"); len(v) > 0 && r.Method == http.MethodGet {
		if len(v) > 1 {
			newError(http.StatusBadRequest, CodeRangeInvalid, "multiple Range headers", nil).write(w)
			return
		}
		br, err := parseRange(v[0])
		if err != nil {
			newError(http.StatusBadRequest, CodeRangeInvalid, err.Error(), nil).write(w)
			return
		}
		rng = &br
	}
	up, herr := h.upstreamFor(r)
	if herr != nil {
		herr.write(w)
		return
	}
	ref := blob.Ref{
		Upstream:      up.String(),
		Repository:    name,
		Digest:        dgst,
		Authorization: r.Header.Get("Authorization"),
	}
	ctx := r.Context()
	if h.cfg.AuthorizeBlobsEnabled() {
		if herr := h.authorize(ctx, ref); herr != nil {
			herr.write(w)
			return
		}
	}

	if rng != nil && rng.unsatisfiable() {
		// Answered without fetching: the size, for Content-Range, is all
		// the blob source has to tell.
		size, err := h.src.Stat(ctx, ref)
		if err != nil {
			h.sourceError(ctx, ref, err).write(w)
			return
		}
		rangeNotSatisfiable(size).write(w)
		return
	}

	hdr := w.Header()
	hdr.Set("Docker-Content-Digest", dgst.String())
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Accept-Ranges", "bytes")
	hdr.Set("Etag", `"`+dgst.String()+`"`)
	// Content-addressed: the bytes behind a digest never change.
	hdr.Set("Cache-Control", "max-age=31536000")

	if r.Method == http.MethodHead {
		size, err := h.src.Stat(ctx, ref)
		if err != nil {
			h.sourceError(ctx, ref, err).write(w)
			return
		}
		hdr.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}

	blob, err := h.src.Fetch(ctx, ref)
	if err != nil {
		h.sourceError(ctx, ref, err).write(w)
		return
	}
	defer blob.Close()
	size := blob.Size()
	start, length, status := int64(0), size, http.StatusOK
	if rng != nil {
		var ok bool
		start, length, ok = rng.resolve(size)
		if !ok {
			rangeNotSatisfiable(size).write(w)
			return
		}
		status = http.StatusPartialContent
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
	}
	if start > 0 {
		if _, err := blob.Seek(start, io.SeekStart); err != nil {
			h.sourceError(ctx, ref, fmt.Errorf("seek to %d: %w", start, err)).write(w)
			return
		}
	}
	hdr.Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	stateOf(r).blobFrom = sourceOf(blob)
	if err := h.copyBody(w, blob, length); err != nil {
		var rerr *readError
		if errors.As(err, &rerr) {
			// The status line and Content-Length are out: the only way to
			// tell the client is to cut the response short. The server
			// drops the connection (HTTP/1) or resets the stream (HTTP/2).
			h.log.LogAttrs(ctx, slog.LevelError, "blob stream failed; aborting response",
				slog.String("request_id", stateOf(r).id), slog.String("repository", name),
				slog.String("digest", dgst.String()), slog.Any("error", err))
			panic(http.ErrAbortHandler)
		}
		h.log.LogAttrs(ctx, slog.LevelDebug, "client went away during blob",
			slog.String("request_id", stateOf(r).id), slog.String("digest", dgst.String()), slog.Any("error", err))
	}
}

// rangeNotSatisfiable is the 416 answer for a blob of size bytes.
func rangeNotSatisfiable(size int64) *httpError {
	herr := newError(http.StatusRequestedRangeNotSatisfiable, CodeRangeInvalid,
		fmt.Sprintf("range not satisfiable for a blob of %d bytes", size), nil)
	herr.contentRange = fmt.Sprintf("bytes */%d", size)
	return herr
}

// readError marks a failure of the blob source (as opposed to the client).
type readError struct{ err error }

func (e *readError) Error() string { return "reading blob: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// copyBody copies exactly n bytes of src to w. A failure to read, or fewer
// bytes than n, is a *readError; a failure to write is returned as is.
// Short reads (the source is at the edge of what is verified) are flushed
// at once so that the runtime gets each byte as soon as it exists.
func (h *Handler) copyBody(w http.ResponseWriter, src io.Reader, n int64) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	for n > 0 {
		chunk := buf
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		k, rerr := io.ReadAtLeast(src, chunk, 1)
		if k > 0 {
			if _, err := w.Write(chunk[:k]); err != nil {
				return err
			}
			n -= int64(k)
			if k < len(chunk) {
				_ = rc.Flush()
			}
		}
		if rerr != nil {
			if n == 0 && errors.Is(rerr, io.EOF) {
				return nil
			}
			if errors.Is(rerr, io.EOF) {
				rerr = fmt.Errorf("%w: %d bytes missing", io.ErrUnexpectedEOF, n)
			}
			return &readError{rerr}
		}
	}
	return nil
}

// sourceError maps a BlobSource error to the answer for the client.
func (h *Handler) sourceError(ctx context.Context, ref blob.Ref, err error) *httpError {
	detail := map[string]string{"repository": ref.Repository, "digest": ref.Digest.String()}
	var oe *blob.OriginError
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return newError(http.StatusNotFound, CodeBlobUnknown, "blob unknown to registry", detail)
	case errors.As(err, &oe) && oe.StatusCode >= 400 && oe.StatusCode < 500:
		herr := newError(oe.StatusCode, codeForStatus(oe.StatusCode), "origin refused the blob: "+http.StatusText(oe.StatusCode), detail)
		herr.wwwAuthenticate = oe.WWWAuthenticate
		return herr
	case ctx.Err() != nil:
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "request canceled", detail)
	}
	h.log.LogAttrs(ctx, slog.LevelWarn, "blob source failed",
		slog.String("repository", ref.Repository), slog.String("digest", ref.Digest.String()), slog.Any("error", err))
	if errors.As(err, &oe) {
		return newError(http.StatusBadGateway, CodeUnavailable, "origin failed: "+http.StatusText(oe.StatusCode), detail)
	}
	return newError(http.StatusServiceUnavailable, CodeUnavailable, "blob source cannot serve this blob now", detail)
}
