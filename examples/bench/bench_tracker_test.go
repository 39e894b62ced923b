package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var benchTrackerLine = regexp.MustCompile(`^bench: tracker announces_per_s=(\d+) p99_ms=(\d+\.\d{3}) fleet_announces_per_s=(\d+) fleet_flat_per_s=(\d+) fleet_first_peers_min=(\d+) cpu_busy=([0-9.]+)$`)

func TestBenchTracker(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := runBenchTracker(context.Background(),
		[]string{"-swarms", "20", "-peers", "30", "-workers", "4", "-duration", "500ms", "-inprocess", "200ms",
			"-fleet-nodes", "100", "-fleet-blobs", "10", "-fleet-downloading", "0.1"},
		&stdout, &stderr)
	if err != nil {
		t.Fatalf("bench tracker: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	m := benchTrackerLine.FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("last line %q does not match %s\noutput:\n%s", lines[len(lines)-1], benchTrackerLine, stdout.String())
	}
	for i, name := range []string{"announces_per_s", "p99_ms"} {
		if v, err := strconv.ParseFloat(m[i+1], 64); err != nil || v <= 0 {
			t.Errorf("%s = %q, want a positive number", name, m[i+1])
		}
	}
	// 100 nodes × 10 blobs, one blob pulled by 50 of the nodes: its 100
	// entries (downloading, and complete in a swarm with downloaders)
	// announce every 10s, the 900 of the idle blobs every 5 minutes; at
	// the downloaders' interval all 1,000 would announce every 10s. A new
	// downloader gets 50 peers at once.
	f := func(i int) float64 {
		v, err := strconv.ParseFloat(m[i], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got, want := f(3), 100.0/10+900.0/300; got != float64(int(want)) && got != float64(int(want))+1 {
		t.Errorf("fleet_announces_per_s = %v, want %.0f", got, want)
	}
	if f(4) != 100 {
		t.Errorf("fleet_flat_per_s = %v, want 100", f(4))
	}
	if f(5) != 50 {
		t.Errorf("fleet_first_peers_min = %v, want 50 (numwant, of 100 holders)", f(5))
	}
	if busy := f(6); busy <= 0 || busy > 1 {
		t.Errorf("cpu_busy = %v", busy)
	}
	if !strings.Contains(stdout.String(), "preloaded 20 swarms × 30 peers (600 announces)") {
		t.Errorf("no preload line in output:\n%s", stdout.String())
	}
	if !regexp.MustCompile(`in-process .* announces_per_s=[1-9]\d*`).MatchString(stdout.String()) {
		t.Errorf("no positive in-process figure in output:\n%s", stdout.String())
	}
}

func TestBenchTrackerFlags(t *testing.T) {
	for _, args := range [][]string{{"-peers", "1"}, {"-duration", "0"}, {"-workers", "-1"}, {"-nope"}, {"-fleet-downloading", "0"}, {"-fleet-nodes", "-1"}} {
		var stdout, stderr bytes.Buffer
		if err := runBenchTracker(context.Background(), args, &stdout, &stderr); err != errUsage {
			t.Errorf("%q: err %v, want errUsage", args, err)
		}
	}
}
