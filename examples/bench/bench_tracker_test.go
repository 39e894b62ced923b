package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var benchTrackerLine = regexp.MustCompile(`^bench: tracker announces_per_s=(\d+) p99_ms=(\d+\.\d{3})$`)

func TestBenchTracker(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := runBenchTracker(context.Background(),
		[]string{"-swarms", "20", "-peers", "30", "-workers", "4", "-duration", "500ms", "-inprocess", "200ms"},
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
	if !strings.Contains(stdout.String(), "preloaded 20 swarms × 30 peers (600 announces)") {
		t.Errorf("no preload line in output:\n%s", stdout.String())
	}
	if !regexp.MustCompile(`in-process .* announces_per_s=[1-9]\d*`).MatchString(stdout.String()) {
		t.Errorf("no positive in-process figure in output:\n%s", stdout.String())
	}
}

func TestBenchTrackerFlags(t *testing.T) {
	for _, args := range [][]string{{"-peers", "1"}, {"-duration", "0"}, {"-workers", "-1"}, {"-nope"}} {
		var stdout, stderr bytes.Buffer
		if err := runBenchTracker(context.Background(), args, &stdout, &stderr); err != errUsage {
			t.Errorf("%q: err %v, want errUsage", args, err)
		}
	}
}
