package origin

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
	"golang.org/x/crypto/bcrypt"

	// The access controllers register themselves with the registry's
	// auth factory, which handlers.NewApp looks them up in.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
)

// HtpasswdRealm is the realm of the registry's Basic challenge when
// Options.Htpasswd is set: clients see `Basic realm="eagle-origin"`.
const HtpasswdRealm = "eagle-origin"

// TokenAuth configures a registry for the docker token authentication
// protocol: it accepts only bearer tokens signed by a key that chains to
// RootCertBundle, issued by Issuer for Service, and sends clients without
// one to Realm. TokenServer.Auth returns the settings of a TokenServer.
type TokenAuth struct {
	// Realm is the token endpoint's URL, sent to clients in the challenge.
	Realm string
	// Service is the name the registry goes by at the token server: the
	// challenge's service parameter and the audience tokens must carry.
	Service string
	// Issuer is the iss claim tokens must carry.
	Issuer string
	// RootCertBundle holds PEM certificates; a token is trusted when the
	// certificate chain in its x5c header verifies against one of them.
	RootCertBundle []byte
}

// validate checks that a is complete and its bundle holds a certificate.
func (a *TokenAuth) validate() error {
	if a.Realm == "" || a.Service == "" || a.Issuer == "" {
		return fmt.Errorf("%w: token auth needs a realm, a service and an issuer", ErrInvalidArgument)
	}
	if u, err := url.Parse(a.Realm); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: token realm %q is not an http(s) URL", ErrInvalidArgument, a.Realm)
	}
	rest, certs := a.RootCertBundle, 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("%w: token root certificate: %w", ErrInvalidArgument, err)
		}
		certs++
	}
	if certs == 0 {
		return fmt.Errorf("%w: token auth root bundle holds no PEM certificate", ErrInvalidArgument)
	}
	return nil
}

// configureAuth adds opts' authentication to cfg. It writes the files the
// registry reads (the htpasswd file, the root certificate bundle) into a new
// temporary directory and returns it, or "" when opts ask for no
// authentication; the caller removes it when the registry is gone.
func configureAuth(cfg *configuration.Configuration, opts Options) (dir string, err error) {
	if len(opts.Htpasswd) == 0 && opts.Token == nil {
		return "", nil
	}
	if len(opts.Htpasswd) > 0 && opts.Token != nil {
		return "", fmt.Errorf("%w: Htpasswd and Token are exclusive", ErrInvalidArgument)
	}
	if opts.Token != nil {
		if err := opts.Token.validate(); err != nil {
			return "", err
		}
	}
	var htpasswd []byte
	if len(opts.Htpasswd) > 0 {
		if htpasswd, err = htpasswdFile(opts.Htpasswd); err != nil {
			return "", err
		}
	}

	dir, err = os.MkdirTemp("", "eagle-origin-auth-*")
	if err != nil {
		return "", fmt.Errorf("origin: create auth directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
			dir = ""
		}
	}()
	if htpasswd != nil {
		path := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(path, htpasswd, 0o600); err != nil {
			return "", fmt.Errorf("origin: write htpasswd file: %w", err)
		}
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{
			"realm": HtpasswdRealm,
			"path":  path,
		}}
		return dir, nil
	}
	path := filepath.Join(dir, "token-roots.pem")
	if err := os.WriteFile(path, opts.Token.RootCertBundle, 0o600); err != nil {
		return "", fmt.Errorf("origin: write token root certificates: %w", err)
	}
	cfg.Auth = configuration.Auth{"token": configuration.Parameters{
		"realm":          opts.Token.Realm,
		"service":        opts.Token.Service,
		"issuer":         opts.Token.Issuer,
		"rootcertbundle": path,
	}}
	return dir, nil
}

// htpasswdFile returns the htpasswd file of users (user → password), with
// bcrypt hashes at bcrypt's minimum cost: the registry checks the password
// of every request, and the default cost would cost ~50 ms of CPU each.
func htpasswdFile(users map[string]string) ([]byte, error) {
	var b strings.Builder
	for _, user := range slices.Sorted(maps.Keys(users)) {
		if user == "" || strings.ContainsAny(user, ":\r\n") {
			return nil, fmt.Errorf("%w: htpasswd user name %q is empty or holds ':' or a newline", ErrInvalidArgument, user)
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(users[user]), bcrypt.MinCost)
		if err != nil {
			if errors.Is(err, bcrypt.ErrPasswordTooLong) {
				return nil, fmt.Errorf("%w: password of %q: %w", ErrInvalidArgument, user, err)
			}
			return nil, fmt.Errorf("origin: hash password of %q: %w", user, err)
		}
		fmt.Fprintf(&b, "%s:%s\n", user, hash)
	}
	return []byte(b.String()), nil
}
