package main

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/eagle-p2p/eagle/proxy"
)

// Bounds of the cache of verified credentials. bcrypt is slow on purpose
// (tens of milliseconds per check) and a pull makes dozens of requests with
// the same credentials, so a positive check is remembered for a while. The
// cache is emptied whenever the htpasswd file changes.
const (
	verifiedTTL  = 5 * time.Minute
	verifiedSize = 1024
)

// authConfig is the "auth" section of the gateway's YAML.
type authConfig struct {
	// Realm is the realm of the Basic challenge. Default "eagle-gateway".
	Realm string `yaml:"realm"`
	// Htpasswd is the path of an htpasswd file with bcrypt hashes (as
	// written by "htpasswd -B"). Required. It is re-read when it changes.
	Htpasswd string `yaml:"htpasswd"`
	// Access maps a user to the repositories it may read: "*" (all), a
	// repository name, or "prefix/*" (every repository under prefix/).
	// Empty: every user may read every repository.
	Access map[string][]string `yaml:"access"`
}

// users is a parsed htpasswd file: user name → bcrypt hash.
type users map[string][]byte

// parseHtpasswd reads an htpasswd file. Only bcrypt hashes are accepted:
// the other htpasswd formats (MD5-crypt, SHA1, crypt, plain) are too weak to
// protect anything.
func parseHtpasswd(r io.Reader) (users, error) {
	u := make(users)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("line %d: want user:bcrypt-hash", n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q: not a bcrypt hash (use htpasswd -B): %w", n, name, err)
		}
		if _, dup := u[name]; dup {
			return nil, fmt.Errorf("line %d: user %q appears twice", n, name)
		}
		u[name] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return u, nil
}

// accessList is the parsed "access" section.
type accessList map[string][]string

// newAccessList checks every pattern: "*", a repository name, or a
// repository name followed by "/*".
func newAccessList(m map[string][]string) (accessList, error) {
	for user, patterns := range m {
		for i, p := range patterns {
			name := strings.TrimSuffix(p, "/*")
			if p == "*" {
				continue
			}
			if err := validName(name); err != nil {
				return nil, fmt.Errorf("auth.access.%s[%d] %q: want \"*\", a repository or \"prefix/*\": %w", user, i, p, err)
			}
		}
	}
	return accessList(m), nil
}

// allows reports whether user may read repository name. An empty list
// allows everything.
func (a accessList) allows(user, name string) bool {
	if len(a) == 0 {
		return true
	}
	for _, p := range a[user] {
		switch {
		case p == "*":
			return true
		case strings.HasSuffix(p, "/*"):
			if strings.HasPrefix(name, p[:len(p)-1]) {
				return true
			}
		case p == name:
			return true
		}
	}
	return false
}

// allowsAll reports whether user may read every repository (and so list
// them in the catalog).
func (a accessList) allowsAll(user string) bool {
	if len(a) == 0 {
		return true
	}
	for _, p := range a[user] {
		if p == "*" {
			return true
		}
	}
	return false
}

// validName checks a repository name in an access pattern with the
// grammar requests are read with (no empty or "." / ".." components, no
// upper case, at most 255 characters): it reads the name as ParseRoute
// reads the path of its tags list, so that a pattern cannot name a
// repository no request can.
func validName(name string) error {
	_, err := proxy.ParseRoute(&http.Request{URL: &url.URL{Path: "/v2/" + name + "/tags/list"}})
	return err
}

// authenticator checks Basic credentials against an htpasswd file and
// repository access against an accessList.
type authenticator struct {
	path   string
	realm  string
	access accessList
	log    *slog.Logger
	// dummy is compared against when the user is unknown, so that a wrong
	// user name takes as long as a wrong password.
	dummy []byte

	mu      sync.Mutex
	modTime time.Time
	size    int64
	users   users
	loadErr error
	// verified maps sha256(user, password) to the user and when the
	// check expires.
	verified *lru.Cache[[32]byte, verifiedEntry]
}

type verifiedEntry struct {
	user    string
	expires time.Time
}

// newAuthenticator loads the htpasswd file; a missing or malformed file is
// an error here (at start), so a typo cannot leave the gateway open.
func newAuthenticator(cfg authConfig, log *slog.Logger) (*authenticator, error) {
	if cfg.Htpasswd == "" {
		return nil, errors.New("auth.htpasswd is required")
	}
	access, err := newAccessList(cfg.Access)
	if err != nil {
		return nil, err
	}
	cache, err := lru.New[[32]byte, verifiedEntry](verifiedSize)
	if err != nil {
		return nil, err
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	a := &authenticator{path: cfg.Htpasswd, realm: cfg.Realm, access: access, log: log, dummy: dummy, verified: cache}
	if a.realm == "" {
		a.realm = "eagle-gateway"
	}
	if _, err := a.current(); err != nil {
		return nil, err
	}
	for user := range access {
		if _, ok := a.users[user]; !ok {
			log.Warn("auth.access names a user that is not in the htpasswd file", "user", user)
		}
	}
	return a, nil
}

// current returns the users of the htpasswd file, re-reading it when its
// modification time or size changed. A file that cannot be read or parsed
// fails every request (fail closed) until it is fixed.
func (a *authenticator) current() (users, error) {
	fi, err := os.Stat(a.path)
	if err != nil {
		return nil, fmt.Errorf("auth.htpasswd: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.users != nil || a.loadErr != nil {
		if fi.ModTime().Equal(a.modTime) && fi.Size() == a.size {
			return a.users, a.loadErr
		}
	}
	a.modTime, a.size = fi.ModTime(), fi.Size()
	a.verified.Purge()
	a.users, a.loadErr = nil, nil
	f, err := os.Open(a.path)
	if err != nil {
		a.loadErr = fmt.Errorf("auth.htpasswd: %w", err)
		return nil, a.loadErr
	}
	defer f.Close()
	u, err := parseHtpasswd(f)
	if err != nil {
		a.loadErr = fmt.Errorf("auth.htpasswd %s: %w", a.path, err)
		return nil, a.loadErr
	}
	a.users = u
	return u, nil
}

// errBadCredentials reports missing or wrong credentials.
var errBadCredentials = errors.New("authentication required")

// authenticate returns the user whose Basic credentials r carries.
func (a *authenticator) authenticate(r *http.Request) (string, error) {
	u, err := a.current()
	if err != nil {
		return "", err
	}
	name, password, ok := r.BasicAuth()
	if !ok {
		return "", errBadCredentials
	}
	key := sha256.Sum256([]byte(strconv.Itoa(len(name)) + ":" + name + password))
	if e, ok := a.verified.Get(key); ok && time.Now().Before(e.expires) {
		return e.user, nil
	}
	hash, known := u[name]
	if !known {
		hash = a.dummy
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !known {
		return "", errBadCredentials
	}
	a.verified.Add(key, verifiedEntry{user: name, expires: time.Now().Add(verifiedTTL)})
	return name, nil
}

// middleware admits authenticated GET and HEAD requests on the registry's
// read routes for repositories the user may read, and removes the client's
// credentials before handing the request on: they are the gateway's, and
// must never reach the origin.
func (a *authenticator) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := a.authenticate(r)
		if errors.Is(err, errBadCredentials) {
			a.log.Info("gateway: refused", "reason", "credentials", "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q, charset=\"UTF-8\"", a.realm))
			proxy.WriteError(w, http.StatusUnauthorized, proxy.CodeUnauthorized, "authentication required", nil)
			return
		}
		if err != nil {
			a.log.Error("gateway: cannot check credentials", "err", err)
			proxy.WriteError(w, http.StatusInternalServerError, proxy.CodeUnknown, "the gateway cannot check credentials", nil)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			proxy.WriteError(w, http.StatusMethodNotAllowed, proxy.CodeUnsupported, "this gateway is read-only", nil)
			return
		}
		// The route as the node reads it, so that access is checked on
		// the very repository the node serves. A malformed digest is the
		// node's to answer, once the name has been checked.
		rt, err := proxy.ParseRoute(r)
		if errors.Is(err, proxy.ErrNameInvalid) {
			proxy.WriteError(w, http.StatusBadRequest, proxy.CodeNameInvalid, err.Error(), nil)
			return
		}
		switch rt.Kind {
		case proxy.RoutePing:
		case proxy.RouteCatalog:
			if !a.access.allowsAll(user) {
				a.log.Info("gateway: refused", "reason", "catalog", "user", user)
				proxy.WriteError(w, http.StatusForbidden, proxy.CodeDenied, "listing repositories needs access to all of them", nil)
				return
			}
		case proxy.RouteBlob, proxy.RouteManifest, proxy.RouteTags, proxy.RouteReferrers:
			if !a.access.allows(user, rt.Name) {
				a.log.Info("gateway: refused", "reason", "repository", "user", user, "repository", rt.Name)
				proxy.WriteError(w, http.StatusForbidden, proxy.CodeDenied, "access to repository "+rt.Name+" denied", nil)
				return
			}
		default:
			// Uploads (read-only) and paths that are no registry route.
			proxy.WriteError(w, http.StatusNotFound, proxy.CodeUnsupported, "not a registry read route", nil)
			return
		}
		r = r.Clone(r.Context())
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r)
	})
}
