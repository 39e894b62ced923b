package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// requestFor builds a request for a path as a client sends it (escaped).
func requestFor(t testing.TB, path string) *http.Request {
	t.Helper()
	u, err := url.Parse(path)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", path, err)
	}
	return &http.Request{Method: http.MethodGet, URL: u}
}

func TestParseRoute(t *testing.T) {
	d := digest.FromString("x")
	sha512 := digest.SHA512.FromString("x")
	for _, tc := range []struct {
		path string
		want Route
		err  error
	}{
		{"/v2/", Route{Kind: RoutePing}, nil},
		{"/v2", Route{Kind: RoutePing}, nil},
		{"/v2/_catalog", Route{Kind: RouteCatalog}, nil},
		{"/v2/library/alpine/blobs/" + d.String(), Route{Kind: RouteBlob, Name: "library/alpine", Digest: d}, nil},
		{"/v2/a/blobs/" + sha512.String(), Route{Kind: RouteBlob, Name: "a", Digest: sha512}, nil},
		// ':' escaped by an over-eager client: the same blob.
		{"/v2/a/blobs/sha256%3A" + d.Encoded(), Route{Kind: RouteBlob, Name: "a", Digest: d}, nil},
		{"/v2/library/alpine/blobs/uploads/", Route{Kind: RouteUpload, Name: "library/alpine"}, nil},
		{"/v2/library/alpine/blobs/uploads", Route{Kind: RouteUpload, Name: "library/alpine"}, nil},
		{"/v2/library/alpine/blobs/uploads/uuid-1", Route{Kind: RouteUpload, Name: "library/alpine", Reference: "uuid-1"}, nil},
		{"/v2/library/alpine/manifests/latest", Route{Kind: RouteManifest, Name: "library/alpine", Reference: "latest"}, nil},
		{"/v2/library/alpine/manifests/" + d.String(), Route{Kind: RouteManifest, Name: "library/alpine", Reference: d.String(), Digest: d}, nil},
		{"/v2/library/alpine/tags/list", Route{Kind: RouteTags, Name: "library/alpine"}, nil},
		{"/v2/library/alpine/referrers/" + d.String(), Route{Kind: RouteReferrers, Name: "library/alpine", Digest: d}, nil},
		// Names may hold the API's words as components: the route is
		// read from the end.
		{"/v2/a/blobs/b/manifests/latest", Route{Kind: RouteManifest, Name: "a/blobs/b", Reference: "latest"}, nil},
		{"/v2/a/manifests/b/blobs/" + d.String(), Route{Kind: RouteBlob, Name: "a/manifests/b", Digest: d}, nil},
		{"/v2/a/blobs/uploads/x/blobs/" + d.String(), Route{Kind: RouteBlob, Name: "a/blobs/uploads/x", Digest: d}, nil},
		{"/v2/a/tags/list/tags/list", Route{Kind: RouteTags, Name: "a/tags/list"}, nil},

		// Not registry routes.
		{"/v2/library/alpine", Route{Kind: RouteOther}, nil},
		{"/v2/manifests/v1", Route{Kind: RouteOther}, nil},
		{"/v2/blobs/" + d.String(), Route{Kind: RouteOther}, nil},
		{"/v2/a/tags/other", Route{Kind: RouteOther}, nil},
		{"/v2/a/manifests/", Route{Kind: RouteOther}, nil},
		{"/v2/a/manifests/..", Route{Kind: RouteOther}, nil},
		{"/v2/a/manifests/-v1", Route{Kind: RouteOther}, nil},
		{"/v2/a/blobs/uploads/x/y", Route{Kind: RouteOther}, nil},
		{"/v2/a/blobs/uploads/..", Route{Kind: RouteOther}, nil},
		{"/v3/a/manifests/v1", Route{Kind: RouteOther}, nil},
		{"/metrics", Route{Kind: RouteOther}, nil},
		{"", Route{Kind: RouteOther}, nil},

		// Malformed parts of known routes: the kind, and what is valid.
		{"/v2/Eagle/Bad/blobs/" + d.String(), Route{Kind: RouteBlob}, ErrNameInvalid},
		{"/v2/Library/alpine/blobs/" + d.String(), Route{Kind: RouteBlob}, ErrNameInvalid},
		{"/v2/localhost:5000/app/manifests/v1", Route{Kind: RouteManifest}, ErrNameInvalid},
		{"/v2//blobs/" + d.String(), Route{Kind: RouteBlob}, ErrNameInvalid},
		{"/v2/a/../b/manifests/v1", Route{Kind: RouteManifest}, ErrNameInvalid},
		{"/v2/" + strings.Repeat("a/", 128) + "b/tags/list", Route{Kind: RouteTags}, ErrNameInvalid},
		{"/v2/a%2Fb/manifests/v1", Route{Kind: RouteManifest}, ErrNameInvalid},
		{"/v2/a%2fb/blobs/" + d.String(), Route{Kind: RouteBlob}, ErrNameInvalid},
		{"/v2/a/blobs/", Route{Kind: RouteBlob, Name: "a"}, ErrDigestInvalid},
		{"/v2/a/blobs/sha256:0", Route{Kind: RouteBlob, Name: "a"}, ErrDigestInvalid},
		{"/v2/a/blobs/" + digest.SHA384.FromString("x").String(), Route{Kind: RouteBlob, Name: "a"}, ErrDigestInvalid},
		{"/v2/a/manifests/sha256:00", Route{Kind: RouteManifest, Name: "a"}, ErrDigestInvalid},
		{"/v2/a/referrers/sha256:00", Route{Kind: RouteReferrers, Name: "a"}, ErrDigestInvalid},
	} {
		got, err := ParseRoute(requestFor(t, tc.path))
		if got != tc.want || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("ParseRoute(%q) = %+v, %v; want %+v, %v", tc.path, got, err, tc.want, tc.err)
		}
	}
}

// A ParseRoute error says what is wrong with which input, and the proxy
// answers the same path with the code that goes with it.
func TestParseRouteErrors(t *testing.T) {
	_, err := ParseRoute(requestFor(t, "/v2/Team/App/manifests/v1"))
	if want := `invalid repository name "Team/App": components must be lower-case letters and digits joined by '.', '_', '__' or '-'`; err == nil || err.Error() != want {
		t.Errorf("upper-case name: %v, want %q", err, want)
	}
	_, err = ParseRoute(requestFor(t, "/v2/a/blobs/md5:00"))
	if want := `invalid digest "md5:00"`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("md5 digest: %v, want %q...", err, want)
	}
}

func FuzzParseRoute(f *testing.F) {
	d := digest.FromString("x").String()
	for _, s := range []string{
		"/v2/", "/v2", "/v2/_catalog", "/v2/library/alpine/blobs/" + d, "/v2/a/blobs/uploads/",
		"/v2/a/blobs/uploads/x", "/v2/a/blobs/uploads", "/v2/a/manifests/v1", "/v2/a/manifests/" + d,
		"/v2/a/tags/list", "/v2/a/referrers/" + d, "/v2/a/manifests/b/blobs/" + d, "/v2//blobs/x",
		"/v2/a%2Fb/manifests/v1", "/v2/a/blobs/sha256%3A" + d[7:], "/v2/a/../b/tags/list", "/v3/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return
		}
		rt, err := ParseRoute(&http.Request{Method: http.MethodGet, URL: u})
		switch rt.Kind {
		case RoutePing, RouteCatalog, RouteOther:
			if err != nil || rt != (Route{Kind: rt.Kind}) {
				t.Fatalf("ParseRoute(%q) = %+v, %v", path, rt, err)
			}
			return
		case RouteBlob, RouteUpload, RouteManifest, RouteTags, RouteReferrers:
		default:
			t.Fatalf("ParseRoute(%q): kind %q", path, rt.Kind)
		}
		if err != nil {
			nameErr, digestErr := errors.Is(err, ErrNameInvalid), errors.Is(err, ErrDigestInvalid)
			switch {
			case nameErr == digestErr:
				t.Fatalf("ParseRoute(%q): error %v wraps neither or both sentinels", path, err)
			case nameErr && rt != (Route{Kind: rt.Kind}):
				t.Fatalf("ParseRoute(%q): name error with %+v", path, rt)
			case digestErr && (rt.Digest != "" || rt.Reference != ""):
				t.Fatalf("ParseRoute(%q): digest error with %+v", path, rt)
			}
			if rt.Name == "" {
				return
			}
		}
		if _, herr := parseName(rt.Name); herr != nil || len(rt.Name) > 255 {
			t.Fatalf("ParseRoute(%q): name %q: %v", path, rt.Name, herr)
		}
		if strings.Contains(strings.ToUpper(u.EscapedPath()), "%2F") {
			t.Fatalf("ParseRoute(%q) accepted a name across an escaped '/': %+v", path, rt)
		}
		if err != nil {
			return
		}
		// The route says all there is in the path: it builds it back.
		base := "/v2/" + rt.Name
		var back []string
		switch rt.Kind {
		case RouteBlob:
			back = []string{base + "/blobs/" + rt.Digest.String()}
		case RouteReferrers:
			back = []string{base + "/referrers/" + rt.Digest.String()}
		case RouteTags:
			back = []string{base + "/tags/list"}
		case RouteManifest:
			back = []string{base + "/manifests/" + rt.Reference}
			if rt.Digest != "" && rt.Digest.String() != rt.Reference {
				t.Fatalf("ParseRoute(%q): digest %s, reference %s", path, rt.Digest, rt.Reference)
			}
		case RouteUpload:
			back = []string{base + "/blobs/uploads/" + rt.Reference}
			if rt.Reference == "" {
				back = append(back, base+"/blobs/uploads")
			}
		}
		for _, b := range back {
			if b == u.Path {
				return
			}
		}
		t.Fatalf("ParseRoute(%q) = %+v, which names %q", path, rt, back)
	})
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	// What a blob answer had set before it failed goes; a challenge stays.
	rec.Header().Set("Content-Length", "12345")
	rec.Header().Set("Docker-Content-Digest", digest.FromString("x").String())
	rec.Header().Set("WWW-Authenticate", `Basic realm="gw"`)
	WriteError(rec, http.StatusUnauthorized, CodeUnauthorized, "authentication required", map[string]string{"repository": "a/b"})
	want := `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":{"repository":"a/b"}}]}`
	if rec.Code != http.StatusUnauthorized || rec.Body.String() != want {
		t.Fatalf("WriteError: %d %s, want 401 %s", rec.Code, rec.Body, want)
	}
	for k, v := range map[string]string{
		"Content-Type":                    "application/json",
		"Content-Length":                  strconv.Itoa(len(want)),
		"Docker-Distribution-Api-Version": "registry/2.0",
		"X-Content-Type-Options":          "nosniff",
		"WWW-Authenticate":                `Basic realm="gw"`,
		"Docker-Content-Digest":           "",
	} {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}

	// No detail, and a detail that does not marshal: the entry without it.
	for _, detail := range []any{nil, make(chan int)} {
		rec := httptest.NewRecorder()
		WriteError(rec, http.StatusNotFound, CodeUnsupported, "not here", detail)
		var er ErrorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || len(er.Errors) != 1 ||
			er.Errors[0] != (Error{Code: CodeUnsupported, Message: "not here"}) || strings.Contains(rec.Body.String(), "detail") {
			t.Errorf("detail %T: body %s (%v)", detail, rec.Body, err)
		}
	}
}
