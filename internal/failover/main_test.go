package failover

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/internal/netns"
)

// binDir holds the eagle binary the tests build, once, on first use.
var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eagle-failover-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// The distribution registry starts a notification broadcaster that
		// its App never stops.
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// eagleBinary builds examples/eagle once per test binary and returns its
// path.
func eagleBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath = filepath.Join(binDir, "eagle")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/eagle-p2p/eagle/examples/eagle").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./examples/eagle: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// require skips the test, naming what is missing, where it cannot run:
// not root, no ip, tc or redis-server, or any of tools. In CI (CI set)
// it fails instead: CI runs as root with every tool installed.
func require(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("failover: starts a cluster of processes in network namespaces; skipped in -short mode")
	}
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run this test: "+format, args...)
		}
		t.Skipf(format, args...)
	}
	if err := netns.Check(); err != nil {
		missing("failover: needs root and iproute2 (ip): %v", err)
	}
	for _, tool := range append([]string{"tc", "redis-server"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing("failover: %s is not installed (apt-get install iproute2 redis-server containerd): %v", tool, err)
		}
	}
}
