// Command eagle runs the parts of an Eagle cluster: a tracker, a seeder, an
// agent (a node: registry proxy plus peer), or a self-contained demo.
//
//	eagle tracker --config tracker.yaml
//	eagle seeder  --config seeder.yaml
//	eagle agent   --config agent.yaml
//	eagle demo
//	eagle preheat registry.example.com/team/app:1.2
//
// Each subcommand reads a YAML file (unknown keys are refused) and accepts
// flags for the common settings; a flag overrides the file. Run
// "eagle <subcommand> --help" for the flags.
//
// This is the binary every node runs; the benchmarks are a command of
// their own, examples/bench.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"tracker", "run a BitTorrent tracker", runTracker},
	{"seeder", "run a seeder (gRPC metainfo service + peer)", runSeeder},
	{"agent", "run a node: registry mirror for the runtime + peer", runAgent},
	{"demo", "run a whole cluster in this process and pull an image through it", runDemo},
	{"certs", "make a cluster CA and member certificates", runCerts},
	{"preheat", "warm an image's layers in the seeders before the first pull", runPreheat},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: eagle <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'eagle <command> --help' for its flags.")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "eagle %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "eagle: unknown command %q\n", args[0])
	if args[0] == "bench" {
		fmt.Fprintln(stderr, "benchmarks moved: go run ./examples/bench <swarm|tracker|hit>")
	}
	fmt.Fprintln(stderr)
	usage(stderr)
	return 2
}

var errUsage = errors.New("usage")

// newLogger returns the JSON logger every subcommand uses.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log_level %q: %w", level, err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}
