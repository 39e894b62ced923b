package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"testing"
	"time"
)

// startHTTPS serves mux over TLS with cfg on 127.0.0.1 until the test ends.
func startHTTPS(t *testing.T, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: cfg, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeTLS(lis, "", "")
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "https://" + lis.Addr().String()
}

// get fetches url with a client using cfg, returning the status, body and
// protocol.
func get(t *testing.T, cfg *tls.Config, url string) (int, string, string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Proto, err
}

func TestOptionalClientAndRequireMember(t *testing.T) {
	ca := newTestCA(t, "cluster")
	foreign := newTestCA(t, "other cluster")
	dir := t.TempDir()
	tracker, _ := member(t, ca, dir, "tracker")
	agent, _ := member(t, ca, dir, "agent-1")
	intruder, _ := member(t, foreign, t.TempDir(), "agent-1")

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/who", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "member=%v", tracker.IsMember(r))
	})
	mux.Handle("/announce", tracker.RequireMember(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+MemberName(*r.TLS))
	})))
	base := startHTTPS(t, tracker.ServerConfigOptionalClient(), mux)

	probe := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true} // a kubelet probe: no certificate
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/healthz", 200, "ok"},
		{"/who", 200, "member=false"},
		{"/announce", 403, ""},
	} {
		code, body, _, err := get(t, probe, base+tc.path)
		if err != nil {
			t.Fatalf("probe %s: %v", tc.path, err)
		}
		if code != tc.code || tc.body != "" && body != tc.body {
			t.Errorf("probe %s: %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}

	for _, tc := range []struct{ path, body string }{
		{"/healthz", "ok"},
		{"/who", "member=true"},
		{"/announce", "hello agent-1"},
	} {
		code, body, proto, err := get(t, agent.ClientConfig(), base+tc.path)
		if err != nil {
			t.Fatalf("member %s: %v", tc.path, err)
		}
		if code != 200 || body != tc.body {
			t.Errorf("member %s: %d %q, want 200 %q", tc.path, code, body, tc.body)
		}
		// net/http adds "h2" to clones of both configurations.
		if proto != "HTTP/2.0" {
			t.Errorf("member %s: protocol %s, want HTTP/2.0", tc.path, proto)
		}
	}

	// A certificate from another CA is refused at the handshake, even on
	// the open routes: a client that sends a certificate must be a member.
	// The intruder does not trust the tracker either, so it is told to skip
	// that check to let the server be the one refusing.
	cfg := intruder.ClientConfig()
	cfg.VerifyConnection = nil
	if code, _, _, err := get(t, cfg, base+"/healthz"); err == nil {
		t.Errorf("foreign certificate: got %d, want a refused handshake", code)
	}
}

// TestIsMemberOnKeepAlive checks that a member whose CA leaves the bundle
// stops being one on the connection it already has.
func TestIsMemberOnKeepAlive(t *testing.T) {
	ca1 := newTestCA(t, "ca-1")
	dir := t.TempDir()
	tracker, _ := member(t, ca1, dir, "tracker")
	agent, _ := member(t, ca1, dir, "agent-1")
	base := startHTTPS(t, tracker.ServerConfigOptionalClient(), tracker.RequireMember(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})))
	tr := &http.Transport{TLSClientConfig: agent.ClientConfig(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	request := func() (code int, reused bool) {
		t.Helper()
		req, err := http.NewRequest("GET", base+"/announce", nil)
		if err != nil {
			t.Fatal(err)
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, reused
	}
	if code, _ := request(); code != 200 {
		t.Fatalf("before rotation: %d", code)
	}
	// The tracker moves to ca-2; the agent's connection stays open.
	if _, err := newTestCA(t, "ca-2").WriteMember(dir, "tracker"); err != nil {
		t.Fatal(err)
	}
	code, reused := request()
	if !reused {
		t.Fatal("the connection was not reused; the test proves nothing")
	}
	if code != http.StatusForbidden {
		t.Errorf("ca-1 member after the CA rotation: %d, want 403", code)
	}
}

func TestIsMemberWithoutVerifiedCertificate(t *testing.T) {
	ca := newTestCA(t, "cluster")
	c, _ := member(t, ca, t.TempDir(), "tracker")
	r := httptest.NewRequest("GET", "/announce", nil)
	if c.IsMember(r) {
		t.Error("a plaintext request is a member")
	}
	r.TLS = &tls.ConnectionState{}
	if c.IsMember(r) {
		t.Error("a request without a certificate is a member")
	}
	// A certificate from another CA, as a server that did not use this
	// package's configuration would let through.
	outsider := keyPair(t, newTestCA(t, "other"), "agent-1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), bothUsages...)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{outsider.Leaf}}
	if c.IsMember(r) {
		t.Error("a certificate from another CA is a member")
	}
	w := httptest.NewRecorder()
	c.RequireMember(http.NotFoundHandler()).ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Errorf("RequireMember: %d, want 403", w.Code)
	}
}

func TestNilCredentialsAreOpen(t *testing.T) {
	c, err := Load(Config{Insecure: true})
	if err != nil || c != nil {
		t.Fatalf("Load(insecure) = %v, %v; want nil, nil", c, err)
	}
	if c.ServerConfig() != nil || c.ServerConfigOptionalClient() != nil || c.ClientConfig() != nil {
		t.Error("a nil Credentials returned a tls.Config")
	}
	r := httptest.NewRequest("GET", "/announce", nil)
	if !c.IsMember(r) {
		t.Error("IsMember false with mutual TLS off")
	}
	w := httptest.NewRecorder()
	c.RequireMember(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })).ServeHTTP(w, r)
	if w.Code != 200 || w.Body.String() != "ok" {
		t.Errorf("RequireMember with mutual TLS off: %d %q", w.Code, w.Body.String())
	}
}

func TestMemberName(t *testing.T) {
	if got := MemberName(tls.ConnectionState{}); got != "" {
		t.Errorf("no certificate: %q", got)
	}
}
