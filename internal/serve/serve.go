// Package serve builds the operational HTTP endpoints every Eagle process
// serves next to its own API: Prometheus /metrics, /healthz and /readyz.
// The eagle binary and the in-process test cluster both use it, so that
// tests scrape exactly what operators scrape.
package serve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths of the operational endpoints.
const (
	MetricsPath = "/metrics"
	HealthPath  = "/healthz"
	ReadyPath   = "/readyz"
)

// readyTimeout bounds one readiness check.
const readyTimeout = 5 * time.Second

// NewRegistry returns a registry holding the Go runtime and process
// collectors, for a process to register its components' metrics on.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler serves the operational endpoints and passes every other request
// to app, unchanged (a nil app answers 404):
//
//   - /metrics: the metrics g gathers, in the Prometheus text format (or
//     OpenMetrics when asked). A collector that fails is logged and left
//     out; the others are still served.
//   - /healthz: 200 "ok" while the process can serve HTTP at all.
//   - /readyz: 200 "ok" when ready returns nil (a nil ready is always
//     ready), else 503 with the error.
//
// The paths are matched exactly and nothing else is touched: no path
// cleaning or redirects, which a registry API behind it must not get.
// The endpoints answer GET and HEAD; other methods get 405.
func Handler(app http.Handler, g prometheus.Gatherer, ready func(context.Context) error, log *slog.Logger) http.Handler {
	if app == nil {
		app = http.NotFoundHandler()
	}
	if log == nil {
		log = slog.Default()
	}
	metrics := promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h http.Handler
		switch r.URL.Path {
		case MetricsPath:
			h = metrics
		case HealthPath:
			h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "ok") })
		case ReadyPath:
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serveReady(w, r, ready) })
		default:
			app.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			text(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func serveReady(w http.ResponseWriter, r *http.Request, ready func(context.Context) error) {
	if ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := ready(ctx); err != nil {
			text(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	text(w, http.StatusOK, "ok")
}

func text(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

// Run serves h on lis until ctx ends, then shuts the server down
// gracefully (waiting up to 10 s for requests in flight). It returns the
// server's error, or nil after a shutdown.
func Run(ctx context.Context, lis net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		<-errc
		return err
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
