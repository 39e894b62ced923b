package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// benchCommands are the "eagle bench" subcommands.
var benchCommands = []command{
	{"swarm", "N nodes pull one cold blob at once, every host capped; Eagle against a central cache", runBenchSwarm},
	{"tracker", "announces per second and p99 latency of the tracker", runBenchTracker},
	{"hit", "warm local hit through the proxy against the registry serving the same blob", runBenchHit},
}

// runBench dispatches "eagle bench <subcommand>".
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, "usage: eagle bench <swarm|tracker|hit> [flags]\n\nbenchmarks:")
		for _, c := range benchCommands {
			fmt.Fprintf(stderr, "  %-8s %s\n", c.name, c.summary)
		}
		fmt.Fprintln(stderr, "\nEach prints its figures and ends with one line \"bench: <name> key=value ...\".")
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	switch {
	case args[0] == "fetch": // hidden: the netns mode's client, run inside a namespace
		return runBenchFetch(ctx, args[1:], stdout, stderr)
	}
	for _, c := range benchCommands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "eagle bench: unknown benchmark %q (want swarm, tracker or hit)\n", args[0])
	return errUsage
}

// percentile returns the p-th percentile (0 < p ≤ 100) of xs by the
// nearest-rank method; 0 for no values.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// peakRSS returns this process's peak resident set size (VmHWM) in bytes.
func peakRSS() (int64, error) { return vmHWM("/proc/self/status") }

// processPeakRSS returns the peak resident set size (VmHWM) of process pid.
func processPeakRSS(pid int) (int64, error) {
	return vmHWM(fmt.Sprintf("/proc/%d/status", pid))
}

// vmHWM reads the VmHWM line of a /proc/<pid>/status file, in bytes.
func vmHWM(statusPath string) (int64, error) {
	b, err := os.ReadFile(statusPath)
	if err != nil {
		return 0, fmt.Errorf("peak rss: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("peak rss: VmHWM %q: %w", v, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("peak rss: no VmHWM in %s", statusPath)
}
