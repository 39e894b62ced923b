package mtls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names in a credentials directory, as written by CA.WriteMember and
// "eagle certs": the CA's certificate and key, and for each member
// <name>.pem and <name>-key.pem (see MemberFiles).
const (
	CAFileName    = "ca.pem"
	CAKeyFileName = "ca-key.pem"
)

// DefaultValidity is the lifetime of the member certificates that
// CA.WriteMember issues and "eagle certs" issues by default: one year.
const DefaultValidity = 365 * 24 * time.Hour

// backdate is how far before now certificates become valid, so that a node
// whose clock is a little behind the issuer's accepts them.
const backdate = 5 * time.Minute

// CA is a cluster certificate authority able to issue member certificates.
type CA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	keyPEM []byte
}

// newCA pairs a CA certificate with its key, encoding the key once.
func newCA(cert *x509.Certificate, key crypto.Signer) (*CA, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("mtls: CA key: %w", err)
	}
	return &CA{cert: cert, key: key, keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}, nil
}

// NewCA makes a CA with a fresh ECDSA P-256 key and a self-signed
// certificate valid for validity. It may sign member certificates only, not
// intermediate CAs.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("mtls: CA common name is empty")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("mtls: CA validity %v is not positive", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mtls: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("mtls: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mtls: CA certificate: %w", err)
	}
	return newCA(cert, key)
}

// LoadCA reads a CA from its certificate and private key PEM files (as
// written from CertPEM and KeyPEM, or made by another tool: the key may be
// PKCS #8, PKCS #1 or SEC 1, ECDSA, RSA or Ed25519). If the certificate file
// is a bundle, the certificate that matches the key is used.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("mtls: CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("mtls: CA key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("mtls: CA key %s: %w", keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil, fmt.Errorf("mtls: CA key %s: unsupported key type %T", keyPath, key)
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("mtls: CA certificate %s: %w", certPath, err)
	}
	for _, cert := range certs {
		if !pub.Equal(cert.PublicKey) {
			continue
		}
		if !cert.BasicConstraintsValid || !cert.IsCA {
			return nil, fmt.Errorf("mtls: CA certificate %s: %q is not a CA certificate", certPath, cert.Subject.CommonName)
		}
		return newCA(cert, key)
	}
	return nil, fmt.Errorf("mtls: CA certificate %s: no certificate matches the key in %s", certPath, keyPath)
}

// parseKey parses the first private key block of a PEM file.
func parseKey(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM private key block")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", key)
		}
		return s, nil
	}
}

// Certificate returns the CA's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA's certificate in PEM: what members load as tls.ca.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// KeyPEM returns the CA's private key in PEM (PKCS #8). Keep it off the
// members' machines: whoever holds it can make members.
func (ca *CA) KeyPEM() []byte { return ca.keyPEM }

// Issue makes a member certificate and its new ECDSA P-256 key, both in PEM
// (the key in PKCS #8). The certificate allows server auth and client auth,
// names commonName, and carries hosts as subject alternative names (IP
// addresses and DNS names; members do not check them, other TLS clients
// may). It is valid from a few minutes ago for validity, but never past the
// CA's own expiry.
func (ca *CA) Issue(commonName string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("mtls: validity %v is not positive", validity)
	}
	now := time.Now()
	return ca.issue(commonName, hosts, now.Add(-backdate), now.Add(validity),
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
}

// issue is Issue with explicit validity bounds and usages, so that tests can
// make expired and one-sided certificates.
func (ca *CA) issue(commonName string, hosts []string, notBefore, notAfter time.Time, usages []x509.ExtKeyUsage) (certPEM, keyPEM []byte, err error) {
	if commonName == "" {
		return nil, nil, errors.New("mtls: member common name is empty")
	}
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !notAfter.After(notBefore) {
		return nil, nil, fmt.Errorf("mtls: CA %q expired at %s", ca.cert.Subject.CommonName, ca.cert.NotAfter.Format(time.RFC3339))
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if strings.ContainsAny(h, " \t/:@[]") {
			return nil, nil, fmt.Errorf("mtls: host %q is neither an IP address nor a DNS name", h)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("mtls: member key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("mtls: member certificate %q: %w", commonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("mtls: member key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// MemberFiles returns the Config for member name in credentials directory
// dir: dir/ca.pem, dir/<name>.pem and dir/<name>-key.pem. The name must be
// a plain file name (letters, digits, '.', '_', '-', not starting with '.'
// or '-') and must not collide with the CA's files ("ca", "ca-key").
func MemberFiles(dir, name string) (Config, error) {
	if err := checkName(name); err != nil {
		return Config{}, err
	}
	return Config{
		CA:   filepath.Join(dir, CAFileName),
		Cert: filepath.Join(dir, name+".pem"),
		Key:  filepath.Join(dir, name+"-key.pem"),
	}, nil
}

func checkName(name string) error {
	if name == "" {
		return errors.New("mtls: member name is empty")
	}
	if name == "ca" || name == "ca-key" {
		return fmt.Errorf("mtls: member name %q collides with the CA's files", name)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("mtls: member name %q must not start with %q", name, name[0])
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("mtls: member name %q: %q is not allowed (letters, digits, '.', '_', '-')", name, r)
		}
	}
	return nil
}

// WriteMember issues a certificate for member name (DefaultValidity; SANs
// localhost, 127.0.0.1 and ::1) and writes dir/<name>.pem, dir/<name>-key.pem
// (mode 0600) and the CA certificate dir/ca.pem, creating dir (0700) if
// needed. Existing files are replaced, each by an atomic rename, so a member
// running on them reloads cleanly. It returns the Config that loads them.
// Meant for tests and demos; "eagle certs" is the operator's tool.
func (ca *CA) WriteMember(dir, name string) (Config, error) {
	cfg, err := MemberFiles(dir, name)
	if err != nil {
		return Config{}, err
	}
	certPEM, keyPEM, err := ca.Issue(name, []string{"localhost", "127.0.0.1", "::1"}, DefaultValidity)
	if err != nil {
		return Config{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Config{}, fmt.Errorf("mtls: %w", err)
	}
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{{cfg.CA, ca.CertPEM(), 0o644}, {cfg.Key, keyPEM, 0o600}, {cfg.Cert, certPEM, 0o644}} {
		if old, err := os.ReadFile(f.path); err == nil && bytes.Equal(old, f.data) {
			// Unchanged (the CA bundle, shared by the members of one
			// directory): rewriting it would make every member running
			// on it reload its credentials.
			continue
		}
		if err := writeFileAtomic(f.path, f.data, f.perm); err != nil {
			return Config{}, err
		}
	}
	return cfg, nil
}

// writeFileAtomic writes data to a temporary file in path's directory and
// renames it over path, so readers see the old file or the new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("mtls: %w", err)
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mtls: writing %s: %w", path, err)
	}
	return nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("mtls: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}
