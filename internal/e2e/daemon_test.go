package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemon is a long-running program the test started in its own process
// group; t.Cleanup stops it and everything it started.
type daemon struct {
	name string
	dir  string // private state, removed after the daemon stopped
	log  string // its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed
}

// privateDir makes a short-named temporary directory (unix socket paths are
// limited to 108 bytes) that is removed when the test ends.
func privateDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// startDaemon starts name with args in a new process group. It is stopped
// (SIGTERM, then SIGKILL to the whole group) when the test ends, before
// dir is removed; if the test failed, the end of its log is reported.
func startDaemon(t *testing.T, dir string, env []string, name string, args ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, dir: dir, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(name, args...)
	d.cmd.Env = env
	d.cmd.Dir = dir
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Its own group, so that its children (dockerd's containerd) are
	// stopped with it; and killed if this test process dies first.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop ends the daemon and its process group.
func (d *daemon) stop(t *testing.T) {
	pgid := d.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop within 20s of SIGTERM; killing it", d.name)
	}
	// Whatever is left of the group: the daemon if it hung, its children.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill %s's process group: %v", d.name, err)
	}
	<-d.done
	if t.Failed() {
		if b, err := os.ReadFile(d.log); err == nil {
			t.Logf("%s log (end):\n%s", d.name, lastLines(string(b), 40))
		}
	}
}

// waitReady polls ready until it succeeds, the daemon exits, or 30s pass.
func (d *daemon) waitReady(t *testing.T, ready func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-d.done:
			b, _ := os.ReadFile(d.log)
			t.Fatalf("%s exited before it was ready (%v):\n%s", d.name, d.err, lastLines(string(b), 30))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 30s: %v", d.name, err)
		}
	}
}

// dockerd is a private Docker engine.
type dockerd struct {
	*daemon
	sock string
	env  []string // for the docker CLI
}

// startDockerd starts dockerd with its own data root, exec root, socket,
// pidfile and daemon.json (config, plus the private key path), without
// iptables or a bridge, on vfs. It returns once the API answers.
func startDockerd(t *testing.T, g *egressGuard, config map[string]any) *dockerd {
	t.Helper()
	dir := privateDir(t, "e2e-dockerd-")
	cfg := map[string]any{"deprecated-key-path": filepath.Join(dir, "key.json")}
	for k, v := range config {
		cfg[k] = v
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	d := &dockerd{
		daemon: startDaemon(t, dir, g.env(), "dockerd",
			"--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
			"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
			"--pidfile", filepath.Join(dir, "docker.pid"), "--host", "unix://"+sock,
			"--config-file", filepath.Join(dir, "daemon.json")),
		sock: sock,
		env:  g.env("DOCKER_HOST=unix://"+sock, "DOCKER_CONFIG="+filepath.Join(dir, "cli")),
	}
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	d.waitReady(t, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
		if resp.StatusCode != http.StatusOK || string(body) != "OK" {
			return fmt.Errorf("_ping: %s %q", resp.Status, body)
		}
		return nil
	})
	return d
}

// docker runs the docker CLI against this daemon.
func (d *dockerd) docker(ctx context.Context, args ...string) (string, error) {
	return runTool(ctx, d.env, "docker", args...)
}

// dockerImage is what the tests read from "docker image inspect".
type dockerImage struct {
	ID          string   `json:"Id"`
	RepoDigests []string `json:"RepoDigests"`
	RootFS      struct {
		Layers []string `json:"Layers"`
	} `json:"RootFS"`
}

// inspect returns the daemon's record of image ref.
func (d *dockerd) inspect(ctx context.Context, ref string) (dockerImage, error) {
	out, err := d.docker(ctx, "image", "inspect", ref)
	if err != nil {
		return dockerImage{}, err
	}
	var imgs []dockerImage
	if err := json.Unmarshal([]byte(out), &imgs); err != nil || len(imgs) != 1 {
		return dockerImage{}, fmt.Errorf("docker image inspect %s: %d images, %v in %q", ref, len(imgs), err, lastLines(out, 5))
	}
	return imgs[0], nil
}

// containerd is a private containerd (without the CRI plugin) driven by ctr.
type containerd struct {
	*daemon
	sock string
	env  []string
}

// containerdConfig keeps every path containerd uses inside dir.
const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
`

// startContainerd starts containerd with its own root, state, sockets and
// config. It returns once ctr can talk to it.
func startContainerd(t *testing.T, g *egressGuard) *containerd {
	t.Helper()
	dir := privateDir(t, "e2e-containerd-")
	sock := filepath.Join(dir, "containerd.sock")
	conf := fmt.Sprintf(containerdConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"),
		sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &containerd{
		daemon: startDaemon(t, dir, g.env(), "containerd", "--config", filepath.Join(dir, "config.toml")),
		sock:   sock,
		env:    g.env("TMPDIR=" + dir),
	}
	d.waitReady(t, func(ctx context.Context) error {
		_, err := d.ctr(ctx, "version")
		return err
	})
	return d
}

// ctr runs ctr against this containerd, in namespace "eagle".
func (d *containerd) ctr(ctx context.Context, args ...string) (string, error) {
	return runTool(ctx, d.env, "ctr", append([]string{"--address", d.sock, "--namespace", "eagle"}, args...)...)
}

// pull pulls ref with the hosts directory hostsDir and unpacks it with the
// native snapshotter (no mounts to leave behind).
func (d *containerd) pull(ctx context.Context, hostsDir, ref string) error {
	_, err := d.ctr(ctx, "images", "pull", "--hosts-dir", hostsDir, "--snapshotter", "native", ref)
	return err
}

// imageDigest returns the manifest digest containerd recorded for ref, from
// "ctr images ls".
func (d *containerd) imageDigest(ctx context.Context, ref string) (string, error) {
	out, err := d.ctr(ctx, "images", "ls")
	if err != nil {
		return "", err
	}
	// REF TYPE DIGEST SIZE PLATFORMS LABELS
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == ref {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("ctr images ls has no %s:\n%s", ref, out)
}

// contentDigests returns the digests in containerd's content store.
func (d *containerd) contentDigests(ctx context.Context) (map[string]bool, error) {
	out, err := d.ctr(ctx, "content", "ls", "--quiet")
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool)
	for _, f := range strings.Fields(out) {
		set[f] = true
	}
	return set, nil
}
