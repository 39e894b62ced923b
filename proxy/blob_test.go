package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/blob"
)

func TestBlobGET(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	im := e.push(t, "eagle/blob", 1<<20+123, 2000)
	for _, desc := range im.Blobs() {
		want := e.blobBytes(t, im.Repository, desc.Digest)
		before := e.origin.BlobGETs(desc.Digest)
		for i := range 2 {
			resp := e.do(t, http.MethodGet, e.srv.URL+"/v2/"+im.Repository+"/blobs/"+desc.Digest.String())
			got := readAll(t, resp)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s", desc.Digest, resp.Status)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("GET %s #%d: %d bytes differ from origin's %d", desc.Digest, i, len(got), len(want))
			}
			checkBlobHeaders(t, resp, desc.Digest, int64(len(want)))
		}
		// The second GET came from the source's cache: the origin served
		// the blob once to the test and once to the source.
		if got := e.origin.BlobGETs(desc.Digest) - before; got != 1 {
			t.Fatalf("origin served %s %d times through the proxy, want 1", desc.Digest, got)
		}
	}
}

func checkBlobHeaders(t *testing.T, resp *http.Response, d digest.Digest, length int64) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Length":        strconv.FormatInt(length, 10),
		"Docker-Content-Digest": d.String(),
		"Content-Type":          "application/octet-stream",
		"Accept-Ranges":         "bytes",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}

func TestBlobHEAD(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	im := e.push(t, "eagle/head", 300*kib)
	d := im.Layers[0].Digest
	resp := e.do(t, http.MethodHead, e.srv.URL+"/v2/"+im.Repository+"/blobs/"+d.String())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD: %s", resp.Status)
	}
	if resp.ContentLength != 300*kib {
		t.Fatalf("ContentLength %d, want %d", resp.ContentLength, 300*kib)
	}
	checkBlobHeaders(t, resp, d, 300*kib)
	if n := e.src.stats.Load(); n != 1 {
		t.Fatalf("source Stat calls %d, want 1", n)
	}
	if n := e.src.fetches.Load(); n != 0 {
		t.Fatalf("HEAD made %d Fetch calls, want 0", n)
	}
}

func TestBlobRange(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	const size = 700 * kib
	im := e.push(t, "eagle/range", size)
	d := im.Layers[0].Digest
	want := e.blobBytes(t, im.Repository, d)
	url := e.srv.URL + "/v2/" + im.Repository + "/blobs/" + d.String()
	for _, tc := range []struct {
		rng        string
		start, end int64 // inclusive
	}{
		{"bytes=0-0", 0, 0},
		{"bytes=10-99", 10, 99},
		{"bytes=300000-", 300000, size - 1},
		{"bytes=-1000", size - 1000, size - 1},
		{"bytes=-99999999", 0, size - 1},
		{"bytes=1000-99999999", 1000, size - 1},
		{"bytes=" + strconv.Itoa(size-1) + "-", size - 1, size - 1},
		{"Bytes= 5-6 ", 5, 6},
	} {
		resp := e.do(t, http.MethodGet, url, "Range", tc.rng)
		got := readAll(t, resp)
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("%s: %s", tc.rng, resp.Status)
		}
		if !bytes.Equal(got, want[tc.start:tc.end+1]) {
			t.Fatalf("%s: %d bytes differ from origin bytes [%d,%d]", tc.rng, len(got), tc.start, tc.end)
		}
		if cr, wantCR := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end, size); cr != wantCR {
			t.Fatalf("%s: Content-Range %q, want %q", tc.rng, cr, wantCR)
		}
		checkBlobHeaders(t, resp, d, tc.end-tc.start+1)
	}

	// Unsatisfiable, including an end before the start (416, as the
	// origin answers and the OCI conformance suite requires).
	for _, rng := range []string{"bytes=" + strconv.Itoa(size) + "-", "bytes=" + strconv.Itoa(size+10) + "-" + strconv.Itoa(size+20), "bytes=-0", "bytes=5-1", "bytes=500-0"} {
		resp := e.do(t, http.MethodGet, url, "Range", rng)
		wantOCIError(t, resp, http.StatusRequestedRangeNotSatisfiable, CodeRangeInvalid)
		if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes */%d", size) {
			t.Fatalf("%s: Content-Range %q, want bytes */%d", rng, cr, size)
		}
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	im := e.push(t, "eagle/bad", 10*kib)
	d := im.Layers[0].Digest.String()
	base := e.srv.URL + "/v2/"
	missing := digest.FromString("not pushed").String()
	for _, tc := range []struct {
		name, method, path, rng string
		status                  int
		code                    ErrorCode
	}{
		{"upper-case name", "GET", "Eagle/Bad/blobs/" + d, "", 400, CodeNameInvalid},
		{"dot-dot name", "GET", "eagle/../bad/blobs/" + d, "", 400, CodeNameInvalid},
		{"double separator", "GET", "eagle__.x/blobs/" + d, "", 400, CodeNameInvalid},
		{"name too long", "GET", strings.Repeat("a/", 128) + "b/blobs/" + d, "", 400, CodeNameInvalid},
		{"encoded slash name", "GET", "eagle%2F%2Fbad/blobs/" + d, "", 400, CodeNameInvalid},
		{"empty digest", "GET", "eagle/bad/blobs/", "", 400, CodeDigestInvalid},
		{"bad hex", "GET", "eagle/bad/blobs/sha256:xyz", "", 400, CodeDigestInvalid},
		{"short hex", "GET", "eagle/bad/blobs/sha256:abcd", "", 400, CodeDigestInvalid},
		{"upper hex", "HEAD", "eagle/bad/blobs/" + strings.ToUpper(d), "", 400, CodeDigestInvalid},
		{"unknown algorithm", "GET", "eagle/bad/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", "", 400, CodeDigestInvalid},
		{"sha384", "GET", "eagle/bad/blobs/" + digest.SHA384.FromString("x").String(), "", 400, CodeDigestInvalid},
		{"no algorithm", "GET", "eagle/bad/blobs/" + strings.TrimPrefix(d, "sha256:"), "", 400, CodeDigestInvalid},
		{"range unit", "GET", "eagle/bad/blobs/" + d, "items=0-1", 400, CodeRangeInvalid},
		{"multiple ranges", "GET", "eagle/bad/blobs/" + d, "bytes=0-1,3-4", 400, CodeRangeInvalid},
		{"range letters", "GET", "eagle/bad/blobs/" + d, "bytes=a-b", 400, CodeRangeInvalid},
		{"range dash only", "GET", "eagle/bad/blobs/" + d, "bytes=-", 400, CodeRangeInvalid},
		{"range empty", "GET", "eagle/bad/blobs/" + d, "bytes=", 400, CodeRangeInvalid},
		{"range sign", "GET", "eagle/bad/blobs/" + d, "bytes=+1-2", 400, CodeRangeInvalid},
		{"range overflow", "GET", "eagle/bad/blobs/" + d, "bytes=99999999999999999999-", 400, CodeRangeInvalid},
		{"unknown blob", "GET", "eagle/bad/blobs/" + missing, "", 404, CodeBlobUnknown},
		{"unknown blob HEAD", "HEAD", "eagle/bad/blobs/" + missing, "", 404, ""},
		{"unknown repository", "GET", "eagle/none/blobs/" + d, "", 404, CodeBlobUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.rng != "" {
				hdr = []string{"Range", tc.rng}
			}
			resp := e.do(t, tc.method, base+tc.path, hdr...)
			if tc.method == http.MethodHead {
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
				}
				return
			}
			wantOCIError(t, resp, tc.status, tc.code)
		})
	}
	if n := e.src.fetches.Load() + e.src.stats.Load(); n != 0 {
		t.Fatalf("bad requests reached the blob source %d times", n)
	}
}

// TestSourceErrors checks how BlobSource errors are answered when the
// origin check is off, so that the source's answer is the one that counts.
func TestSourceErrors(t *testing.T) {
	off := false
	e := newEnv(t, Config{AuthorizeBlobs: &off}, nil)
	missing := digest.FromString("not pushed")
	resp := e.do(t, http.MethodGet, e.srv.URL+"/v2/eagle/none/blobs/"+missing.String())
	wantOCIError(t, resp, http.StatusNotFound, CodeBlobUnknown)
	if n := e.src.originFetches.Load(); n != 1 {
		t.Fatalf("source asked the origin %d times, want 1", n)
	}

	down := newEnv(t, Config{AuthorizeBlobs: &off, DefaultUpstream: closedPortURL(t)}, nil)
	resp = down.do(t, http.MethodGet, down.srv.URL+"/v2/eagle/none/blobs/"+missing.String())
	wantOCIError(t, resp, http.StatusServiceUnavailable, CodeUnavailable)
}

func TestBlobAbortMidStream(t *testing.T) {
	const size = 1 << 20
	for _, tc := range []struct {
		name      string
		failAfter int64
		err       error
		rng       string
	}{
		{"digest mismatch at the end", size - 10, blob.ErrDigestMismatch, ""},
		{"mismatch after first chunk", 300 * kib, blob.ErrDigestMismatch, ""},
		{"source ends early", size / 2, io.EOF, ""},
		{"mismatch in a range", 100, blob.ErrDigestMismatch, "bytes=1000-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, func(m *memSource) BlobSource {
				return &failingSource{memSource: m, failAfter: tc.failAfter, failErr: tc.err}
			})
			im := e.push(t, "eagle/abort", size)
			var hdr []string
			if tc.rng != "" {
				hdr = []string{"Range", tc.rng}
			}
			resp := e.do(t, http.MethodGet, e.srv.URL+"/v2/"+im.Repository+"/blobs/"+im.Layers[0].Digest.String(), hdr...)
			if resp.StatusCode/100 != 2 {
				t.Fatalf("status %s, want 2xx before the failure", resp.Status)
			}
			got, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("read %d of %d bytes without error; the client must see a failed download", len(got), resp.ContentLength)
			}
			if int64(len(got)) > tc.failAfter {
				t.Fatalf("client got %d bytes, more than the %d the source released", len(got), tc.failAfter)
			}
		})
	}
}
