package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/mux"

	"github.com/eagle-p2p/eagle"
)

// config is the gateway's YAML.
type config struct {
	// Listen is the HTTP listen address. Default ":5000".
	Listen string `yaml:"listen"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// Auth configures who may pull what.
	Auth authConfig `yaml:"auth"`
	// Node configures the embedded Eagle node (data_dir, seeders, p2p,
	// proxy), with the keys of "eagle agent".
	Node eagle.Config `yaml:",inline"`
}

// gateway is the gateway's HTTP handler: its own router, its own
// authentication in front of an embedded Eagle node mounted at /v2/.
type gateway struct {
	router http.Handler
	node   *eagle.Node
}

// newGateway starts the embedded node and builds the router. Close stops
// the node.
func newGateway(cfg config, log *slog.Logger) (*gateway, error) {
	auth, err := newAuthenticator(cfg.Auth, log)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	cfg.Node.Logger = log
	node, err := eagle.NewNode(cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	r := mux.NewRouter()
	// The node relays paths as the client sent them; so does the router,
	// and the authenticator refuses the ones that are not clean.
	r.SkipClean(true)
	r.Path("/healthz").Methods(http.MethodGet, http.MethodHead).HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	r.PathPrefix("/v2/").Handler(auth.middleware(node))
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, codeUnsupported, "not found")
	})
	return &gateway{router: r, node: node}, nil
}

// ServeHTTP serves the gateway's routes.
func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.router.ServeHTTP(w, r) }

// Close stops the embedded node. Call it after the HTTP server has shut
// down.
func (g *gateway) Close() error { return g.node.Close() }

// routeKind is what a /v2/ path asks for.
type routeKind int

const (
	routeUnknown    routeKind = iota
	routePing                 // /v2/
	routeCatalog              // /v2/_catalog
	routeRepository           // /v2/<name>/{manifests,blobs,referrers}/<ref>, /v2/<name>/tags/list
)

// route classifies a registry read path and extracts its repository name
// (not yet validated). Upload paths (/v2/<name>/blobs/uploads/...) are
// unknown: the gateway is read-only.
func route(u *url.URL) (name string, kind routeKind) {
	if u.RawPath != "" {
		// A path with escapes ("%2F") that change its meaning is never
		// a valid registry route.
		return "", routeUnknown
	}
	p, ok := strings.CutPrefix(u.Path, "/v2/")
	switch {
	case !ok:
		return "", routeUnknown
	case p == "":
		return "", routePing
	case p == "_catalog":
		return "", routeCatalog
	}
	segs := strings.Split(p, "/")
	n := len(segs)
	if n < 3 {
		return "", routeUnknown
	}
	switch segs[n-2] {
	case "manifests", "blobs", "referrers":
		if segs[n-1] == "" {
			return "", routeUnknown
		}
	case "tags":
		if segs[n-1] != "list" {
			return "", routeUnknown
		}
	default:
		return "", routeUnknown
	}
	return strings.Join(segs[:n-2], "/"), routeRepository
}

// errUsage reports bad command-line arguments; the usage has been printed.
var errUsage = errors.New("usage")
