package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eagle-p2p/eagle/tracker/redisstore/redistest"
)

var swarmLine = regexp.MustCompile(`^bench: swarm nodes=(\d+) size=(\d+) cap=(\d+) floor_s=([0-9.]+) slowest_s=([0-9.]+) p50_s=([0-9.]+) ratio_slowest=([0-9.]+) ratio_p50=([0-9.]+) origin_copies=([0-9.]+) central_s=([0-9.]+) rss_max_mib=([0-9.]+) tls=(true|false) cpu_busy=([0-9.]+) runs=(\d+)$`)

// TestBenchSwarm runs the in-process swarm benchmark with mutual TLS on,
// as the default is, and checks its figures and outputs.
func TestBenchSwarm(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"swarm", "-nodes", "3", "-seeders", "2", "-size", "3MiB", "-cap", "64MiB/s", "-out", out, "-timeout", "60s", "-runs", "2"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	m := swarmLine.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q does not match %s", last, swarmLine)
	}
	if m[12] != "true" {
		t.Errorf("tls=%s without -insecure: %s", m[12], last)
	}
	f := func(i int) float64 {
		v, err := strconv.ParseFloat(m[i], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if busy := f(13); busy <= 0 || busy > 1 {
		t.Errorf("cpu_busy = %v, want a fraction of the cores above 0", busy)
	}
	if f(14) != 2 || !strings.Contains(stdout.String(), "median of 2 runs [range]: ratio_slowest=") {
		t.Errorf("-runs 2: no median of 2 runs:\n%s", stdout.String())
	}
	if f(1) != 3 || f(2) != 3<<20 || f(3) != 64<<20 {
		t.Errorf("nodes, size or cap not as asked: %s", last)
	}
	floor, slowest, p50 := f(4), f(5), f(6)
	if floor < 0.046 || floor > 0.047 {
		t.Errorf("floor_s = %v, want 3MiB / 64MiB/s", floor)
	}
	if slowest <= 0 || p50 <= 0 || p50 > slowest {
		t.Errorf("completion times implausible: %s", last)
	}
	// The swarm fetches the blob from origin once, whatever N.
	if f(9) != 1 {
		t.Errorf("origin_copies = %v, want 1.00", f(9))
	}
	if f(10) <= 0 || f(11) <= 0 {
		t.Errorf("central_s or rss missing: %s", last)
	}

	b, err := os.ReadFile(filepath.Join(out, "bench-swarm.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || strings.Join(rows[0], ",") != "node,eagle_s,central_s" {
		t.Fatalf("csv:\n%s", b)
	}
	// The CSV holds the last run's times, which its own report gives (the
	// last line gives the medians of the runs, which a slow last run
	// exceeds).
	lastRun := func(series string) float64 {
		m := regexp.MustCompile(`(?m)^`+series+`:\s+slowest=([0-9.]+)s`).FindAllStringSubmatch(stdout.String(), -1)
		if len(m) != 2 {
			t.Fatalf("want 2 %q lines, one per run:\n%s", series, stdout.String())
		}
		v, _ := strconv.ParseFloat(m[1][1], 64)
		return v
	}
	bounds := []float64{lastRun("eagle"), lastRun("central")}
	for _, r := range rows[1:] {
		for i, c := range r[1:] {
			// The report rounds to 10 ms, the CSV to 1 ms.
			if v, err := strconv.ParseFloat(c, 64); err != nil || v <= 0 || v > bounds[i]+0.006 {
				t.Errorf("csv row %v: bad time %q (the last run's slowest: %.2fs)", r, c, bounds[i])
			}
		}
	}
	svg, err := os.ReadFile(filepath.Join(out, "bench-swarm.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("central cache")) {
		t.Errorf("chart is not an SVG with both series (%d bytes)", len(svg))
	}
}

// With -insecure the swarm runs in plaintext and says so.
func TestBenchSwarmInsecure(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"swarm", "-insecure", "-central=false", "-nodes", "2", "-seeders", "1", "-size", "2MiB", "-cap", "64MiB/s", "-out", t.TempDir(), "-timeout", "60s"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	m := swarmLine.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q does not match %s", last, swarmLine)
	}
	if m[12] != "false" || !strings.Contains(lines[0], " tls=false") {
		t.Errorf("-insecure: first line %q, last line %q; want tls=false in both", lines[0], last)
	}
	if m[9] != "1.00" {
		t.Errorf("origin_copies = %s, want 1.00", m[9])
	}
}

func TestBenchSwarmBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-nodes", "0"},
		{"-cap", "0"},
		{"-size", "-1"},
		{"-size", "lots"},
		{"-announce", "10ms"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if err := runBenchSwarm(context.Background(), args, &stdout, &stderr); err != errUsage {
			t.Errorf("%v: err = %v, want errUsage (stderr %q)", args, err, stderr.String())
		}
	}
}

// "bench swarm -tracker-store redis" runs the swarm's tracker on Redis:
// the pull completes, the line keeps its format, and the swarm is in
// Redis under the run's own key prefix.
func TestBenchSwarmRedis(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	var stdout, stderr bytes.Buffer
	args := []string{"swarm", "-tracker-store", "redis", "-redis-addr", srv.Addr, "-central=false",
		"-nodes", "3", "-seeders", "1", "-size", "3MiB", "-cap", "64MiB/s", "-out", t.TempDir(), "-timeout", "60s"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if want := "bench swarm: tracker_store=redis redis=" + srv.Addr; !strings.HasPrefix(lines[0], want) {
		t.Errorf("first line %q, want it to start with %q", lines[0], want)
	}
	m := swarmLine.FindStringSubmatch(lines[len(lines)-1])
	if m == nil || m[9] != "1.00" {
		t.Fatalf("last line %q: want the swarm line, origin_copies=1.00", lines[len(lines)-1])
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	// The agents and the seeder announced the blob's swarm: one swarm,
	// still live (the peer TTL is three 2s intervals).
	keys, err := c.Keys(t.Context(), "eaglebench:*:swarms").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("swarm sets in Redis: %q, %v; want one, the run's", keys, err)
	}
	if n, err := c.ZCard(t.Context(), keys[0]).Result(); err != nil || n != 1 {
		t.Errorf("%s holds %d swarms (%v), want the blob's", keys[0], n, err)
	}
	for _, bad := range [][]string{{"-tracker-store", "etcd"}, {"-redis-addr", srv.Addr}} {
		if err := runBenchSwarm(t.Context(), bad, &stdout, &stderr); err != errUsage {
			t.Errorf("%q: %v, want errUsage", bad, err)
		}
	}
}
