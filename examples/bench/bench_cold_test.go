package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var coldLine = regexp.MustCompile(`^bench: cold nodes=(\d+) size=(\d+) cap=(\d+) direct_s=([0-9.]+) eagle_one_s=([0-9.]+) ratio_one=([0-9.]+) eagle_slowest_s=([0-9.]+) ratio_swarm=([0-9.]+) origin_copies=([0-9.]+) cpu_busy=([0-9.]+) runs=(\d+) tls=(true|false) cut_through=(true|false) relay=(true|false) preheat_s=([0-9.]+) preheated_slowest_s=([0-9.]+) ratio_preheated=([0-9.]+) preheated_origin_copies=([0-9.]+)$`)

// TestBenchCold runs the cold-path benchmark small and checks that its
// figures hang together: the direct pull through the relay takes about
// L/C, no Eagle pull beats the relay, and the swarm costs the origin one
// copy.
func TestBenchCold(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"cold", "-nodes", "3", "-seeders", "1", "-size", "2MiB", "-cap", "8MiB/s", "-runs", "1", "-timeout", "90s"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	m := coldLine.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q does not match %s", last, coldLine)
	}
	f := func(i int) float64 {
		v, err := strconv.ParseFloat(m[i], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if f(1) != 3 || f(2) != 2<<20 || f(3) != 8<<20 || f(11) != 1 || m[12] != "true" || m[13] != "true" || m[14] != "false" {
		t.Errorf("nodes, size, cap, runs, tls, cut_through or relay not as asked: %s", last)
	}
	// 2 MiB at 8 MiB/s through the relay, less its 32 KiB burst.
	if direct := f(4); direct < 0.2 || direct > 5 {
		t.Errorf("direct_s = %v, want about 0.25", direct)
	}
	// Every Eagle byte came through the same relay.
	if f(5) < 0.2 || f(7) < 0.2 {
		t.Errorf("an Eagle pull beat the relay's pace: %s", last)
	}
	if f(9) != 1 {
		t.Errorf("origin_copies = %v, want 1.00", f(9))
	}
	if busy := f(10); busy <= 0 || busy > 1 {
		t.Errorf("cpu_busy = %v", busy)
	}
	// The preheat fetched the fourth blob through the relay; the wave
	// after it took nothing from the origin and was not much slower than
	// the cold wave (both are small here; bench cold's own figures
	// compare them).
	if f(15) < 0.2 {
		t.Errorf("preheat_s = %v: faster than the relay's pace", f(15))
	}
	if f(18) != 0 {
		t.Errorf("preheated_origin_copies = %v, want 0.00", f(18))
	}
	if f(16) > 1.5*f(7)+0.5 {
		t.Errorf("the preheated wave (%vs) was much slower than the cold one (%vs)", f(16), f(7))
	}
}
