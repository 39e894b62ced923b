package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// topoMeasureLine is a measurement's headline in "bench topology"'s
// output: its name, cross-datacenter MiB and the origin's blob GETs.
var topoMeasureLine = regexp.MustCompile(`(?m)^([a-z]+(?:, dc\d+ \+\S+)?): cross=([0-9.]+)MiB cross_ratio=([0-9.]+) .* origin_gets=(\d+) `)

// topoLastLine is "bench topology"'s last line, its fields in the order
// they must keep.
var topoLastLine = regexp.MustCompile(`^bench: topology dcs=(\d+) agents=(\d+) cross_bytes_ratio=([0-9.]+) random_cross_ratio=([0-9.]+) slowest_ratio_vs_random=([0-9.]+) staggered_ok=(true|false) `)

// Under the topology policy, 2 datacenters of 4 agents each, joined
// through a router whose links are capped tighter than the datacenter's
// agents together (8 MiB/s against 4 × 4 MiB/s), move at most half the
// bytes across the border that the random policy does, and at most 1.25
// copies of the blob.
//
// The border is wider than one agent's link here, as in bench topology's
// default (8 MiB/s for 8 agents), and unlike its default before 2026-12-07
// (3 MiB/s, tighter than an agent's own 4 MiB/s): behind a border that
// slow, random's remote transfers crawl and its peers take most
// pieces from their own datacenter anyway, the more so the better each
// connection keeps its requests in flight. With anacrolix's request window
// patched (third_party/anacrolix-torrent/EAGLE.md), random took the blob
// across 2.2-2.4 times there (6 runs) against topology's 1.07-1.10: a
// ratio of 0.45-0.49, too near the half for a test. At 8 MiB/s random
// takes it across about once per agent, 3.9-4.3 times (the failure the
// policy is for), and topology 1.05-1.13 (a bench run and three of this
// test). The absolute bound
// keeps the test as sharp as it was: a topology that took 1.3 copies
// across would pass the half.
// Every agent gets the exact blob (each client checks size and digest, and
// a failed one fails the bench) and the origin serves each blob once.
func TestTopologyCutsCrossDatacenterBytes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bench topology needs root (network namespaces, veths, bridges, tc)")
	}
	for _, tool := range []string{"ip", "tc", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("bench topology needs %s, not installed", tool)
		}
	}
	if probe := "eagletopo-probe-" + strconv.Itoa(os.Getpid()); exec.Command("ip", "netns", "add", probe).Run() != nil {
		t.Skip("cannot create network namespaces here (ip netns add failed)")
	} else {
		exec.Command("ip", "netns", "del", probe).Run()
	}
	bench, eagle := buildCommand(t, ".", "bench"), buildCommand(t, "../eagle", "eagle")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bench, "topology", "-eagle", eagle, "-dcs", "2", "-agents-per-dc", "4",
		"-size", "16MiB", "-cap", "4MiB/s", "-border-cap", "8MiB/s", "-stagger", "2s", "-policies", "random,topology", "-timeout", "140s",
		// One border peer: with the default two, both fetch many of the
		// same pieces across the border first, and 4 agents per
		// datacenter took 1.21-1.23 copies across (with the border at
		// 3 MiB/s) against random's 2.44: too near the half asserted
		// here to tell a regression from noise. With one: 1.05.
		"-remote", "1",
		// A sample a second of each datacenter's import, checked below.
		"-trace", "1s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("bench ran %v\n%s", time.Since(start).Round(time.Millisecond), stdout.String())
	checkTopoCleanedUp(t, cmd.Process.Pid)
	if err != nil {
		t.Fatalf("bench topology: %v\nstderr (tail):\n%s", err, tail(stderr.String(), 4000))
	}

	cross := map[string]float64{}
	for _, m := range topoMeasureLine.FindAllStringSubmatch(stdout.String(), -1) {
		mib, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatal(err)
		}
		cross[m[1]] = mib
		if m[4] != "1" {
			t.Errorf("%s: the origin served the blob %s times, want 1", m[1], m[4])
		}
	}
	for _, want := range []string{"random", "topology", "topology, dc1 +2s"} {
		if _, ok := cross[want]; !ok {
			t.Errorf("no measurement %q in the output", want)
		}
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	m := topoLastLine.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q does not match %s", last, topoLastLine)
	}
	if m[1] != "2" || m[2] != "8" {
		t.Errorf("dcs or agents not as asked: %s", last)
	}
	// A blob's one copy into datacenter 1 is at least (K-1)·L on the wire:
	// a lab that lets traffic around the router would count less.
	if r, _ := strconv.ParseFloat(m[3], 64); r < 0.95 {
		t.Errorf("cross_bytes_ratio %v: below one copy into the other datacenter; does traffic go around the router?", r)
	}
	if r, _ := strconv.ParseFloat(m[3], 64); r > 1.25 {
		t.Errorf("cross_bytes_ratio %v: topology took the blob across the border more than 1.25 times", r)
	}
	if cross["topology"] > cross["random"]/2 {
		t.Errorf("topology moved %.1f MiB across the border, random %.1f MiB: want at most half", cross["topology"], cross["random"])
	}
	checkTopoTrace(t, stderr.String(), []string{"random", "topology", "topology,staggered"})
}

// topoTraceLine is a line of bench topology's -trace for 2 datacenters.
var topoTraceLine = regexp.MustCompile(`(?m)^trace: policy=(\S+) t=([0-9.]+)s seeders_sent=([0-9.]+) dc0_in=([0-9.]+) dc0_upstream=([0-9.]+) dc0_received=([0-9.]+) dc1_in=([0-9.]+) dc1_upstream=([0-9.]+) dc1_received=([0-9.]+)$`)

// checkTopoTrace checks that the trace has samples of every measurement,
// whose counters only grow, and that a datacenter never received more
// than its agents asked for (4 agents, one copy each), give or take 5 %:
// what an agent receives counts the chunks that came twice (the summary's
// wasted=, 0.01-0.06 copies per datacenter; a CI run's trace read 4.02).
func checkTopoTrace(t *testing.T, stderr string, want []string) {
	t.Helper()
	last := map[string][]float64{}
	for _, m := range topoTraceLine.FindAllStringSubmatch(stderr, -1) {
		var v []float64
		for _, f := range m[2:] {
			x, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatalf("trace line %q: %v", m[0], err)
			}
			v = append(v, x)
		}
		if prev, ok := last[m[1]]; ok {
			for i := range v {
				if v[i] < prev[i] {
					t.Errorf("trace of %s: %q has a counter below the sample before (%v, then %v)", m[1], m[0], prev, v)
				}
			}
		}
		if v[4] > 4.2 || v[7] > 4.2 {
			t.Errorf("trace of %s: %q: a datacenter of 4 agents received more than 4 copies and 5 %%", m[1], m[0])
		}
		last[m[1]] = v
	}
	for _, p := range want {
		if _, ok := last[p]; !ok {
			t.Errorf("no trace of %s in stderr:\n%s", p, tail(stderr, 4000))
		}
	}
}

// checkTopoCleanedUp reports (and removes) what the bench process pid
// left behind: namespaces, bridges, the root namespace's route.
func checkTopoCleanedUp(t *testing.T, pid int) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if name, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.HasPrefix(name, topoNSPrefix(pid)) {
			t.Errorf("namespace %s left behind", name)
			exec.Command("ip", "netns", "del", name).Run()
		}
	}
	for k := range topoMaxDCs {
		if br := topoBridge(pid, k); exec.Command("ip", "link", "show", br).Run() == nil {
			t.Errorf("bridge %s left behind", br)
			exec.Command("ip", "link", "del", br).Run()
		}
	}
	if out, err := exec.Command("ip", "route", "show", "root", topoSubnet).Output(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("routes into %s left behind (%v): %s", topoSubnet, err, out)
	}
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("...%s", s[len(s)-n:])
}
