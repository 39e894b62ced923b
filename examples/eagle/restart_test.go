package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
)

// buildEagle builds this command into a temporary directory.
func buildEagle(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "eagle")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// agentProcess is an "eagle agent" running as its own process.
type agentProcess struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

// startAgentProcess starts the agent with cfg and waits until it listens.
func startAgentProcess(t *testing.T, bin, cfg string) *agentProcess {
	t.Helper()
	cmd := exec.Command(bin, "agent", "--config", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProcess{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" && rec.Addr != "" {
				select {
				case addr <- rec.Addr:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		<-p.done
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not start listening")
	}
	return p
}

// getBlob GETs a blob through the agent and returns its sha256 and length.
func getBlob(ctx context.Context, url string, limit int64) (string, int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	var r io.Reader = resp.Body
	if limit > 0 {
		r = io.LimitReader(resp.Body, limit)
	}
	n, err := io.Copy(h, r)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, err
}

// An agent killed with SIGKILL in the middle of a download comes back
// serving only whole, verified blobs: the partial download is discarded
// and fetched again, and the blob it had completed before the crash is
// served from its cache without being downloaded again.
func TestRestartAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and moves ~40 MiB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildEagle(t)
	c, err := cluster.Start(ctx, cluster.Options{Dir: t.TempDir(), Seeders: 1, AnnounceInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "restart/app", "v1", []int64{4 << 20, 24 << 20}, 11)
	if err != nil {
		t.Fatal(err)
	}
	done, cut := img.Layers[0], img.Layers[1]
	dataDir := t.TempDir()
	if !strings.HasPrefix(c.TrackerURL, "https://") {
		t.Fatalf("tracker %s: the cluster runs without mutual TLS", c.TrackerURL)
	}
	// The agent process is a member of the cluster, with files of its own.
	membership, err := c.Member("agent-restart")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
log_level: info
data_dir: %s
seeders: [%s]
p2p:
  listen_addr: 127.0.0.1:0
  trackers: [%s]
  download_limit: 8MiB/s
proxy:
  default_upstream: %s
`, dataDir, c.Seeders[0].Addr, c.TrackerURL, c.Origin.URL) + tlsYAML(membership)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	blobURL := func(base string, d fmt.Stringer) string {
		return base + "/v2/" + img.Repository + "/blobs/" + d.String()
	}

	a := startAgentProcess(t, bin, cfg)
	if got, _, err := getBlob(ctx, blobURL(a.url, done.Digest), 0); err != nil || got != done.Digest.String() {
		t.Fatalf("first blob: %s, %v", got, err)
	}
	// Start the second (24 MiB at 8 MiB/s: ~3 s) and kill the agent in the middle.
	if _, n, err := getBlob(ctx, blobURL(a.url, cut.Digest), 4<<20); err != nil || n != 4<<20 {
		t.Fatalf("start of the second blob: %d bytes, %v", n, err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.cmd.Wait()
	<-a.done
	partials, _ := os.ReadDir(filepath.Join(dataDir, "p2p", "partial"))
	if len(partials) == 0 {
		t.Fatal("no partial download on disk after the kill: the test did not cut a download")
	}
	if blobOnDisk(t, dataDir, cut.Digest.Encoded()) {
		t.Fatal("the cut blob is in the cache after the kill")
	}

	seederBytes := c.Seeders[0].Engine.Stats().BytesUploaded
	originGETs := c.Origin.TotalBlobGETs()
	a = startAgentProcess(t, bin, cfg)
	if partials, _ := os.ReadDir(filepath.Join(dataDir, "p2p", "partial")); len(partials) != 0 {
		t.Errorf("partial downloads kept after the restart: %v", partials)
	}
	// The completed blob is served from the cache: nothing more leaves the seeder.
	if got, _, err := getBlob(ctx, blobURL(a.url, done.Digest), 0); err != nil || got != done.Digest.String() {
		t.Fatalf("completed blob after restart: %s, %v", got, err)
	}
	if up := c.Seeders[0].Engine.Stats().BytesUploaded - seederBytes; up != 0 {
		t.Errorf("the seeder uploaded %d bytes for a blob the agent had before the crash", up)
	}
	// The cut blob is fetched again, whole and verified.
	if got, n, err := getBlob(ctx, blobURL(a.url, cut.Digest), 0); err != nil || got != cut.Digest.String() || n != cut.Size {
		t.Fatalf("cut blob after restart: %s (%d bytes), %v", got, n, err)
	}
	if after := c.Origin.TotalBlobGETs(); after != originGETs {
		t.Errorf("the restart cost %d more blob GETs at the origin", after-originGETs)
	}
	if !blobOnDisk(t, dataDir, cut.Digest.Encoded()) {
		t.Error("the refetched blob was not cached")
	}
}

func blobOnDisk(t *testing.T, dataDir, hex string) bool {
	t.Helper()
	var found bool
	filepath.WalkDir(filepath.Join(dataDir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, hex) {
			found = true
		}
		return nil
	})
	return found
}
