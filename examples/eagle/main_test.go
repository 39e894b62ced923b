package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

var demoLine = regexp.MustCompile(`^demo: OK agents=4 blobs=(\d+) image_bytes=(\d+) origin_blob_bytes=(\d+) p2p_peer_bytes=(\d+)$`)

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo moves 4 × 96 MiB")
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"demo"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	m := demoLine.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q does not match %s", last, demoLine)
	}
	blobs, _ := strconv.Atoi(m[1])
	image, _ := strconv.ParseInt(m[2], 10, 64)
	originBytes, _ := strconv.ParseInt(m[3], 10, 64)
	peer, _ := strconv.ParseInt(m[4], 10, 64)
	if blobs != 4 || image < 96<<20 || originBytes != image || peer <= 0 {
		t.Fatalf("demo figures off: %s", last)
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadConfigNamesTheKey(t *testing.T) {
	// Valid membership, so that the bad key is what stops the part.
	ca := testCA(t)
	agentTLS, seederTLS, trackerTLS := tlsYAML(member(t, ca, "agent")), tlsYAML(member(t, ca, "seeder")), tlsYAML(member(t, ca, "tracker"))
	agent := "data_dir: " + t.TempDir() + "\nseeders: [127.0.0.1:1]\nproxy:\n  default_upstream: http://127.0.0.1:1\n" + agentTLS
	tests := []struct {
		cmd, yaml, want string
	}{
		{"agent", "listen: :0\nsedeers: [a:1]\n" + agentTLS, "sedeers"},
		{"agent", "p2p:\n  trakers: [https://x/announce]\n" + agentTLS, "trakers"},
		{"agent", "tls:\n  ca: ca.pem\n  cret: agent.pem\n", "cret"},
		{"tracker", "tracker:\n  interval: soon\n" + trackerTLS, "soon"},
		{"tracker", "tracker:\n  policy: nearest\n" + trackerTLS, "nearest"},
		{"seeder", "seeder:\n  allowed_upstreams: [\"http://bad/\"]\n" + seederTLS, "allowed_upstreams"},
		{"seeder", "seeder:\n  allow_any_upstream: false\n" + seederTLS, "allowed_upstreams"},
		{"agent", agent + "p2p:\n  trackers: [ftp://x]\n", "trackers"},
		{"agent", agent + "p2p:\n  trackers: [https://127.0.0.1:1/announce]\n  listen_addr: nonsense\n", "listen_addr"},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		code := run([]string{tc.cmd, "--config", writeFile(t, tc.yaml), "--listen", "127.0.0.1:0"}, &stdout, &stderr)
		if code == 0 {
			t.Errorf("%s with %q: exit 0, want an error", tc.cmd, tc.yaml)
			continue
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s with %q: error %q does not name %q", tc.cmd, tc.yaml, stderr.String(), tc.want)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, cmd := range []string{"tracker", "seeder", "agent", "demo"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{cmd, "--help"}, &stdout, &stderr); code != 0 {
			t.Errorf("%s --help: exit %d", cmd, code)
		}
		if !strings.Contains(stderr.String(), "-") {
			t.Errorf("%s --help printed no flags", cmd)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"fly"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown command "fly"`) {
		t.Errorf("unknown command: exit %d, %q", code, stderr.String())
	}
	// The node binary has no benchmarks; its usage does not offer them,
	// and "eagle bench" says where they went.
	stderr.Reset()
	usage(&stderr)
	if strings.Contains(stderr.String(), "bench") {
		t.Errorf("usage mentions bench:\n%s", stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"bench", "swarm"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "benchmarks moved: go run ./examples/bench") {
		t.Errorf("eagle bench: exit %d, %q; want 2 and the hint", code, stderr.String())
	}
}
