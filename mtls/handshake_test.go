package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMembersHandshake(t *testing.T) {
	ca := newTestCA(t, "cluster")
	dir := t.TempDir()
	server, _ := member(t, ca, dir, "seeder-0")
	client, _ := member(t, ca, dir, "agent-1")
	addr, results := startServer(t, server.ServerConfig())

	cs, err := dial(addr, client.ClientConfig())
	if err != nil {
		t.Fatalf("member client: %v", err)
	}
	h := next(t, results)
	if h.err != nil {
		t.Fatalf("server: %v", h.err)
	}
	if cs.Version != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", cs.Version)
	}
	if got := MemberName(cs); got != "seeder-0" {
		t.Errorf("client sees %q, want seeder-0", got)
	}
	if got := MemberName(h.cs); got != "agent-1" {
		t.Errorf("server sees %q, want agent-1", got)
	}
}

func TestServerRefusesNonMembers(t *testing.T) {
	ca := newTestCA(t, "cluster")
	foreign := newTestCA(t, "other cluster")
	dir := t.TempDir()
	server, _ := member(t, ca, dir, "seeder-0")
	addr, results := startServer(t, server.ServerConfig())
	now := time.Now()

	tests := []struct {
		name string
		cert *tls.Certificate // nil: no client certificate
		want string           // in the server's error
	}{
		{"no certificate", nil, "certificate"},
		{"another CA", ptr(keyPair(t, foreign, "intruder", now.Add(-time.Hour), now.Add(time.Hour), bothUsages...)), "unknown authority"},
		{"expired", ptr(keyPair(t, ca, "old", now.Add(-2*time.Hour), now.Add(-time.Hour), bothUsages...)), "expired"},
		{"not yet valid", ptr(keyPair(t, ca, "early", now.Add(time.Hour), now.Add(2*time.Hour), bothUsages...)), "not yet valid"},
		{"client auth only", ptr(keyPair(t, ca, "one-sided", now.Add(-time.Hour), now.Add(time.Hour), x509.ExtKeyUsageClientAuth)), "server auth and client auth"},
		{"server auth only", ptr(keyPair(t, ca, "one-sided", now.Add(-time.Hour), now.Add(time.Hour), x509.ExtKeyUsageServerAuth)), "server auth and client auth"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
			if tc.cert != nil {
				cfg.Certificates = []tls.Certificate{*tc.cert}
			}
			if _, err := dial(addr, cfg); err == nil {
				t.Error("client: connection accepted")
			}
			h := next(t, results)
			if h.err == nil {
				t.Fatal("server: handshake succeeded")
			}
			if !strings.Contains(h.err.Error(), tc.want) {
				t.Errorf("server error %q does not mention %q", h.err, tc.want)
			}
			if tc.cert != nil && !errors.Is(h.err, ErrNotMember) {
				t.Errorf("server error %v does not wrap ErrNotMember", h.err)
			}
		})
	}
}

func TestClientRefusesNonMemberServer(t *testing.T) {
	ca := newTestCA(t, "cluster")
	foreign := newTestCA(t, "other cluster")
	dir := t.TempDir()
	client, _ := member(t, ca, dir, "agent-1")
	impostor, _ := member(t, foreign, t.TempDir(), "seeder-0")
	now := time.Now()
	expired := keyPair(t, ca, "seeder-old", now.Add(-2*time.Hour), now.Add(-time.Hour), bothUsages...)
	clientOnly := keyPair(t, ca, "seeder-odd", now.Add(-time.Hour), now.Add(time.Hour), x509.ExtKeyUsageClientAuth)

	tests := []struct {
		name   string
		server *tls.Config
		want   string
	}{
		{"another CA", impostor.ServerConfig(), "unknown authority"},
		{"expired", &tls.Config{Certificates: []tls.Certificate{expired}, ClientAuth: tls.RequestClientCert}, "expired"},
		{"client auth only", &tls.Config{Certificates: []tls.Certificate{clientOnly}, ClientAuth: tls.RequestClientCert}, "server auth and client auth"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, results := startServer(t, tc.server)
			_, err := dial(addr, client.ClientConfig())
			if err == nil {
				t.Fatal("client accepted the server")
			}
			if !errors.Is(err, ErrNotMember) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("client error %q: want ErrNotMember mentioning %q", err, tc.want)
			}
			if h := next(t, results); h.err == nil {
				t.Error("server: handshake succeeded")
			}
		})
	}
}

// TestAnyAddressIsAccepted checks that host names and addresses are not part
// of membership: the client dials a name that is in no certificate.
func TestAnyAddressIsAccepted(t *testing.T) {
	ca := newTestCA(t, "cluster")
	dir := t.TempDir()
	server, _ := member(t, ca, dir, "seeder-0")
	client, _ := member(t, ca, dir, "agent-1")
	addr, results := startServer(t, server.ServerConfig())
	cfg := client.ClientConfig()
	cfg.ServerName = "seeder-0.somewhere-else.example"
	if _, err := dial(addr, cfg); err != nil {
		t.Fatalf("dial with an unrelated server name: %v", err)
	}
	if h := next(t, results); h.err != nil {
		t.Fatal(h.err)
	}
}

// TestConcurrentHandshakes runs handshakes on several goroutines while the
// member files are rewritten (same CA), for the race detector and to check
// that a rotation caught half-written never fails a handshake.
func TestConcurrentHandshakes(t *testing.T) {
	ca := newTestCA(t, "cluster")
	dir := t.TempDir()
	server, _ := member(t, ca, dir, "seeder-0")
	client, _ := member(t, ca, dir, "agent-1")
	addr, results := startServer(t, server.ServerConfig())

	const workers, each = 4, 15
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				_, err := dial(addr, client.ClientConfig())
				errs <- err
			}
		})
	}
	for range 5 {
		if _, err := ca.WriteMember(dir, "seeder-0"); err != nil {
			t.Fatal(err)
		}
		if _, err := ca.WriteMember(dir, "agent-1"); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("client: %v", err)
		}
	}
	for range workers * each {
		if h := next(t, results); h.err != nil {
			t.Errorf("server: %v", h.err)
		}
	}
}

func ptr[T any](v T) *T { return &v }
