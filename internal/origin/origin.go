// Package origin runs a real container registry in-process and pushes
// generated images to registries.
//
// Eagle's tests, benchmarks and the demo need an origin registry that behaves
// exactly like the ones Eagle sits in front of in production, and they need to
// know how much the origin served, because "one copy of each blob leaves the
// origin" is a property Eagle promises. Start runs the distribution/v3 registry
// (the reference implementation of the OCI distribution spec) on a loopback
// port with filesystem storage, and wraps it in a counter of blob GETs and the
// bytes they carried. PushRandomImage pushes a deterministic image with layers
// of any size to any registry without holding a layer in memory.
//
// The package does not import package testing, so the demo binary can use it.
package origin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"

	// The filesystem storage driver registers itself with the driver
	// factory that handlers.NewApp looks drivers up in.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// shutdownGrace is how long Close lets in-flight requests finish before it
// cuts their connections.
const shutdownGrace = 2 * time.Second

// Options configure Start. The zero value is ready to use.
type Options struct {
	// Dir is the storage root of the registry. If empty, Start creates a
	// temporary directory and Close removes it; a Dir given here is kept.
	Dir string

	// Logger receives the registry's own log messages: its per-request
	// information at Debug level, its warnings and errors at theirs. If nil
	// the registry is silent.
	Logger *slog.Logger

	// Htpasswd, when not empty, makes the registry require HTTP basic
	// authentication on every request (user name → password; distribution's
	// htpasswd access controller, realm HtpasswdRealm). Every user may
	// pull and push everything.
	Htpasswd map[string]string

	// Token, when not nil, makes the registry require bearer tokens
	// (distribution's token access controller): see TokenAuth and
	// StartTokenServer. Htpasswd and Token are exclusive.
	Token *TokenAuth

	// ProxyRemoteURL, when not empty, makes the registry a pull-through
	// cache of the registry at that URL ("http://host:port"), as
	// distribution's proxy.remoteurl does; blobs it caches never expire.
	// The benchmarks use it as the central cache Eagle is compared with.
	ProxyRemoteURL string

	// ListenHost is the IP address the registry listens on. Default
	// 127.0.0.1; the netns benchmark uses the address of a bridge it made.
	ListenHost string

	// Notifications, when it has endpoints, makes the registry post its
	// events (pushes, pulls) to them, as distribution's notifications
	// section does: each endpoint's name, url, headers (a shared secret),
	// timeout, threshold and backoff. The preheat tests point it at the
	// seeders. Each endpoint's queue runs until the process ends: the
	// registry has no way to stop it (see Close).
	Notifications configuration.Notifications
}

// Registry is a running distribution/v3 registry on a loopback port. It
// counts the blobs it serves; the counting methods are safe for concurrent
// use.
type Registry struct {
	// URL is the registry's base URL, "http://127.0.0.1:<port>".
	URL string
	// Host is the registry's address, "127.0.0.1:<port>", as used in image
	// references and in containerd's ns parameter.
	Host string
	// Dir is the registry's storage root directory.
	Dir string

	app       *handlers.App
	srv       *http.Server
	serveDone chan struct{}
	serveErr  error // set before serveDone is closed
	removeDir bool
	logID     string
	counts    *counter
	authDir   string // htpasswd / token root files; removed by Close

	closeOnce sync.Once
	closeErr  error
}

// Start starts a registry on 127.0.0.1 at a port chosen by the kernel and
// returns once it accepts connections. ctx bounds the start only; the
// registry runs until Close.
//
// The registry keeps its blobs in the filesystem under opts.Dir, accepts
// pulls and pushes without authentication unless opts.Htpasswd or opts.Token
// say otherwise, allows deletes, and reaches nothing outside the process
// but the notification endpoints of opts.Notifications: no redis, no
// pull-through proxy, no health checks, no upload purging.
func Start(ctx context.Context, opts Options) (_ *Registry, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("origin: start: %w", err)
	}
	r := &Registry{Dir: opts.Dir, counts: newCounter(), serveDone: make(chan struct{})}
	if r.Dir == "" {
		r.Dir, err = os.MkdirTemp("", "eagle-origin-*")
		if err != nil {
			return nil, fmt.Errorf("origin: create storage directory: %w", err)
		}
		r.removeDir = true
	} else if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("origin: create storage directory: %w", err)
	}
	defer func() {
		if err != nil && r.removeDir {
			_ = os.RemoveAll(r.Dir)
		}
	}()

	host := opts.ListenHost
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("origin: listen: %w", err)
	}
	defer func() {
		if err != nil {
			_ = ln.Close()
		}
	}()
	r.Host = ln.Addr().String()
	r.URL = "http://" + r.Host

	cfg, err := registryConfig(r.Dir, r.Host)
	if err != nil {
		return nil, err
	}
	if opts.ProxyRemoteURL != "" {
		noExpiry := time.Duration(0)
		cfg.Proxy = configuration.Proxy{RemoteURL: opts.ProxyRemoteURL, TTL: &noExpiry}
	}
	cfg.Notifications = opts.Notifications
	if r.authDir, err = configureAuth(cfg, opts); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && r.authDir != "" {
			_ = os.RemoveAll(r.authDir)
		}
	}()

	// The registry logs through the process-wide logrus logger; entries
	// tagged with this registry's log ID go to opts.Logger (or nowhere).
	r.logID = registerLogger(opts.Logger)
	defer func() {
		if err != nil {
			unregisterLogger(r.logID)
		}
	}()
	appCtx := withLogID(context.Background(), r.logID)

	r.app, err = newApp(appCtx, cfg)
	if err != nil {
		return nil, err
	}

	r.srv = &http.Server{
		Handler:           r.counts.middleware(r.app),
		ReadHeaderTimeout: 30 * time.Second,
		// Requests carry the log ID too, so that the registry's
		// per-request log entries can be told apart from other
		// registries in the same process.
		BaseContext: func(net.Listener) context.Context { return appCtx },
		ErrorLog:    slog.NewLogLogger(discardHandler(opts.Logger), slog.LevelWarn),
	}
	go func() {
		defer close(r.serveDone)
		if err := r.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			r.serveErr = err
		}
	}()
	return r, nil
}

// newApp builds the registry application, turning the panics with which
// handlers.NewApp reports configuration errors into an error.
func newApp(ctx context.Context, cfg *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("origin: configure registry: %v", p)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

// registryConfig is the registry configuration: filesystem storage under dir,
// nothing that reaches outside the process.
func registryConfig(dir, addr string) (*configuration.Configuration, error) {
	// The secret signs upload state; without one the registry makes its
	// own and logs a warning about it.
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("origin: generate http secret: %w", err)
	}
	cfg := &configuration.Configuration{
		Version: configuration.CurrentVersion,
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": dir},
			// A purger would start a goroutine that outlives the
			// registry by up to an hour of jitter.
			"maintenance": configuration.Parameters{
				"uploadpurging": map[any]any{"enabled": false},
			},
			"cache":    configuration.Parameters{"blobdescriptor": "inmemory"},
			"delete":   configuration.Parameters{"enabled": true},
			"redirect": configuration.Parameters{"disable": true},
		},
	}
	cfg.HTTP.Addr = addr
	cfg.HTTP.Secret = hex.EncodeToString(secret[:])
	return cfg, nil
}

// Close stops the registry: it lets in-flight requests finish for a short
// grace period, cuts the connections that remain, and removes the storage
// directory if Start created it. Close is safe to call more than once.
//
// The registry leaves one goroutine behind that nothing can stop: the
// notification broadcaster (github.com/docker/go-events.(*Broadcaster).run)
// that handlers.NewApp starts and its App never closes. It is idle unless
// Options.Notifications names endpoints; then each endpoint also leaves its
// queue (github.com/distribution/distribution/v3/notifications.(*eventQueue).run),
// which keeps retrying events its endpoint refused.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		if err := r.srv.Shutdown(ctx); err != nil {
			// In-flight requests outlived the grace period.
			if err := r.srv.Close(); err != nil {
				errs = append(errs, fmt.Errorf("origin: close server: %w", err))
			}
		}
		cancel()
		<-r.serveDone
		if r.serveErr != nil {
			errs = append(errs, fmt.Errorf("origin: serve: %w", r.serveErr))
		}
		if err := r.app.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("origin: shut down registry: %w", err))
		}
		unregisterLogger(r.logID)
		if r.authDir != "" {
			if err := os.RemoveAll(r.authDir); err != nil {
				errs = append(errs, fmt.Errorf("origin: remove auth directory: %w", err))
			}
		}
		if r.removeDir {
			if err := os.RemoveAll(r.Dir); err != nil {
				errs = append(errs, fmt.Errorf("origin: remove storage directory: %w", err))
			}
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}
