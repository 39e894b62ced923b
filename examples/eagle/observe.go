package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eagle-p2p/eagle/internal/serve"
)

// errShuttingDown is what /readyz reports once the process is stopping.
var errShuttingDown = errors.New("shutting down")

// opsHandler serves app with /metrics (from reg), /healthz and /readyz
// beside it. The process counts as ready from the moment its components
// are built (the handler is made only then) until ctx ends: readiness does
// not follow the seeders' or the origin's health, so that a seeder outage
// does not take every agent out of service at once, when each can still
// serve its cache and pass everything else through.
func opsHandler(ctx context.Context, app http.Handler, reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return serve.Handler(app, reg, func(context.Context) error {
		if ctx.Err() != nil {
			return errShuttingDown
		}
		return nil
	}, log)
}

// startOpsServer serves the operational endpoints alone on addr, for a
// process whose main listener does not speak HTTP (the seeder's is gRPC).
// It listens before it returns, so that a bad address fails the start. stop
// shuts the server down and waits for it.
func startOpsServer(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen: %w", err)
	}
	srv := &http.Server{Handler: opsHandler(ctx, nil, reg, log), ReadHeaderTimeout: 10 * time.Second}
	log.Info("metrics listening", "addr", lis.Addr().String())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "error", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-done
	}, nil
}
