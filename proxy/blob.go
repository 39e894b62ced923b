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
	"sync/atomic"
	"time"

	"github.com/eagle-p2p/eagle/blob"
)

// copyBufSize is the size of the pooled buffers blob bodies are copied
// with: large enough that a warm hit moves at disk/loopback speed in few
// syscalls, small enough that hundreds of concurrent pulls stay cheap.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// serveBlob answers GET and HEAD /v2/<name>/blobs/<digest> from the
// BlobSource, after checking the request and the client's access. rt and
// herr are what parseRoute read from r's path.
func (h *Handler) serveBlob(w http.ResponseWriter, r *http.Request, rt Route, herr *httpError) {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	if herr != nil {
		herr.write(w)
		return
	}
	name, dgst := rt.Name, rt.Digest
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
		if err != nil && h.canFallBack(ctx, err) {
			h.logFallback(ctx, r, ref, err.Error())
			size, err = h.origin.StatOrigin(ctx, ref)
		}
		if err != nil {
			h.sourceError(ctx, ref, err).write(w)
			return
		}
		hdr.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}

	b, first, err := h.open(ctx, r, ref, rng)
	if err != nil {
		var herr *httpError
		if errors.As(err, &herr) {
			herr.write(w)
		} else {
			h.sourceError(ctx, ref, err).write(w)
		}
		return
	}
	defer b.Close()
	size := b.Size()
	start, length, status := int64(0), size, http.StatusOK
	if rng != nil {
		start, length, _ = rng.resolve(size) // open checked it
		status = http.StatusPartialContent
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
	}
	hdr.Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	stateOf(r).blobFrom = sourceOf(b.Reader)
	err = nil
	if len(first) > 0 {
		// Out at once: the status line and the first verified bytes tell
		// the runtime the blob is coming.
		if _, err = w.Write(first); err == nil {
			err = http.NewResponseController(w).Flush()
		}
	}
	if err == nil {
		err = h.copyBody(w, b, length-int64(len(first)))
	}
	if err != nil {
		var rerr *readError
		if errors.As(err, &rerr) {
			// The status line and Content-Length are out: the only way to
			// tell the client is to cut the response short. The server
			// drops the connection (HTTP/1) or resets the stream (HTTP/2).
			h.log.LogAttrs(ctx, slog.LevelWarn, "blob stream failed; aborting response",
				slog.String("request_id", stateOf(r).id), slog.String("repository", name),
				slog.String("digest", dgst.String()), slog.Any("error", err))
			panic(http.ErrAbortHandler)
		}
		h.log.LogAttrs(ctx, slog.LevelDebug, "client went away during blob",
			slog.String("request_id", stateOf(r).id), slog.String("digest", dgst.String()), slog.Any("error", err))
	}
}

// open opens ref's blob for a GET, positioned at the range's start, and
// reads its first bytes before any status line goes out: a blob whose
// first verified byte does not come within FirstByteTimeout is answered
// 503 (or fetched from the origin, with fallback: origin), so that the
// runtime can go elsewhere instead of hanging. Its later reads are
// guarded by StallTimeout.
func (h *Handler) open(ctx context.Context, r *http.Request, ref blob.Ref, rng *byteRange) (*guardedReader, []byte, error) {
	src, err := h.src.Fetch(ctx, ref)
	if err != nil {
		if rng != nil || !h.canFallBack(ctx, err) {
			return nil, nil, err
		}
		h.logFallback(ctx, r, ref, err.Error())
		return h.openOrigin(ctx, ref)
	}
	b, first, err := h.firstBytes(ctx, src, rng)
	var stalled *stallError
	if errors.As(err, &stalled) {
		reason := stalled.reason
		if rng == nil && h.cfg.Fallback == FallbackOrigin && h.origin != nil {
			h.logFallback(ctx, r, ref, reason)
			return h.openOrigin(ctx, ref)
		}
		h.log.LogAttrs(ctx, slog.LevelWarn, "no verified byte in time; answering 503 so that the client goes elsewhere",
			slog.String("request_id", stateOf(r).id), slog.String("repository", ref.Repository),
			slog.String("digest", string(ref.Digest)), slog.Duration("first_byte_timeout", h.cfg.FirstByteTimeout),
			slog.String("reason", reason))
		return nil, nil, newError(http.StatusServiceUnavailable, CodeUnavailable,
			"no verified byte of the blob in time: "+reason, map[string]string{"repository": ref.Repository, "digest": string(ref.Digest)})
	}
	return b, first, err
}

// openOrigin opens ref's blob at the origin (fallback: origin) and reads
// its first bytes.
func (h *Handler) openOrigin(ctx context.Context, ref blob.Ref) (*guardedReader, []byte, error) {
	src, err := h.origin.FetchOrigin(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	b, first, err := h.firstBytes(ctx, src, nil)
	var stalled *stallError
	if errors.As(err, &stalled) {
		return nil, nil, newError(http.StatusServiceUnavailable, CodeUnavailable, "the origin sent no byte in time", nil)
	}
	return b, first, err
}

// firstBytes positions src at the range's start and reads its first
// bytes under FirstByteTimeout. On any error src is closed.
func (h *Handler) firstBytes(ctx context.Context, src blob.Reader, rng *byteRange) (*guardedReader, []byte, error) {
	start, length := int64(0), src.Size()
	if rng != nil {
		var ok bool
		if start, length, ok = rng.resolve(src.Size()); !ok {
			src.Close()
			return nil, nil, rangeNotSatisfiable(src.Size())
		}
	}
	if start > 0 {
		if _, err := src.Seek(start, io.SeekStart); err != nil {
			src.Close()
			return nil, nil, fmt.Errorf("seek to %d: %w", start, err)
		}
	}
	b := &guardedReader{Reader: src, first: h.cfg.FirstByteTimeout, stall: h.cfg.StallTimeout}
	if length == 0 {
		return b, nil, nil
	}
	buf := make([]byte, min(length, 64<<10))
	n, err := io.ReadAtLeast(b, buf, 1)
	if n == 0 {
		src.Close()
		var stalled *stallError
		if !errors.As(err, &stalled) {
			err = &readError{err}
		}
		return nil, nil, err
	}
	return b, buf[:n], nil
}

// canFallBack reports whether err, from the swarm, is one the origin may
// do better on: not the origin's own refusal, not a missing blob, not a
// digest mismatch, not the client leaving.
func (h *Handler) canFallBack(ctx context.Context, err error) bool {
	var oe *blob.OriginError
	return h.cfg.Fallback == FallbackOrigin && h.origin != nil && ctx.Err() == nil &&
		!errors.As(err, &oe) && !errors.Is(err, blob.ErrNotFound) && !errors.Is(err, blob.ErrDigestMismatch)
}

// logFallback says at warn why a blob comes from the origin.
func (h *Handler) logFallback(ctx context.Context, r *http.Request, ref blob.Ref, reason string) {
	h.log.LogAttrs(ctx, slog.LevelWarn, "the swarm cannot serve the blob; fetching it from the origin (fallback: origin)",
		slog.String("request_id", stateOf(r).id), slog.String("upstream", ref.Upstream),
		slog.String("repository", ref.Repository), slog.String("digest", string(ref.Digest)),
		slog.String("reason", reason))
}

// stallError is a read that did not return within its timeout.
type stallError struct {
	after  time.Duration
	reason string
}

func (e *stallError) Error() string {
	return fmt.Sprintf("no byte for %v: %s", e.after, e.reason)
}

// guardedReader bounds each read of a blob: the first by the first-byte
// timeout, later ones by the stall timeout (<= 0: no bound). A read that
// takes longer is ended by closing the blob, which the p2p engine's
// readers allow from another goroutine, and reported as a *stallError
// with the source's own explanation when it has one.
type guardedReader struct {
	blob.Reader
	first, stall time.Duration
	started      bool
}

func (g *guardedReader) Read(p []byte) (int, error) {
	d := g.stall
	if !g.started {
		d = g.first
	}
	if d <= 0 {
		n, err := g.Reader.Read(p)
		g.started = g.started || n > 0
		return n, err
	}
	var fired atomic.Bool
	t := time.AfterFunc(d, func() {
		fired.Store(true)
		g.Reader.Close()
	})
	n, err := g.Reader.Read(p)
	if !t.Stop() && fired.Load() && n == 0 {
		reason := "the source sent nothing"
		if s, ok := g.Reader.(interface{ StallReason() string }); ok {
			reason = s.StallReason()
		}
		return 0, &stallError{after: d, reason: reason}
	}
	g.started = g.started || n > 0
	return n, err
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
