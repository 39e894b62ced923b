package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/eagle-p2p/eagle/proxy"
)

// writeHtpasswd writes an htpasswd file with bcrypt hashes of the given
// user → password pairs.
func writeHtpasswd(t *testing.T, path string, creds map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# test users\n\n")
	for user, pw := range creds {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(user + ":" + string(h) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkError checks an OCI JSON error answer.
func checkError(t *testing.T, resp *http.Response, status int, code proxy.ErrorCode) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var body proxy.ErrorResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode error body: %v", err)
	}
	if len(body.Errors) != 1 || body.Errors[0].Code != code || body.Errors[0].Message == "" {
		t.Errorf("error body %+v, want one %s", body, code)
	}
}

func TestParseHtpasswdRefusesBadLines(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice\n", "line 1: want user:bcrypt-hash"},
		{":$2y$04$abc\n", "line 1: want user:bcrypt-hash"},
		{"# c\nalice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", `line 2: user "alice": not a bcrypt hash`},
		{"alice:$apr1$x$y\n", "not a bcrypt hash"},
	}
	for _, tt := range tests {
		_, err := parseHtpasswd(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseHtpasswd(%q) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	_, err := parseHtpasswd(strings.NewReader("a:" + string(h) + "\na:" + string(h) + "\n"))
	if err == nil || !strings.Contains(err.Error(), `line 2: user "a" appears twice`) {
		t.Errorf("duplicate user: %v", err)
	}
}

func TestAccessList(t *testing.T) {
	a, err := newAccessList(map[string][]string{
		"ci":   {"*"},
		"team": {"team-a/*", "library/alpine"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, name string
		want       bool
	}{
		{"ci", "anything/at/all", true},
		{"team", "team-a/app", true},
		{"team", "team-a/deep/app", true},
		{"team", "team-ab/app", false},
		{"team", "team-a", false},
		{"team", "library/alpine", true},
		{"team", "library/alpine2", false},
		{"stranger", "library/alpine", false},
	}
	for _, tt := range tests {
		if got := a.allows(tt.user, tt.name); got != tt.want {
			t.Errorf("allows(%s, %s) = %v, want %v", tt.user, tt.name, got, tt.want)
		}
	}
	if !a.allowsAll("ci") || a.allowsAll("team") {
		t.Error("allowsAll: only ci reads everything")
	}
	if !accessList(nil).allows("anyone", "x/y") {
		t.Error("an empty access list must allow every user")
	}
	for _, bad := range []string{"Team/*", "a//b", "../x", "x/**", ""} {
		if _, err := newAccessList(map[string][]string{"u": {bad}}); err == nil || !strings.Contains(err.Error(), "auth.access.u[0]") {
			t.Errorf("pattern %q: %v, want an error naming auth.access.u[0]", bad, err)
		}
	}
}

// The middleware reads routes as the node does (proxy.ParseRoute): a
// repository route is admitted on its repository's name, the ping and the
// catalog on the user alone, and what is no read route never reaches the
// node.
func TestMiddlewareRoutes(t *testing.T) {
	tests := []struct {
		path string
		name string // the repository whose access admits the request
		// status and code of the refusal of a request that is no read
		// route, whoever asks; 0 if it is one
		status int
		code   proxy.ErrorCode
	}{
		{"/v2/", "", 0, ""},
		{"/v2/_catalog", "", 0, ""},
		{"/v2/a/b/manifests/v1", "a/b", 0, ""},
		{"/v2/a/blobs/sha256:00", "a", 0, ""}, // the node answers the digest
		{"/v2/a/blobs/x/manifests/v1", "a/blobs/x", 0, ""},
		{"/v2/a/tags/list", "a", 0, ""},
		{"/v2/a/referrers/sha256:00", "a", 0, ""},
		{"/v2/a/tags/other", "", http.StatusNotFound, proxy.CodeUnsupported},
		{"/v2/a/blobs/uploads/", "", http.StatusNotFound, proxy.CodeUnsupported},
		{"/v2/a/blobs/uploads/123", "", http.StatusNotFound, proxy.CodeUnsupported},
		{"/v2/manifests/v1", "", http.StatusNotFound, proxy.CodeUnsupported},
		{"/v2/a%2Fb/manifests/v1", "", http.StatusBadRequest, proxy.CodeNameInvalid},
		{"/v3/a/manifests/v1", "", http.StatusNotFound, proxy.CodeUnsupported},
	}
	creds := map[string]string{"ci": "pw", "other": "pw"}
	access := map[string][]string{"ci": {"*"}, "other": {"zz/*"}}
	for i, tt := range tests {
		if tt.name != "" {
			u := fmt.Sprintf("u%d", i)
			creds[u], access[u] = "pw", []string{tt.name}
		}
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	writeHtpasswd(t, htpasswd, creds)
	auth, err := newAuthenticator(authConfig{Htpasswd: htpasswd, Access: access}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var reached []string
	srv := httptest.NewServer(auth.middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		reached = append(reached, r.URL.Path)
	})))
	defer srv.Close()
	get := func(path, user string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, "pw")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i, tt := range tests {
		reached = nil
		switch {
		case tt.status != 0:
			checkError(t, get(tt.path, "ci"), tt.status, tt.code)
			if len(reached) != 0 {
				t.Errorf("%s reached the node", tt.path)
			}
		case tt.name == "":
			resp := get(tt.path, "ci")
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || len(reached) != 1 {
				t.Errorf("%s: %d, reached the node %d times; want it admitted", tt.path, resp.StatusCode, len(reached))
			}
		default:
			resp := get(tt.path, fmt.Sprintf("u%d", i))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || len(reached) != 1 {
				t.Errorf("%s as a reader of %s: %d, reached the node %d times; want it admitted", tt.path, tt.name, resp.StatusCode, len(reached))
			}
			checkError(t, get(tt.path, "other"), http.StatusForbidden, proxy.CodeDenied)
			if len(reached) != 1 {
				t.Errorf("%s reached the node for a user who may not read %s", tt.path, tt.name)
			}
		}
	}
}

// The middleware in front of a handler that records what reaches it:
// refusals in the OCI format, and the client's credentials never passed on.
func TestMiddleware(t *testing.T) {
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	writeHtpasswd(t, htpasswd, map[string]string{"alice": "wonder", "bob": "builder"})
	auth, err := newAuthenticator(authConfig{Htpasswd: htpasswd, Realm: "test", Access: map[string][]string{
		"alice": {"*"},
		"bob":   {"bob/*"},
	}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var reached []string
	srv := httptest.NewServer(auth.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = append(reached, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization"))
	})))
	defer srv.Close()
	do := func(method, path, user, pw string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	resp := do("GET", "/v2/", "", "")
	if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="test", charset="UTF-8"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	checkError(t, resp, 401, proxy.CodeUnauthorized)
	checkError(t, do("GET", "/v2/", "alice", "wrong"), 401, proxy.CodeUnauthorized)
	checkError(t, do("GET", "/v2/", "mallory", "wonder"), 401, proxy.CodeUnauthorized)
	checkError(t, do("PUT", "/v2/bob/app/manifests/v1", "bob", "builder"), 405, proxy.CodeUnsupported)
	checkError(t, do("POST", "/v2/bob/app/blobs/uploads/", "alice", "wonder"), 405, proxy.CodeUnsupported)
	checkError(t, do("GET", "/v2/alice/app/manifests/v1", "bob", "builder"), 403, proxy.CodeDenied)
	checkError(t, do("GET", "/v2/_catalog", "bob", "builder"), 403, proxy.CodeDenied)
	checkError(t, do("GET", "/v2/bob/../alice/app/manifests/v1", "bob", "builder"), 400, proxy.CodeNameInvalid)
	checkError(t, do("GET", "/v2/bob/App/manifests/v1", "bob", "builder"), 400, proxy.CodeNameInvalid)
	checkError(t, do("GET", "/v2/bob/app/blobs/uploads/x", "bob", "builder"), 404, proxy.CodeUnsupported)
	if len(reached) != 0 {
		t.Fatalf("refused requests reached the node: %q", reached)
	}

	for _, c := range []struct{ method, path, user, pw string }{
		{"GET", "/v2/", "bob", "builder"},
		{"HEAD", "/v2/bob/app/blobs/sha256:0", "bob", "builder"},
		{"GET", "/v2/bob/team/app/tags/list", "bob", "builder"},
		{"GET", "/v2/_catalog", "alice", "wonder"},
		{"GET", "/v2/bob/app/manifests/v1", "alice", "wonder"},
	} {
		resp := do(c.method, c.path, c.user, c.pw)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s %s as %s: %d, want 200", c.method, c.path, c.user, resp.StatusCode)
		}
	}
	if len(reached) != 5 {
		t.Fatalf("%d requests reached the node, want 5: %q", len(reached), reached)
	}
	for _, r := range reached {
		if !strings.HasSuffix(r, " auth=") {
			t.Errorf("the node saw the client's credentials: %s", r)
		}
	}

	// A changed htpasswd file is picked up at once, and forgets the
	// credentials verified before.
	writeHtpasswd(t, htpasswd, map[string]string{"bob": "new"})
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(htpasswd, future, future); err != nil {
		t.Fatal(err)
	}
	checkError(t, do("GET", "/v2/", "bob", "builder"), 401, proxy.CodeUnauthorized)
	checkError(t, do("GET", "/v2/", "alice", "wonder"), 401, proxy.CodeUnauthorized)
	if resp := do("GET", "/v2/", "bob", "new"); resp.StatusCode != 200 {
		t.Errorf("new password: %d, want 200", resp.StatusCode)
	}

	// A broken file fails closed.
	if err := os.WriteFile(htpasswd, []byte("bob:plain\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(htpasswd, future.Add(time.Minute), future.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	checkError(t, do("GET", "/v2/", "bob", "new"), 500, proxy.CodeUnknown)
}

func TestNewAuthenticatorRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	if _, err := newAuthenticator(authConfig{}, log); err == nil || !strings.Contains(err.Error(), "auth.htpasswd is required") {
		t.Errorf("no file: %v", err)
	}
	if _, err := newAuthenticator(authConfig{Htpasswd: filepath.Join(dir, "missing")}, log); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("alice:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newAuthenticator(authConfig{Htpasswd: bad}, log); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("plain-text password: %v", err)
	}
}
