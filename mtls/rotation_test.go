package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/logbuf"
)

func TestRotation(t *testing.T) {
	ca1 := newTestCA(t, "ca-1")
	dir := t.TempDir()
	logs := &logbuf.Buffer{}
	serverCfg, err := ca1.WriteMember(dir, "seeder-0")
	if err != nil {
		t.Fatal(err)
	}
	serverCfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	server, err := load(serverCfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	client, clientCfg := member(t, ca1, dir, "agent-1")
	addr, results := startServer(t, server.ServerConfig())

	handshake := func(cfg *tls.Config) (tls.ConnectionState, handshake, error) {
		t.Helper()
		cs, err := dial(addr, cfg)
		return cs, next(t, results), err
	}
	cs, h, err := handshake(client.ClientConfig())
	if err != nil || h.err != nil {
		t.Fatalf("before rotation: client %v, server %v", err, h.err)
	}
	firstSerial := cs.PeerCertificates[0].SerialNumber

	// The member's certificate is renewed by the same CA.
	if _, err := ca1.WriteMember(dir, "seeder-0"); err != nil {
		t.Fatal(err)
	}
	cs, h, err = handshake(client.ClientConfig())
	if err != nil || h.err != nil {
		t.Fatalf("after renewal: client %v, server %v", err, h.err)
	}
	if cs.PeerCertificates[0].SerialNumber.Cmp(firstSerial) == 0 {
		t.Error("the server still presents its first certificate after renewal")
	}

	// The CA is replaced: ca.pem, and both members' files, now from ca-2.
	oldClient, err := tls.LoadX509KeyPair(clientCfg.Cert, clientCfg.Key)
	if err != nil {
		t.Fatal(err)
	}
	ca2 := newTestCA(t, "ca-2")
	if _, err := ca2.WriteMember(dir, "seeder-0"); err != nil {
		t.Fatal(err)
	}
	if _, err := ca2.WriteMember(dir, "agent-1"); err != nil {
		t.Fatal(err)
	}
	cs, h, err = handshake(client.ClientConfig())
	if err != nil || h.err != nil {
		t.Fatalf("after CA rotation: client %v, server %v", err, h.err)
	}
	if got := cs.PeerCertificates[0].Issuer.CommonName; got != "ca-2" {
		t.Errorf("server certificate issued by %q after CA rotation, want ca-2", got)
	}
	if got := h.cs.PeerCertificates[0].Issuer.CommonName; got != "ca-2" {
		t.Errorf("client certificate issued by %q after CA rotation, want ca-2", got)
	}
	// A client still holding a ca-1 certificate (verified and remembered
	// before the rotation) is no longer a member.
	_, h, err = handshake(&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{oldClient}})
	if err == nil || !errors.Is(h.err, ErrNotMember) {
		t.Errorf("ca-1 client after CA rotation: client %v, server %v; want refused with ErrNotMember", err, h.err)
	}

	// A broken write keeps the previous credentials, logs once, and is
	// picked up when the files are whole again.
	before := cs.PeerCertificates[0].SerialNumber
	if err := os.WriteFile(serverCfg.Cert, []byte("-----BEGIN CERTIFICATE-----\ntruncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		cs, h, err = handshake(client.ClientConfig())
		if err != nil || h.err != nil {
			t.Fatalf("with a broken cert file: client %v, server %v", err, h.err)
		}
		if cs.PeerCertificates[0].SerialNumber.Cmp(before) != 0 {
			t.Error("the server changed certificate although the new file is broken")
		}
	}
	if n := strings.Count(logs.String(), "do not load"); n != 1 {
		t.Errorf("the broken files were logged %d times, want once:\n%s", n, logs)
	}
	if _, err := ca2.WriteMember(dir, "seeder-0"); err != nil {
		t.Fatal(err)
	}
	cs, h, err = handshake(client.ClientConfig())
	if err != nil || h.err != nil {
		t.Fatalf("after repair: client %v, server %v", err, h.err)
	}
	if cs.PeerCertificates[0].SerialNumber.Cmp(before) == 0 {
		t.Error("the repaired certificate is not used")
	}
	if !strings.Contains(logs.String(), "reloaded credentials") {
		t.Errorf("no reload logged:\n%s", logs)
	}
}

// TestRotationWithLoad checks the public Load: files are looked at no more
// than once a second, and a change is picked up after that.
func TestRotationWithLoad(t *testing.T) {
	ca := newTestCA(t, "cluster")
	dir := t.TempDir()
	serverCfg, err := ca.WriteMember(dir, "seeder-0")
	if err != nil {
		t.Fatal(err)
	}
	clientCfg, err := ca.WriteMember(dir, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	server, err := Load(serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err := Load(clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, results := startServer(t, server.ServerConfig())
	cs, err := dial(addr, client.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	next(t, results)
	first := cs.PeerCertificates[0].SerialNumber
	if _, err := ca.WriteMember(dir, "seeder-0"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs, err := dial(addr, client.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		next(t, results)
		if cs.PeerCertificates[0].SerialNumber.Cmp(first) != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was not picked up within 5s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestVerifierForgetsExpired(t *testing.T) {
	ca := newTestCA(t, "cluster")
	c, _ := member(t, ca, t.TempDir(), "agent-1")
	s := c.current()
	leaf := s.cert.Leaf
	if err := s.v.verify([]*x509.Certificate{leaf}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Remembered as verified, but not past its expiry.
	if err := s.v.verify([]*x509.Certificate{leaf}, leaf.NotAfter.Add(time.Second)); !errors.Is(err, ErrNotMember) {
		t.Errorf("after expiry: %v, want ErrNotMember", err)
	}
}
