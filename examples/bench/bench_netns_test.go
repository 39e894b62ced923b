package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// "bench swarm -netns" runs each agent as its own process in its own
// network namespace, capped by tc, each a cluster member with certificates
// of its own (or in plaintext with -insecure), reports the swarm line, and
// leaves no namespace or bridge behind.
func TestBenchSwarmNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bench swarm -netns needs root (network namespaces, veths, tc)")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("bench swarm -netns needs %s (iproute2), not installed", tool)
		}
	}
	if probe := "eaglebench-probe-" + strconv.Itoa(os.Getpid()); exec.Command("ip", "netns", "add", probe).Run() != nil {
		t.Skip("cannot create network namespaces here (ip netns add failed)")
	} else {
		exec.Command("ip", "netns", "del", probe).Run()
	}
	bench, eagle := buildCommand(t, ".", "bench"), buildCommand(t, "../eagle", "eagle")
	for _, insecure := range []bool{false, true} {
		t.Run(map[bool]string{false: "tls", true: "insecure"}[insecure], func(t *testing.T) { benchSwarmNetnsOnce(t, bench, eagle, insecure) })
	}
	t.Run("link", func(t *testing.T) { benchLinkOnce(t, bench, eagle) })
}

var linkLine = regexp.MustCompile(`^bench: link size=(\d+) eagle_mib_s=([0-9.]+) http_mib_s=([0-9.]+) ratio=([0-9.]+) cpu_cores=([0-9.]+) agents_mib_s=([0-9.]+) ratio_agents=([0-9.]+) cpu_busy=([0-9.]+) runs=(\d+) tls=(true|false)$`)

// benchLinkOnce runs "bench link" small: one agent pulls from the seeder
// and from one warm agent over uncapped veths, beside plain HTTP.
func benchLinkOnce(t *testing.T, bench, eagle string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bench, "link", "-eagle", eagle, "-size", "16MiB", "-peers", "1", "-runs", "2", "-timeout", "60s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("%s", stdout.String())
	if left := leftoverNetns(t, cmd.Process.Pid); len(left) != 0 {
		t.Errorf("namespaces left behind: %v", left)
		for _, ns := range left {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	if err != nil {
		t.Fatalf("bench link: %v\nstderr:\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	m := linkLine.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q does not match %s", last, linkLine)
	}
	f := func(i int) float64 {
		v, err := strconv.ParseFloat(m[i], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if f(1) != 16<<20 || f(9) != 2 || m[10] != "true" {
		t.Errorf("size, runs or tls not as asked: %s", last)
	}
	eagleRate, httpRate, agentsRate := f(2), f(3), f(6)
	if eagleRate <= 0 || httpRate <= 0 || agentsRate <= 0 {
		t.Errorf("a pull has no throughput: %s", last)
	}
	// The ratio is the median of each run's own ratio.
	if r := f(4); r <= 0 {
		t.Errorf("ratio %v: %s", r, last)
	}
	if busy := f(8); busy <= 0 || busy > 1 || f(5) <= 0 {
		t.Errorf("cpu_busy or cpu_cores not measured: %s", last)
	}
	if !strings.Contains(stdout.String(), "median of 2 runs [range]: http=") {
		t.Errorf("no median of the runs:\n%s", stdout.String())
	}
}

// buildCommand builds the command in dir (relative to this package) as
// a temporary file called name.
func buildCommand(t *testing.T, dir, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	return bin
}

// benchSwarmNetnsOnce runs the bench binary, whose agents run the eagle
// binary.
func benchSwarmNetnsOnce(t *testing.T, bench, eagle string, insecure bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := t.TempDir()
	args := []string{"swarm", "-netns", "-eagle", eagle, "-nodes", "2", "-seeders", "2",
		"-size", "4MiB", "-cap", "16MiB/s", "-out", out, "-timeout", "20s"}
	if insecure {
		args = append(args, "-insecure")
	}
	cmd := exec.CommandContext(ctx, bench, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("bench ran %v\n%s", time.Since(start).Round(time.Millisecond), stdout.String())
	pid := cmd.Process.Pid
	if left := leftoverNetns(t, pid); len(left) != 0 {
		t.Errorf("namespaces left behind: %v", left)
		for _, ns := range left {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	if exec.Command("ip", "link", "show", fmt.Sprintf("eb%d", pid)).Run() == nil {
		t.Errorf("bridge eb%d left behind", pid)
		exec.Command("ip", "link", "del", fmt.Sprintf("eb%d", pid)).Run()
	}
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}

	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	m := swarmLine.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q does not match %s", last, swarmLine)
	}
	f := func(i int) float64 {
		v, err := strconv.ParseFloat(m[i], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if f(1) != 2 || f(2) != 4<<20 || f(3) != 16<<20 {
		t.Errorf("nodes, size or cap not as asked: %s", last)
	}
	floor, slowest, p50 := f(4), f(5), f(6)
	if floor != 0.25 {
		t.Errorf("floor_s = %v, want 4MiB / 16MiB/s = 0.25", floor)
	}
	// tc caps each node's download at C: two seeders could otherwise feed
	// it faster than the floor.
	if p50 < 0.9*floor || slowest < p50 {
		t.Errorf("completion times below the floor or out of order (are the tc caps in place?): %s", last)
	}
	if f(9) != 1 {
		t.Errorf("origin_copies = %v, want 1.00", f(9))
	}
	if f(10) <= 0 {
		t.Errorf("central_s missing: %s", last)
	}
	// An agent process holds at least its Go runtime; VmHWM of 0 means it
	// was not read.
	if rss := f(11); rss < 5 || rss > 1024 {
		t.Errorf("rss_max_mib = %v, not a plausible agent peak", rss)
	}
	if want := strconv.FormatBool(!insecure); m[12] != want {
		t.Errorf("tls=%s, want %s: %s", m[12], want, last)
	}
	if _, err := os.Stat(filepath.Join(out, "bench-swarm.csv")); err != nil {
		t.Error(err)
	}
}

// leftoverNetns lists the namespaces of the bench process pid still present.
func leftoverNetns(t *testing.T, pid int) []string {
	t.Helper()
	b, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var left []string
	prefix := fmt.Sprintf("eaglebench-%d-", pid)
	for line := range strings.SplitSeq(string(b), "\n") {
		if name, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.HasPrefix(name, prefix) {
			left = append(left, name)
		}
	}
	return left
}
