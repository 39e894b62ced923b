package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/proxy"
)

// memBlobs is a BlobSource over blobs held in memory. A node's is its p2p
// engine (*p2p.Engine), which fetches them through the swarm.
type memBlobs map[digest.Digest][]byte

func (m memBlobs) Stat(_ context.Context, ref blob.Ref) (int64, error) {
	b, ok := m[ref.Digest]
	if !ok {
		return 0, blob.ErrNotFound
	}
	return int64(len(b)), nil
}

func (m memBlobs) Fetch(_ context.Context, ref blob.Ref) (blob.Reader, error) {
	b, ok := m[ref.Digest]
	if !ok {
		return nil, blob.ErrNotFound
	}
	return memReader{bytes.NewReader(b)}, nil
}

// memReader is a blob.Reader over bytes in memory.
type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

// A registry of your own — here one that keeps its manifests itself and
// refuses pushes — with the blob reads served by Eagle in front of it:
// each authorized at the origin with the client's own credentials, the
// bytes from the BlobSource. The requests handed on never reach the
// origin.
func ExampleHandler_Middleware() {
	layer := []byte("a layer's bytes")
	dgst := digest.FromBytes(layer)

	// The origin the blobs come from; it lets alice read them.
	var originRequests atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originRequests.Add(1)
		if user, pass, ok := r.BasicAuth(); !ok || user != "alice" || pass != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="origin"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer origin.Close()

	h, err := proxy.New(proxy.Config{DefaultUpstream: origin.URL}, memBlobs{dgst: layer})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()

	// Your own registry API, for everything that is not a blob read.
	registry := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, err := proxy.ParseRoute(r)
		switch {
		case errors.Is(err, proxy.ErrNameInvalid):
			proxy.WriteError(w, http.StatusBadRequest, proxy.CodeNameInvalid, err.Error(), nil)
		case errors.Is(err, proxy.ErrDigestInvalid):
			proxy.WriteError(w, http.StatusBadRequest, proxy.CodeDigestInvalid, err.Error(), nil)
		case rt.Kind == proxy.RouteManifest && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			fmt.Fprintf(w, "manifest %s:%s, from the embedder", rt.Name, rt.Reference)
		default:
			proxy.WriteError(w, http.StatusMethodNotAllowed, proxy.CodeUnsupported, "this registry is read-only", nil)
		}
	})
	mux := http.NewServeMux()
	mux.Handle("/v2/", h.Middleware(registry))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, c := range []struct{ method, path, user string }{
		{"GET", "/v2/library/app/blobs/" + dgst.String(), "alice"},
		{"GET", "/v2/library/app/blobs/" + dgst.String(), ""},
		{"GET", "/v2/library/app/manifests/v1", ""},
		{"POST", "/v2/library/app/blobs/uploads/", "alice"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, "s3cret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var oci proxy.ErrorResponse
		if json.Unmarshal(body, &oci) == nil && len(oci.Errors) > 0 {
			body = []byte(oci.Errors[0].Code)
		}
		fmt.Printf("%s %s as %q: %d %s\n", c.method, strings.Replace(c.path, dgst.Encoded(), "…", 1), c.user, resp.StatusCode, body)
	}
	fmt.Println("requests at the origin:", originRequests.Load())
	// Output:
	// GET /v2/library/app/blobs/sha256:… as "alice": 200 a layer's bytes
	// GET /v2/library/app/blobs/sha256:… as "": 401 UNAUTHORIZED
	// GET /v2/library/app/manifests/v1 as "": 200 manifest library/app:v1, from the embedder
	// POST /v2/library/app/blobs/uploads/ as "alice": 405 UNSUPPORTED
	// requests at the origin: 2
}

func ExampleParseRoute() {
	for _, path := range []string{
		"/v2/",
		"/v2/library/alpine/manifests/3.20",
		"/v2/team/blobs/app/blobs/sha256:" + strings.Repeat("ab", 32),
		"/v2/library/alpine/blobs/uploads/",
		"/v2/Library/alpine/tags/list",
		"/v2/library/alpine/blobs/sha256:short",
	} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		rt, err := proxy.ParseRoute(r)
		fmt.Print(rt.Kind)
		for _, s := range []string{rt.Name, rt.Reference, rt.Digest.String()} {
			if s != "" {
				fmt.Print(" ", s)
			}
		}
		if err != nil {
			fmt.Print(": ", err)
		}
		fmt.Println()
	}
	// Output:
	// ping
	// manifest library/alpine 3.20
	// blob team/blobs/app sha256:abababababababababababababababababababababababababababababababab
	// upload library/alpine
	// tags: invalid repository name "Library/alpine": components must be lower-case letters and digits joined by '.', '_', '__' or '-'
	// blob library/alpine: invalid digest "sha256:short": invalid checksum digest length
}

func ExampleWriteError() {
	w := httptest.NewRecorder()
	proxy.WriteError(w, http.StatusForbidden, proxy.CodeDenied, "access to repository team/app denied",
		map[string]string{"repository": "team/app"})
	fmt.Println(w.Code, w.Header().Get("Content-Type"))
	fmt.Println(w.Body)
	// Output:
	// 403 application/json
	// {"errors":[{"code":"DENIED","message":"access to repository team/app denied","detail":{"repository":"team/app"}}]}
}
