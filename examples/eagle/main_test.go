package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/tracker"
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
		{"tracker", "tracker:\n  policy: topology\n  topology:\n    remote: -1\n" + trackerTLS, "topology.remote -1"},
		{"tracker", "tracker:\n  topology:\n    remote: [2]\n" + trackerTLS, "tracker.topology.remote"},
		{"tracker", "tracker:\n  topology:\n    remtoe: 2\n" + trackerTLS, "remtoe"},
		{"tracker", "tracker:\n  locations:\n    - {cidr: 10.1.0.0/33, location: eu/a}\n" + trackerTLS, "tracker.locations[0].cidr"},
		{"tracker", "tracker:\n  locations:\n    - {cidr: 10.1.0.0/16, location: eu/a}\n    - {cidr: 10.2.0.0/16, location: \"eu//b\"}\n" + trackerTLS, "locations[1].location"},
		{"tracker", "tracker:\n  locations:\n    - {location: eu/a}\n" + trackerTLS, "locations[0].cidr"},
		{"tracker", "tracker:\n  locations:\n    - {cidr: 10.1.0.0/16, zone: eu/a}\n" + trackerTLS, "zone"},
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

// The tracker's YAML picks the topology policy, with its settings, and
// gives locations to peers by CIDR.
func TestTrackerTopologyConfig(t *testing.T) {
	const doc = `
log_level: info
tracker:
  policy: topology
  topology:
    remote: 3
    load_half_life: 30s
    sample: 500
  locations:
    - {cidr: 10.1.0.0/16, location: eu-west-1/eu-west-1a}
    - cidr: "fd00:1::/64"
      location: eu-west-1/eu-west-1b
tls:
  insecure: true
`
	var cfg trackerConfig
	if err := decodeYAML("tracker.yaml", []byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	tc, err := cfg.Tracker.config()
	if err != nil {
		t.Fatal(err)
	}
	wantRules := []tracker.LocationRule{
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Location: "eu-west-1/eu-west-1a"},
		{Prefix: netip.MustParsePrefix("fd00:1::/64"), Location: "eu-west-1/eu-west-1b"},
	}
	if !slices.Equal(tc.Locations, wantRules) {
		t.Errorf("locations read as %+v, want %+v", tc.Locations, wantRules)
	}
	want := tracker.TopologyConfig{Remote: 3, LoadHalfLife: 30 * time.Second, Sample: 500}
	if cfg.Tracker.Topology != want {
		t.Errorf("topology read as %+v, want %+v", cfg.Tracker.Topology, want)
	}
	p, ok := tc.Policy.(*tracker.TopologyPolicy)
	if !ok {
		t.Fatalf("policy topology built %T, want *tracker.TopologyPolicy", tc.Policy)
	}
	if n := p.SampleSize(50); n != 500 {
		t.Errorf("policy's sample %d, want topology.sample 500", n)
	}
	// remote: 3 reached the policy: a peer alone in its location, a
	// border peer by construction, is handed 3 remote seeders.
	var candidates []tracker.Peer
	for n := range 5 {
		candidates = append(candidates, tracker.Peer{ID: tracker.PeerID{byte(n + 1)}, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 0, byte(n + 1)}), 6881), Location: "us"})
	}
	self := tracker.Peer{ID: tracker.PeerID{99}, Addr: netip.MustParseAddrPort("10.1.0.1:6881"), Left: 10, Location: "eu"}
	if got := p.Order(tracker.InfoHash{}, self, candidates); len(got) != 3 {
		t.Errorf("lone peer handed %d remote peers, want topology.remote 3", len(got))
	}

	// The default stays completeness, and --help offers topology.
	var def trackerSection
	if c, err := def.config(); err != nil || c.Policy != (tracker.CompletenessPolicy{}) {
		t.Errorf("no policy: %T, %v; want completeness", c.Policy, err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"tracker", "--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "topology") {
		t.Errorf("tracker --help (exit %d) does not offer the topology policy:\n%s", code, stderr.String())
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
