// Command bench measures Eagle: a swarm of nodes pulling one cold blob
// against a central cache, the tracker's announce rate, a warm local hit
// through the proxy against the registry, and the bytes that cross
// datacenter borders under each tracker policy.
//
//	go run ./examples/bench swarm    [flags]
//	go run ./examples/bench tracker  [flags]
//	go run ./examples/bench hit      [flags]
//	go run ./examples/bench link     [flags]
//	go run ./examples/bench cold     [flags]
//	go run ./examples/bench topology [flags]
//
// Each benchmark prints its figures and ends with one line
// "bench: <name> key=value ...". Run "go run ./examples/bench <name> -h"
// for the flags. The benchmarks live here, not in the node binary
// (examples/eagle); "swarm -netns" runs that binary's "eagle agent" as one
// process per network namespace.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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

// benchCommands are the benchmarks.
var benchCommands = []command{
	{"swarm", "N nodes pull one cold blob at once, every host capped; Eagle against a central cache", runBenchSwarm},
	{"tracker", "announces per second and p99 latency of the tracker", runBenchTracker},
	{"hit", "warm local hit through the proxy against the registry serving the same blob", runBenchHit},
	{"link", "one node pulls a blob over an uncapped link, against plain HTTP over the same link", runBenchLink},
	{"cold", "the first pull of a blob no node holds, against a direct pull from the origin at the same rate", runBenchCold},
	{"topology", "K datacenters of M nodes behind tighter borders: cross-datacenter bytes and completion per tracker policy", runBenchTopology},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: go run ./examples/bench <swarm|tracker|hit|link|cold|topology> [flags]\n\nbenchmarks:")
	for _, c := range benchCommands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEach prints its figures and ends with one line \"bench: <name> key=value ...\".")
	fmt.Fprintln(w, "Run 'go run ./examples/bench <name> -h' for its flags.")
}

// run dispatches "bench <name>" and returns the exit code: 0, 2 for a
// usage error, 1 for a failed run.
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
	c, ok := findCommand(args[0])
	if !ok {
		fmt.Fprintf(stderr, "bench: unknown benchmark %q (want swarm, tracker, hit, link, cold or topology)\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := c.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "examples/bench: %v\n", err)
		return 1
	}
}

// findCommand returns the benchmark called name, or the hidden "fetch",
// the -netns mode's client run inside a namespace.
func findCommand(name string) (command, bool) {
	if name == "fetch" {
		return command{"fetch", "", runBenchFetch}, true
	}
	for _, c := range benchCommands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

var errUsage = errors.New("usage")
