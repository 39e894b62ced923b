// Command gateway is a registry gateway that embeds an Eagle node: it
// serves the registry v2 read API at /v2/ behind its own authentication,
// and its blobs come through the Eagle swarm rather than from the origin.
//
// It shows how Eagle is embedded in a program that owns its HTTP server:
// the gateway has its own router (/healthz, /v2/), its own users (an
// htpasswd file with bcrypt hashes, re-read when it changes) and its own
// access rules (which user may read which repositories), checked on the
// routes as proxy.ParseRoute reads them. Behind them, the node's blob
// reads are mounted as proxy middleware (Handler.Middleware) in front of
// the gateway's handling of the rest: it answers the /v2/ ping itself and
// passes manifests, tags, referrers and the catalog through the eagle.Node
// to the origin. It is read-only: pushes are refused.
// The clients' credentials are the gateway's and are removed before a
// request reaches the origin, so the origin must let the gateway read
// anonymously (a registry on a private network, or a public one).
//
//	gateway --config gateway.yaml [--listen :5000]
//
// The YAML has the keys of "eagle agent" (data_dir, seeders, p2p, proxy)
// plus listen, log_level and an auth section:
//
//	auth:
//	  realm: eagle-gateway
//	  htpasswd: /etc/eagle/htpasswd
//	  access:
//	    ci: ["*"]
//	    team-a: ["team-a/*", "library/alpine"]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/eagle-p2p/eagle/internal/serve"

	"gopkg.in/yaml.v3"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		os.Exit(1)
	}
}

// run loads the configuration and serves until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := loadConfig(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("log_level %q: %w", cfg.LogLevel, err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	gw, err := newGateway(cfg, log)
	if err != nil {
		return err
	}
	defer gw.Close()
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("gateway listening", "addr", lis.Addr().String(), "peer", gw.node.Engine.Addr().String())
	return serve.Run(ctx, lis, gw)
}

// loadConfig parses the flags and the --config file; a flag overrides the
// file. Unknown YAML keys are refused.
func loadConfig(args []string, stderr io.Writer) (config, error) {
	cfg := config{Listen: ":5000", LogLevel: "info"}
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file (required)")
	listen := fs.String("listen", cfg.Listen, "HTTP listen address")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, errUsage
	}
	if fs.NArg() > 0 || *path == "" {
		fmt.Fprintln(stderr, "usage: gateway --config gateway.yaml [--listen addr]")
		return cfg, errUsage
	}
	b, err := os.ReadFile(*path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config %s: %w", *path, err)
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "listen" {
			cfg.Listen = *listen
		}
	})
	return cfg, nil
}
