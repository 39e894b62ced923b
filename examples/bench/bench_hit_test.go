package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var benchHitLine = regexp.MustCompile(`^bench: hit proxy_mib_s=(\d+\.\d) registry_mib_s=(\d+\.\d) ratio=(\d+\.\d{3}) ttfb_ms=(\d+\.\d{3}) cpu_busy=([0-9.]+)$`)

func TestBenchHit(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := runBenchHit(context.Background(), []string{"-size", "4194401", "-rounds", "2", "-timeout", "30s"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench hit: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	m := benchHitLine.FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("last line %q does not match %s\noutput:\n%s", lines[len(lines)-1], benchHitLine, stdout.String())
	}
	for i, name := range []string{"proxy_mib_s", "registry_mib_s", "ratio", "ttfb_ms"} {
		if v, err := strconv.ParseFloat(m[i+1], 64); err != nil || v <= 0 {
			t.Errorf("%s = %q, want a positive number", name, m[i+1])
		}
	}
	if n := strings.Count(stdout.String(), "bench: hit round "); n != 2 {
		t.Errorf("%d round lines, want 2:\n%s", n, stdout.String())
	}
}

func TestBenchHitFlags(t *testing.T) {
	for _, args := range [][]string{{"-size", "0"}, {"-rounds", "0"}, {"-nope"}} {
		var stdout, stderr bytes.Buffer
		if err := runBenchHit(context.Background(), args, &stdout, &stderr); err != errUsage {
			t.Errorf("%q: err %v, want errUsage", args, err)
		}
	}
}
