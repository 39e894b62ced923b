package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/netguard"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/opencontainers/go-digest"
)

// An agent whose swarm cannot serve a blob (no seeder reachable, no peer
// answering) can fetch it from the origin itself, as the runtime would:
// the registry endpoint's fallback: origin. The bytes stream to the
// caller as they arrive, are hashed on the way, and are committed to the
// store only if they match the digest; the last byte is held back until
// they did, so a mismatch fails the read before it can end cleanly.

// ErrNoContentLength reports an origin answer without a length, which a
// stream that holds its last byte back cannot serve.
var ErrNoContentLength = errors.New("p2p: origin sent no Content-Length")

// originClient is the engine's HTTP client for fallback fetches: it
// follows a registry's redirects to its storage, but only to public
// addresses or the upstream's own host, and it never asks for compressed
// bodies (the digest is of the bytes as stored).
func originClient(upstreamHost string) *http.Client {
	hosts, _ := netguard.ParseHosts([]string{upstreamHost})
	g := &netguard.Guard{Listed: hosts}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = g.DialContext(&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second})
	t.ResponseHeaderTimeout = 30 * time.Second
	t.DisableCompression = true
	return &http.Client{Transport: t, CheckRedirect: g.CheckRedirect}
}

// originRequest sends method for ref's blob to its origin with the
// caller's credentials.
func originRequest(ctx context.Context, method string, ref blob.Ref) (*http.Response, *http.Client, error) {
	u, err := url.Parse(ref.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("p2p: upstream %q is not an http(s) base URL", ref.Upstream)
	}
	u = &url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/v2/" + ref.Repository + "/blobs/" + string(ref.Digest)}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("User-Agent", "eagle-agent")
	if ref.Authorization != "" {
		req.Header.Set("Authorization", ref.Authorization)
	}
	client := originClient(u.Host)
	resp, err := client.Do(req)
	if err != nil {
		client.CloseIdleConnections()
		return nil, nil, fmt.Errorf("p2p: %s %s: origin did not answer", method, u.Host)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return resp, client, nil
	case resp.StatusCode == http.StatusNotFound:
		err = fmt.Errorf("%w: %s at %s", blob.ErrNotFound, ref.Digest, u.Host)
	case blob.Refusal(resp) != nil:
		err = blob.Refusal(resp)
	default:
		err = fmt.Errorf("p2p: %s %s: origin answered %d", method, u.Host, resp.StatusCode)
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	return nil, nil, err
}

// StatOrigin returns the blob's size as its origin reports it, after the
// Authorizer let ref's credentials read it.
func (e *Engine) StatOrigin(ctx context.Context, ref blob.Ref) (int64, error) {
	if err := storage.ValidateDigest(ref.Digest); err != nil {
		return 0, err
	}
	if err := e.authorize(ctx, ref); err != nil {
		return 0, err
	}
	resp, client, err := originRequest(ctx, http.MethodHead, ref)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	if resp.ContentLength < 0 {
		return 0, ErrNoContentLength
	}
	return resp.ContentLength, nil
}

// FetchOrigin reads ref's blob from its origin, after the Authorizer let
// ref's credentials read it: streamed as it arrives, verified against its
// digest (the last byte is released only then) and committed to the
// store, so that later reads come from the node. The reader is not
// seekable past its start.
func (e *Engine) FetchOrigin(ctx context.Context, ref blob.Ref) (blob.Reader, error) {
	if err := storage.ValidateDigest(ref.Digest); err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, ref); err != nil {
		return nil, err
	}
	resp, client, err := originRequest(ctx, http.MethodGet, ref)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength < 0 {
		resp.Body.Close()
		client.CloseIdleConnections()
		return nil, ErrNoContentLength
	}
	v, err := storage.NewVerifier(ref.Digest)
	if err != nil {
		resp.Body.Close()
		client.CloseIdleConnections()
		return nil, err
	}
	b := &originBlob{e: e, ctx: ctx, dgst: ref.Digest, resp: resp, client: client, size: resp.ContentLength, v: v}
	// Caching is best effort: a store that cannot take the blob (full,
	// too large) leaves the stream as it is.
	if w, err := e.store.Create(ctx, ref.Digest); err == nil {
		b.w = w
	}
	return b, nil
}

// originBlob streams a blob from its origin, hashing it and writing it to
// the store on the way.
type originBlob struct {
	e      *Engine
	ctx    context.Context
	dgst   digest.Digest
	resp   *http.Response
	client *http.Client
	size   int64
	v      *storage.Verifier
	w      storage.Writer // nil when not caching
	pos    int64
	err    error
	once   sync.Once
}

func (b *originBlob) Size() int64 { return b.size }

// Source says where the bytes come from, for the registry endpoint's
// accounting.
func (b *originBlob) Source() string { return SourceOrigin }

// Read reads the next bytes. The last byte is read on its own, once every
// other byte is out, and released only when the whole blob matched its
// digest.
func (b *originBlob) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	remaining := b.size - b.pos
	if remaining <= 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	want := min(int64(len(p)), remaining)
	if remaining > 1 {
		want = min(want, remaining-1)
	}
	n, err := b.resp.Body.Read(p[:want])
	if n > 0 {
		b.v.Write(p[:n])
		if b.w != nil {
			if _, werr := b.w.Write(p[:n]); werr != nil {
				b.e.log.Warn("fallback from the origin: caching failed; streaming on", "digest", b.dgst, "err", werr)
				b.w.Cancel()
				b.w = nil
			}
		}
		b.pos += int64(n)
		b.e.fromOrigin.Add(int64(n))
	}
	if b.pos == b.size {
		if verr := b.v.Verify(); verr != nil {
			b.err = fmt.Errorf("%w: %s from the origin", blob.ErrDigestMismatch, b.dgst)
			b.e.log.Warn("fallback from the origin: digest mismatch; nothing cached", "digest", b.dgst, "err", verr)
			if b.w != nil {
				b.w.Cancel()
				b.w = nil
			}
			return 0, b.err
		}
		if b.w != nil {
			if _, cerr := b.w.Commit(b.ctx); cerr != nil {
				b.e.log.Warn("fallback from the origin: caching failed", "digest", b.dgst, "err", cerr)
			}
			b.w = nil
		}
		return n, nil
	}
	switch {
	case err == io.EOF:
		b.err = fmt.Errorf("p2p: origin cut %s short after %d of %d bytes: %w", b.dgst, b.pos, b.size, io.ErrUnexpectedEOF)
		return n, b.err
	case err != nil:
		b.err = fmt.Errorf("p2p: reading %s from the origin: %w", b.dgst, err)
		return n, b.err
	}
	return n, nil
}

// Seek supports only staying where the reader is: a fallback stream is
// read once, from its start.
func (b *originBlob) Seek(off int64, whence int) (int64, error) {
	switch {
	case whence == io.SeekStart && off == b.pos, whence == io.SeekCurrent && off == 0:
		return b.pos, nil
	}
	return b.pos, errors.New("p2p: a blob streamed from the origin cannot seek")
}

// Close ends the stream; a blob not read to its verified end is not
// cached.
func (b *originBlob) Close() error {
	b.once.Do(func() {
		if b.w != nil {
			b.w.Cancel()
		}
		b.resp.Body.Close()
		b.client.CloseIdleConnections()
	})
	return nil
}
