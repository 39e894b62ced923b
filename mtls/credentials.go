package mtls

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// ErrNotMember reports a peer certificate that does not make its holder a
// cluster member: missing, not chaining to the cluster CA bundle, expired or
// not yet valid, or lacking the server-auth or client-auth usage. Handshake
// errors on the side that refused the peer wrap it, and so does Load when
// the member's own certificate fails the same test.
var ErrNotMember = errors.New("mtls: not a cluster member")

// reloadInterval is how often, at most, the files are looked at.
const reloadInterval = time.Second

// verifiedCacheSize bounds the member certificates remembered as verified,
// so that a tracker answering announces from a few thousand nodes verifies
// each certificate's signature once, not on every request.
const verifiedCacheSize = 4096

// Credentials are a member's certificate and key and the cluster CA bundle,
// kept current with the files they were loaded from. They hand out tls.Config
// values for servers and clients. A Credentials is safe for concurrent use.
//
// A nil *Credentials means mutual TLS is off (Config.Insecure); see the
// package documentation for what its methods do.
type Credentials struct {
	cfg   Config
	log   *slog.Logger
	every time.Duration

	cur       atomic.Pointer[state]
	epoch     time.Time    // when c was made; nextCheck counts from it on the monotonic clock
	nextCheck atomic.Int64 // nanoseconds since epoch before which the files are not looked at

	mu      sync.Mutex // held by the one goroutine looking at the files
	lastErr string     // the last reload error logged; guarded by mu
}

// state is one consistent set of credentials: a certificate that matches its
// key and chains to the bundle in v.
type state struct {
	cert  *tls.Certificate
	v     *verifier
	files [3]os.FileInfo // CA, Cert, Key as they were when read
}

// verifier decides membership against one CA bundle and remembers the
// certificates it accepted until the earliest expiry in their chain.
type verifier struct {
	bundle []byte
	pool   *x509.CertPool
	cache  *lru.Cache[[sha256.Size]byte, time.Time]
}

// Load reads the files cfg names and checks that the key matches the
// certificate and that the certificate is a member (chains to the CA bundle,
// valid now, server-auth and client-auth usages); errors name the file.
//
// When cfg.Insecure is set Load logs a warning to cfg.Logger and returns a
// nil *Credentials and a nil error: the caller then runs its planes in
// plaintext. An invalid cfg is refused with an error wrapping
// ErrInvalidConfig.
//
// The files are re-read when they change (see the package documentation);
// no goroutine is started, so there is nothing to close.
func Load(cfg Config) (*Credentials, error) {
	return load(cfg, reloadInterval)
}

func load(cfg Config, every time.Duration) (*Credentials, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Insecure {
		if cfg.Logger != nil {
			cfg.Logger.Warn("mutual TLS is off (tls.insecure: true): the internal planes accept anyone who can reach them")
		}
		return nil, nil
	}
	c := &Credentials{cfg: cfg, log: cfg.Logger, every: every, epoch: time.Now()}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	files, err := c.stat()
	if err != nil {
		return nil, err
	}
	s, err := c.read(files, nil)
	if err != nil {
		return nil, err
	}
	c.cur.Store(s)
	c.nextCheck.Store(int64(time.Since(c.epoch) + every))
	return c, nil
}

// ServerConfig returns the configuration of a listener that admits cluster
// members only: TLS 1.3, a client certificate required and verified against
// the current CA bundle, this member's current certificate presented. The
// result may be cloned and extended (gRPC's credentials.NewTLS and
// net/http add their ALPN protocols to a clone). Nil when c is nil.
func (c *Credentials) ServerConfig() *tls.Config {
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		ClientAuth:       tls.RequireAnyClientCert,
		GetCertificate:   c.getCertificate,
		VerifyConnection: c.verifyPeer(false),
	}
}

// ServerConfigOptionalClient is ServerConfig for an HTTP listener that serves
// both member-only routes and operational ones (/metrics, /healthz for
// Kubernetes probes, which present no certificate): a client without a
// certificate is admitted, a client with a certificate is admitted only if it
// is a member. Wrap the member-only routes in RequireMember. Nil when c is
// nil.
func (c *Credentials) ServerConfigOptionalClient() *tls.Config {
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		ClientAuth:       tls.RequestClientCert,
		GetCertificate:   c.getCertificate,
		VerifyConnection: c.verifyPeer(true),
	}
}

// ClientConfig returns the configuration of a dialer: TLS 1.3, this member's
// current certificate presented, and the server admitted only if it is a
// member by the current CA bundle. The server's host name is not checked
// (InsecureSkipVerify is set and VerifyConnection verifies the chain
// instead), since cluster addresses are dynamic. Nil when c is nil.
func (c *Credentials) ClientConfig() *tls.Config {
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		InsecureSkipVerify:   true, // the chain is verified in VerifyConnection, host names are not
		GetClientCertificate: c.getClientCertificate,
		VerifyConnection:     c.verifyPeer(false),
	}
}

func (c *Credentials) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current().cert, nil
}

func (c *Credentials) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.current().cert, nil
}

// verifyPeer checks the other end's certificate. It runs on full handshakes
// and resumptions alike, so a rotated CA bundle applies to both.
func (c *Credentials) verifyPeer(optional bool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if optional && len(cs.PeerCertificates) == 0 {
			return nil
		}
		return c.current().v.verify(cs.PeerCertificates, time.Now())
	}
}

// current returns the credentials to use now, first re-reading the files if
// they changed and were not looked at for a while. Only one goroutine looks
// at a time; the others go on with what is loaded.
func (c *Credentials) current() *state {
	now := int64(time.Since(c.epoch))
	if now < c.nextCheck.Load() || !c.mu.TryLock() {
		return c.cur.Load()
	}
	defer c.mu.Unlock()
	if now < c.nextCheck.Load() {
		return c.cur.Load()
	}
	c.refresh()
	c.nextCheck.Store(int64(time.Since(c.epoch) + c.every))
	return c.cur.Load()
}

// refresh loads the files if they changed. A set that does not load is
// logged once and left; it is tried again on the next check, so that a
// rotation caught half-written is picked up once it is complete.
func (c *Credentials) refresh() {
	old := c.cur.Load()
	files, err := c.stat()
	if err == nil && sameFiles(files, old.files) {
		c.lastErr = ""
		return
	}
	var s *state
	if err == nil {
		s, err = c.read(files, old.v)
	}
	if err != nil {
		if msg := err.Error(); msg != c.lastErr {
			c.lastErr = msg
			c.log.Warn("mtls: credential files changed but do not load; keeping the previous credentials", "err", err)
		}
		return
	}
	c.lastErr = ""
	c.cur.Store(s)
	c.log.Info("mtls: reloaded credentials", "member", certName(s.cert.Leaf), "not_after", s.cert.Leaf.NotAfter, "ca_changed", s.v != old.v)
}

// stat looks at the three files, following symbolic links.
func (c *Credentials) stat() ([3]os.FileInfo, error) {
	var files [3]os.FileInfo
	for i, f := range c.fileKeys() {
		fi, err := os.Stat(f.path)
		if err != nil {
			return files, fmt.Errorf("mtls: %s: %w", f.key, err)
		}
		files[i] = fi
	}
	return files, nil
}

func (c *Credentials) fileKeys() [3]struct{ key, path string } {
	return [3]struct{ key, path string }{{"tls.ca", c.cfg.CA}, {"tls.cert", c.cfg.Cert}, {"tls.key", c.cfg.Key}}
}

func sameFiles(a, b [3]os.FileInfo) bool {
	for i := range a {
		if a[i] == nil || b[i] == nil || !os.SameFile(a[i], b[i]) ||
			!a[i].ModTime().Equal(b[i].ModTime()) || a[i].Size() != b[i].Size() {
			return false
		}
	}
	return true
}

// read loads the files into a state, reusing prev when the CA bundle did not
// change so that its verified certificates stay remembered.
func (c *Credentials) read(files [3]os.FileInfo, prev *verifier) (*state, error) {
	bundle, err := os.ReadFile(c.cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("mtls: tls.ca: %w", err)
	}
	certPEM, err := os.ReadFile(c.cfg.Cert)
	if err != nil {
		return nil, fmt.Errorf("mtls: tls.cert: %w", err)
	}
	keyPEM, err := os.ReadFile(c.cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("mtls: tls.key: %w", err)
	}
	v := prev
	if v == nil || !bytes.Equal(v.bundle, bundle) {
		if v, err = newVerifier(bundle); err != nil {
			return nil, fmt.Errorf("mtls: tls.ca %s: %w", c.cfg.CA, err)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("mtls: tls.cert %s, tls.key %s: %w", c.cfg.Cert, c.cfg.Key, err)
	}
	chain := make([]*x509.Certificate, len(cert.Certificate))
	for i, der := range cert.Certificate {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("mtls: tls.cert %s: certificate %d: %w", c.cfg.Cert, i+1, err)
		}
	}
	cert.Leaf = chain[0]
	if err := v.verify(chain, time.Now()); err != nil {
		return nil, fmt.Errorf("mtls: tls.cert %s against tls.ca %s: %w", c.cfg.Cert, c.cfg.CA, err)
	}
	return &state{cert: &cert, v: v, files: files}, nil
}

// newVerifier parses a CA bundle: one or more PEM certificates, all CAs.
func newVerifier(bundle []byte) (*verifier, error) {
	certs, err := parseCerts(bundle)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for i, cert := range certs {
		if !cert.BasicConstraintsValid || !cert.IsCA {
			return nil, fmt.Errorf("certificate %d (%q) is not a CA certificate", i+1, cert.Subject.CommonName)
		}
		pool.AddCert(cert)
	}
	cache, err := lru.New[[sha256.Size]byte, time.Time](verifiedCacheSize)
	if err != nil {
		return nil, err
	}
	return &verifier{bundle: bundle, pool: pool, cache: cache}, nil
}

// parseCerts parses the CERTIFICATE blocks of a PEM bundle, skipping other
// blocks; a bundle without one is an error.
func parseCerts(bundle []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

// verify reports whether certs (a leaf, then intermediates, as sent in a
// handshake) make a member at time now. Errors wrap ErrNotMember.
func (v *verifier) verify(certs []*x509.Certificate, now time.Time) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: no certificate", ErrNotMember)
	}
	leaf := certs[0]
	key := sha256.Sum256(leaf.Raw)
	if until, ok := v.cache.Get(key); ok && now.Before(until) {
		return nil
	}
	var inter *x509.CertPool
	if len(certs) > 1 {
		inter = x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
	}
	// ExtKeyUsageAny turns off Verify's usage check (which accepts a chain
	// allowing any one of the listed usages); both are checked below.
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrNotMember, certName(leaf), err)
	}
	for _, chain := range chains {
		if allows(chain, x509.ExtKeyUsageServerAuth) && allows(chain, x509.ExtKeyUsageClientAuth) {
			v.cache.Add(key, expiry(chain))
			return nil
		}
	}
	return fmt.Errorf("%w: %q: certificate does not allow both server auth and client auth (extended key usage)", ErrNotMember, certName(leaf))
}

// allows reports whether every certificate of chain permits usage u, by the
// rule x509 applies: no extended key usage at all, or "any", permits all.
func allows(chain []*x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, c := range chain {
		if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
			continue
		}
		ok := false
		for _, have := range c.ExtKeyUsage {
			if have == u || have == x509.ExtKeyUsageAny {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// expiry is when the first certificate of chain expires.
func expiry(chain []*x509.Certificate) time.Time {
	t := chain[0].NotAfter
	for _, c := range chain[1:] {
		if c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}
