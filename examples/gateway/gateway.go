package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/eagle-p2p/eagle"
	"github.com/eagle-p2p/eagle/proxy"
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
	// blobs serves the blob reads from the node's engine, as middleware
	// in front of the gateway's handling of the rest (serveRest).
	blobs *proxy.Handler
}

// newGateway starts the embedded node and builds the router. Close stops
// the node.
func newGateway(cfg config, log *slog.Logger) (_ *gateway, err error) {
	auth, err := newAuthenticator(cfg.Auth, log)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	cfg.Node.Logger = log
	g := &gateway{}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	g.node, err = eagle.NewNode(cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	// The node's engine asks the node's Authorizer before it hands out
	// anything about a blob (eagle.Node.Engine), so the blob reads are
	// not checked a second time here.
	blobCfg := cfg.Node.Proxy
	off := false
	blobCfg.AuthorizeBlobs = &off
	blobCfg.Logger = log
	g.blobs, err = proxy.New(blobCfg, g.node.Engine)
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
	r.PathPrefix("/v2/").Handler(auth.middleware(g.blobs.Middleware(http.HandlerFunc(g.serveRest))))
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		proxy.WriteError(w, http.StatusNotFound, proxy.CodeUnsupported, "not found", nil)
	})
	g.router = r
	return g, nil
}

// serveRest answers the read requests that are not blob reads. The /v2/
// ping is the gateway's own: it has checked the client's credentials, and
// the origin's answer would only be about the gateway's. Manifests, tags,
// referrers and the catalog come from the origin, through the node.
func (g *gateway) serveRest(w http.ResponseWriter, r *http.Request) {
	if rt, _ := proxy.ParseRoute(r); rt.Kind == proxy.RoutePing {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Docker-Distribution-Api-Version", "registry/2.0")
		_, _ = w.Write([]byte("{}"))
		return
	}
	g.node.ServeHTTP(w, r)
}

// ServeHTTP serves the gateway's routes.
func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.router.ServeHTTP(w, r) }

// Close stops the embedded node. Call it after the HTTP server has shut
// down.
func (g *gateway) Close() error {
	var errs []error
	if g.blobs != nil {
		errs = append(errs, g.blobs.Close())
	}
	if g.node != nil {
		errs = append(errs, g.node.Close())
	}
	return errors.Join(errs...)
}

// errUsage reports bad command-line arguments; the usage has been printed.
var errUsage = errors.New("usage")
