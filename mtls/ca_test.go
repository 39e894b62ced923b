package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", b)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssue(t *testing.T) {
	ca := newTestCA(t, "cluster")
	certPEM, keyPEM, err := ca.Issue("seeder-0", []string{"10.0.0.7", "seeder-0.eagle.svc", "[::1]", " "}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, certPEM)
	if c.Subject.CommonName != "seeder-0" || c.Issuer.CommonName != "cluster" {
		t.Errorf("subject %q issuer %q", c.Subject.CommonName, c.Issuer.CommonName)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("extended key usage %v", c.ExtKeyUsage)
	}
	if c.IsCA {
		t.Error("member certificate is a CA")
	}
	if !slices.Equal(c.DNSNames, []string{"seeder-0.eagle.svc"}) || len(c.IPAddresses) != 2 ||
		!c.IPAddresses[0].Equal(net.ParseIP("10.0.0.7")) || !c.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("SANs: DNS %v IP %v", c.DNSNames, c.IPAddresses)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if d := time.Until(c.NotAfter); d < 59*time.Minute || d > time.Hour {
		t.Errorf("expires in %v, want 1h", d)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("key does not match: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("does not chain to the CA: %v", err)
	}

	// Never past the CA's expiry.
	certPEM, _, err = ca.Issue("long", nil, 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := parseCert(t, certPEM).NotAfter; got.After(ca.Certificate().NotAfter) {
		t.Errorf("member expires %v, after its CA %v", got, ca.Certificate().NotAfter)
	}

	for _, bad := range []struct {
		name  string
		hosts []string
		v     time.Duration
	}{{"", nil, time.Hour}, {"x", nil, 0}, {"x", []string{"http://host/"}, time.Hour}} {
		if _, _, err := ca.Issue(bad.name, bad.hosts, bad.v); err == nil {
			t.Errorf("Issue(%q, %q, %v) succeeded", bad.name, bad.hosts, bad.v)
		}
	}
}

func pool(ca *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Certificate())
	return p
}

func TestLoadCA(t *testing.T) {
	ca := newTestCA(t, "cluster")
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, CAFileName), filepath.Join(dir, CAKeyFileName)
	if err := os.WriteFile(certPath, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, ca.KeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Certificate().Equal(ca.Certificate()) {
		t.Error("loaded a different CA certificate")
	}
	// A member issued by the loaded CA and one by the original are members
	// of the same cluster.
	a, _ := member(t, loaded, dir, "agent-1")
	b, _ := member(t, ca, dir, "agent-2")
	addr, results := startServer(t, a.ServerConfig())
	if _, err := dial(addr, b.ClientConfig()); err != nil {
		t.Fatal(err)
	}
	if h := next(t, results); h.err != nil {
		t.Fatal(h.err)
	}

	// A bundle: the certificate matching the key is picked.
	other := newTestCA(t, "other")
	bundle := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundle, append(other.CertPEM(), ca.CertPEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	if loaded, err := LoadCA(bundle, keyPath); err != nil || !loaded.Certificate().Equal(ca.Certificate()) {
		t.Errorf("bundle: %v", err)
	}

	otherKey := filepath.Join(dir, "other-key.pem")
	if err := os.WriteFile(otherKey, other.KeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	memberCfg, err := ca.WriteMember(dir, "agent-3")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ cert, key, want string }{
		{certPath, otherKey, "no certificate matches the key"},
		{memberCfg.Cert, memberCfg.Key, "not a CA"},
		{certPath, certPath, "no PEM private key"},
		{filepath.Join(dir, "missing.pem"), keyPath, "missing.pem"},
	} {
		if _, err := LoadCA(bad.cert, bad.key); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("LoadCA(%s, %s): %v, want an error mentioning %q", bad.cert, bad.key, err, bad.want)
		}
	}
}

func TestWriteMember(t *testing.T) {
	ca := newTestCA(t, "cluster")
	dir := filepath.Join(t.TempDir(), "certs")
	cfg, err := ca.WriteMember(dir, "seeder-0")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "seeder-0.pem"), Key: filepath.Join(dir, "seeder-0-key.pem")}
	if cfg != want {
		t.Errorf("config %+v, want %+v", cfg, want)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, cfg.Key: 0o600, cfg.Cert: 0o644, cfg.CA: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	if _, err := Load(cfg); err != nil {
		t.Errorf("Load: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("%d files in %s, want 3 (no temporary files left)", len(entries), dir)
	}
}

func TestMemberFilesNames(t *testing.T) {
	for _, name := range []string{"", "ca", "ca-key", "../x", "a/b", ".hidden", "-flag", "sp ace"} {
		if _, err := MemberFiles("/d", name); err == nil {
			t.Errorf("MemberFiles(%q) accepted", name)
		}
	}
	for _, name := range []string{"tracker", "seeder-0", "node_1.example"} {
		if _, err := MemberFiles("/d", name); err != nil {
			t.Errorf("MemberFiles(%q): %v", name, err)
		}
	}
}
