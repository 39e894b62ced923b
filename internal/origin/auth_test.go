package origin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// startTokenServer starts a token server that the test closes at its end.
func startTokenServer(t *testing.T, users map[string]string) *TokenServer {
	t.Helper()
	ts, err := StartTokenServer(t.Context(), users)
	if err != nil {
		t.Fatalf("StartTokenServer: %v", err)
	}
	t.Cleanup(func() {
		if err := ts.Close(); err != nil {
			t.Errorf("token server Close: %v", err)
		}
	})
	return ts
}

// authClient is a client that logs in as user with password over a
// transport whose idle connections the test closes at its end.
func authClient(t *testing.T, user, password string) *http.Client {
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	return &http.Client{Transport: NewAuthTransport(base, user, password)}
}

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != status {
		t.Fatalf("error %v: want a StatusError with status %d", err, status)
	}
}

func TestHtpasswdOrigin(t *testing.T) {
	reg, client := startRegistry(t, Options{Htpasswd: map[string]string{"alice": "s3cret", "bob": "hunter2"}})
	authDir := reg.authDir
	if _, err := os.Stat(authDir); err != nil {
		t.Fatalf("auth directory: %v", err)
	}

	status, hdr, _, _ := get(t, client, http.MethodGet, reg.URL+"/v2/", nil)
	if status != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != `Basic realm="eagle-origin"` {
		t.Fatalf("anonymous /v2/: %d %q, want 401 with the Basic challenge", status, hdr.Get("WWW-Authenticate"))
	}

	sizes := []int64{3000, 70 * kib}
	_, err := PushRandomImage(t.Context(), client, reg.URL, "eagle/app", "v1", sizes, 1)
	wantStatus(t, err, http.StatusUnauthorized)
	_, err = PushRandomImage(t.Context(), authClient(t, "alice", "wrong"), reg.URL, "eagle/app", "v1", sizes, 1)
	wantStatus(t, err, http.StatusUnauthorized)

	im, err := PushRandomImage(t.Context(), authClient(t, "alice", "s3cret"), reg.URL, "eagle/app", "v1", sizes, 1)
	if err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	blobURL := reg.URL + "/v2/eagle/app/blobs/" + im.Layers[1].Digest.String()
	basic := func(user, pass string) http.Header {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header
	}
	status, _, d, n := get(t, client, http.MethodGet, blobURL, basic("bob", "hunter2"))
	if status != http.StatusOK || d != im.Layers[1].Digest || n != im.Layers[1].Size {
		t.Fatalf("GET layer as bob: %d, %s, %d bytes; want 200, %s", status, d, n, im.Layers[1].Digest)
	}
	status, hdr, _, _ = get(t, client, http.MethodGet, blobURL, basic("bob", "s3cret"))
	if status != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
		t.Fatalf("GET layer with a wrong password: %d %q, want 401 with a challenge", status, hdr.Get("WWW-Authenticate"))
	}
	if got := reg.BlobGETs(im.Layers[1].Digest); got != 1 {
		t.Errorf("refused GET counted: %d GETs, want 1", got)
	}

	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(authDir); !os.IsNotExist(err) {
		t.Errorf("auth directory after Close: %v, want it removed", err)
	}
}

func TestTokenAuthOrigin(t *testing.T) {
	ts := startTokenServer(t, map[string]string{"alice": "s3cret"})
	reg, client := startRegistry(t, Options{Token: ts.Auth()})

	status, hdr, _, _ := get(t, client, http.MethodGet, reg.URL+"/v2/eagle/app/manifests/v1", nil)
	want := `Bearer realm="` + ts.Realm + `",service="eagle-origin",scope="repository:eagle/app:pull"`
	if status != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != want {
		t.Fatalf("anonymous manifest GET: %d %q, want 401 %q", status, hdr.Get("WWW-Authenticate"), want)
	}

	sizes := []int64{3000, 70 * kib}
	if _, err := PushRandomImage(t.Context(), authClient(t, "alice", "wrong"), reg.URL, "eagle/app", "v1", sizes, 2); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("push with a wrong password: %v, want the token server's 401", err)
	}
	im, err := PushRandomImage(t.Context(), authClient(t, "alice", "s3cret"), reg.URL, "eagle/app", "v1", sizes, 2)
	if err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	if ts.Issued() == 0 {
		t.Fatal("push succeeded without a token")
	}

	// containerd's first try: the OAuth2 password grant.
	token := func(form url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := client.PostForm(ts.Realm, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("token response: %v", err)
		}
		return resp.StatusCode, body
	}
	form := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"s3cret"},
		"service": {TokenService}, "scope": {"repository:eagle/app:pull registry:catalog:*"}}
	status, body := token(form)
	tok, _ := body["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("password grant: %d %v", status, body)
	}
	bearer := http.Header{"Authorization": {"Bearer " + tok}}
	status, _, d, _ := get(t, client, http.MethodGet, reg.URL+"/v2/eagle/app/blobs/"+im.Config.Digest.String(), bearer)
	if status != http.StatusOK || d != im.Config.Digest {
		t.Fatalf("GET config with the token: %d %s", status, d)
	}
	// The token grants pull on eagle/app only.
	status, hdr, _, _ = get(t, client, http.MethodGet, reg.URL+"/v2/other/app/blobs/"+im.Config.Digest.String(), bearer)
	if status != http.StatusUnauthorized || !strings.Contains(hdr.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("GET in another repository: %d %q, want 401 insufficient_scope", status, hdr.Get("WWW-Authenticate"))
	}
	// A token whose signature was tampered with is refused.
	forged := http.Header{"Authorization": {"Bearer " + tok[:len(tok)-4] + "AAAA"}}
	if status, _, _, _ = get(t, client, http.MethodGet, reg.URL+"/v2/eagle/app/blobs/"+im.Config.Digest.String(), forged); status != http.StatusUnauthorized {
		t.Fatalf("GET with a forged token: %d, want 401", status)
	}

	for name, tc := range map[string]struct {
		form   url.Values
		status int
	}{
		"wrong password":  {url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"x"}, "service": {TokenService}}, http.StatusUnauthorized},
		"unknown user":    {url.Values{"grant_type": {"password"}, "username": {"eve"}, "password": {"s3cret"}, "service": {TokenService}}, http.StatusUnauthorized},
		"unknown service": {url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"s3cret"}, "service": {"elsewhere"}}, http.StatusBadRequest},
		"bad scope":       {url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"s3cret"}, "service": {TokenService}, "scope": {"repository"}}, http.StatusBadRequest},
		"refresh grant":   {url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "service": {TokenService}}, http.StatusBadRequest},
	} {
		if status, body := token(tc.form); status != tc.status || body["access_token"] != nil {
			t.Errorf("%s: %d %v, want %d and no token", name, status, body, tc.status)
		}
	}

	// The docker token spec's GET with basic credentials.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.Realm+"?service="+TokenService+"&scope=repository:eagle/app:pull,push", nil)
	req.SetBasicAuth("alice", "nope")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("GET token with a wrong password: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestAuthOptionErrors(t *testing.T) {
	ts := startTokenServer(t, map[string]string{"alice": "s3cret"})
	for name, opts := range map[string]Options{
		"both":         {Htpasswd: map[string]string{"a": "b"}, Token: ts.Auth()},
		"colon user":   {Htpasswd: map[string]string{"a:b": "c"}},
		"long pass":    {Htpasswd: map[string]string{"a": strings.Repeat("x", 80)}},
		"no realm":     {Token: &TokenAuth{Service: "s", Issuer: "i", RootCertBundle: ts.CertPEM}},
		"no cert":      {Token: &TokenAuth{Realm: ts.Realm, Service: "s", Issuer: "i", RootCertBundle: []byte("junk")}},
		"ftp realm":    {Token: &TokenAuth{Realm: "ftp://x/token", Service: "s", Issuer: "i", RootCertBundle: ts.CertPEM}},
		"bad pem cert": {Token: &TokenAuth{Realm: ts.Realm, Service: "s", Issuer: "i", RootCertBundle: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}},
	} {
		reg, err := Start(t.Context(), opts)
		if err == nil {
			reg.Close()
		}
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: Start: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := StartTokenServer(t.Context(), map[string]string{"a:b": "c"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("StartTokenServer with a colon in a user name: %v", err)
	}
}

func TestPushRandomIndex(t *testing.T) {
	reg, client := startRegistry(t, Options{})
	plats := []ocispec.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}
	sizes := []int64{3000, 70 * kib}
	ix, err := PushRandomIndex(t.Context(), client, reg.URL, "eagle/multi", "v1", plats, sizes, 7)
	if err != nil {
		t.Fatalf("PushRandomIndex: %v", err)
	}
	if len(ix.Images) != 2 || ix.Tag != "v1" || ix.Repository != "eagle/multi" {
		t.Fatalf("index %+v", ix)
	}

	accept := http.Header{"Accept": {ocispec.MediaTypeImageIndex}}
	status, hdr, d, n := get(t, client, http.MethodGet, reg.URL+"/v2/eagle/multi/manifests/v1", accept)
	if status != http.StatusOK || d != ix.Descriptor.Digest || n != ix.Descriptor.Size || hdr.Get("Content-Type") != ocispec.MediaTypeImageIndex {
		t.Fatalf("GET index: %d %s %d bytes %q; want %s", status, d, n, hdr.Get("Content-Type"), ix.Descriptor.Digest)
	}
	var index ocispec.Index
	if err := json.Unmarshal(fetchAccept(t, client, reg.URL+"/v2/eagle/multi/manifests/v1", ocispec.MediaTypeImageIndex), &index); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, m := range index.Manifests {
		im := ix.Images[i]
		if m.Digest != im.Manifest.Digest || m.Platform == nil || m.Platform.Architecture != plats[i].Architecture || m.Platform.Variant != plats[i].Variant {
			t.Fatalf("index entry %d: %+v, want %s for %+v", i, m, im.Manifest.Digest, plats[i])
		}
		var cfg ocispec.Image
		if err := json.Unmarshal(fetch(t, client, reg.URL+"/v2/eagle/multi/blobs/"+im.Config.Digest.String()), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != plats[i].Architecture || cfg.OS != "linux" || cfg.Variant != plats[i].Variant {
			t.Errorf("config of image %d is for %s/%s/%s", i, cfg.OS, cfg.Architecture, cfg.Variant)
		}
		for _, b := range im.Blobs() {
			if seen[b.Digest.String()] {
				t.Errorf("blob %s is shared between platforms", b.Digest)
			}
			seen[b.Digest.String()] = true
			status, _, d, n := get(t, client, http.MethodGet, reg.URL+"/v2/eagle/multi/blobs/"+b.Digest.String(), nil)
			if status != http.StatusOK || d != b.Digest || n != b.Size {
				t.Errorf("blob %s: %d %s %d", b.Digest, status, d, n)
			}
		}
	}

	again, err := PushRandomIndex(t.Context(), client, reg.URL, "eagle/again", "v2", plats, sizes, 7)
	if err != nil || again.Descriptor.Digest != ix.Descriptor.Digest {
		t.Fatalf("same arguments: %v, digest %s, want %s", err, again.Descriptor.Digest, ix.Descriptor.Digest)
	}

	for name, ps := range map[string][]ocispec.Platform{
		"none":      nil,
		"duplicate": {{OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "aarch64"}},
		"no arch":   {{OS: "linux"}},
	} {
		if _, err := PushRandomIndex(t.Context(), client, reg.URL, "eagle/bad", "v1", ps, sizes, 1); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

// fetchAccept GETs a small document whole with an Accept header.
func fetchAccept(t *testing.T, client *http.Client, url, accept string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, %v", url, resp.StatusCode, err)
	}
	return b
}
