package proxy

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage/memory"
)

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"bytes=0-0", "bytes=10-99", "bytes=5-", "bytes=-5", "bytes=-0", "Bytes = 1-2",
		"bytes=0-1,2-3", "bytes=5-1", "bytes=", "bytes=-", "items=1-2", "bytes=+1-2",
		"bytes=99999999999999999999-", "bytes=9223372036854775807-", "bytes=1-9223372036854775806",
		"bytes=\t3-4\t", "=", "", "bytes=1--2", "bytes=0x10-",
	} {
		f.Add(s, int64(1000))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		r, err := parseRange(h)
		if err != nil {
			if !errors.Is(err, errRangeSyntax) {
				t.Fatalf("parseRange(%q): error %v does not wrap errRangeSyntax", h, err)
			}
			return
		}
		if size < 0 {
			size = -size
		}
		if size < 0 { // MinInt64
			size = 0
		}
		start, length, ok := r.resolve(size)
		if !ok {
			return
		}
		if start < 0 || length <= 0 || start+length > size || start+length < start {
			t.Fatalf("parseRange(%q).resolve(%d) = %d, %d: outside the blob", h, size, start, length)
		}
	})
}

func FuzzParseBlobRequest(f *testing.F) {
	valid := digest.FromString("x").String()
	for _, s := range [][2]string{
		{"library/alpine", valid}, {"a", valid}, {"Upper/Case", valid}, {"a/../b", valid},
		{strings.Repeat("a/", 130), valid}, {"a", "sha256:zz"}, {"a", "sha512:" + strings.Repeat("0", 128)},
		{"a", ""}, {"", valid}, {"a__b", "md5:00"}, {"a\x00b", valid + "\x00"},
		{"Library/alpine", valid}, {"localhost:5000/app", valid}, {"a.b-c__d/e--f", valid},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, dgst string) {
		n, herr := parseName(name)
		if herr != nil {
			if herr.status != http.StatusBadRequest || herr.err.Code != CodeNameInvalid {
				t.Fatalf("parseName(%q): %v", name, herr)
			}
		} else if _, err := reference.WithName(n); err != nil || n != name || len(n) > 255 || strings.Contains(n, "..") ||
			strings.HasPrefix(n, "/") || strings.ToLower(n) != n || strings.Contains(n, ":") {
			t.Fatalf("parseName accepted %q", name)
		}
		d, herr := parseDigest(dgst)
		if herr != nil {
			if herr.status != http.StatusBadRequest || herr.err.Code != CodeDigestInvalid {
				t.Fatalf("parseDigest(%q): %v", dgst, herr)
			}
			return
		}
		if d.Validate() != nil || strings.ContainsAny(d.Encoded(), "/.") {
			t.Fatalf("parseDigest accepted %q", dgst)
		}
	})
}

// FuzzRoute sends arbitrary paths, queries and Range headers through the
// whole handler. The only upstream is a closed loopback port and the blob
// source is an empty store in front of it, so nothing can be served: the
// handler must answer every request with one OCI error and never panic.
func FuzzRoute(f *testing.F) {
	valid := digest.FromString("x").String()
	for _, s := range [][3]string{
		{"/v2/library/alpine/blobs/" + valid, "", ""},
		{"/v2/library/alpine/blobs/" + valid, "ns=docker.io", "bytes=0-10"},
		{"/v2/a/blobs/uploads/", "", ""},
		{"/v2/a/blobs/uploads/x/blobs/" + valid, "ns=%zz", "bytes=-"},
		{"/v2//blobs/" + valid, "ns=", ""},
		{"/v2/a/blobs/", "", "bytes=1-0"},
		{"/v2/", "", ""},
		{"/v2/a/manifests/latest", "ns=a/b", ""},
		{"/../v2/a/blobs/" + valid, "", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	upstream := "http://" + ln.Addr().String()
	ln.Close()
	tr := &http.Transport{}
	f.Cleanup(tr.CloseIdleConnections)
	var handlers []*Handler
	src := &memSource{store: memory.New(), client: &http.Client{Transport: tr}}
	for _, authorize := range []bool{false, true} {
		h, err := New(Config{DefaultUpstream: upstream, AuthorizeBlobs: &authorize}, src)
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { _ = h.Close() })
		handlers = append(handlers, h)
	}
	f.Fuzz(func(t *testing.T, path, query, rng string) {
		for _, h := range handlers {
			req := httptest.NewRequest(http.MethodGet, "http://eagle.test/", nil)
			req.URL.Path, req.URL.RawPath, req.URL.RawQuery = path, "", query
			if rng != "" {
				req.Header["Range"] = []string{rng}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code < 400 {
				t.Fatalf("GET %q?%q Range %q: status %d; nothing can be served here", path, query, rng, rec.Code)
			}
			var er ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || len(er.Errors) != 1 || er.Errors[0].Code == "" {
				t.Fatalf("GET %q?%q: body %q is not one OCI error: %v", path, query, rec.Body.Bytes(), err)
			}
		}
	})
}
