package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"time"
)

// IsMember reports whether r came over TLS from a cluster member: a client
// certificate that is a member by the current CA bundle. It is meant for
// servers configured with ServerConfigOptionalClient or ServerConfig. The
// check is repeated on every request (a certificate already verified is
// remembered, so this is a hash and a map lookup), so a caller on a
// keep-alive connection stops being a member when its certificate expires or
// its CA leaves the bundle.
//
// On a nil *Credentials (mutual TLS off) every caller is a member.
func (c *Credentials) IsMember(r *http.Request) bool {
	if c == nil {
		return true
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	return c.current().v.verify(r.TLS.PeerCertificates, time.Now()) == nil
}

// RequireMember wraps next so that callers that are not members (IsMember)
// get 403 Forbidden. Wrap only the member-only routes (tracker announces),
// not the probes and metrics. On a nil *Credentials it returns next.
func (c *Credentials) RequireMember(next http.Handler) http.Handler {
	if c == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.IsMember(r) {
			http.Error(w, "forbidden: this endpoint requires a cluster member's client certificate", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// MemberName names the peer of a connection, for logs and per-caller
// limits: its certificate's common name, or when that is empty (as in many
// cert-manager certificates) its first DNS name or URI. "" if the peer sent
// no certificate. It does not verify anything itself: on connections made
// with this package's configurations the handshake has done so.
func MemberName(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return certName(cs.PeerCertificates[0])
}

func certName(c *x509.Certificate) string {
	switch {
	case c == nil:
		return ""
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	}
	return ""
}
