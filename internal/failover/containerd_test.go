package failover

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/proxy"
)

// containerd is a private containerd (no CRI plugin) running in an
// agent's namespace, driven by ctr in the same namespace: for both,
// 127.0.0.1:5000 is that agent.
type containerd struct {
	c    *cluster
	a    *agent
	proc *proc
	dir  string
	sock string
	env  []string
}

// containerdConfig keeps every path containerd uses inside its directory.
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

// startContainerd starts containerd in a's namespace and waits until ctr
// can talk to it.
func (c *cluster) startContainerd(ctx context.Context, a *agent) *containerd {
	c.t.Helper()
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "fo-ctrd-")
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	conf := fmt.Sprintf(containerdConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"),
		sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(conf), 0o644); err != nil {
		c.t.Fatal(err)
	}
	d := &containerd{c: c, a: a, dir: dir, sock: sock, env: cleanEnv("TMPDIR=" + dir)}
	// Registered after the directory's removal, so it runs before it.
	d.proc = c.startEnv(a.host, "containerd-"+a.name, "", d.env, "containerd", "--config", filepath.Join(dir, "config.toml"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := d.ctr(ctx, "version")
		if err == nil {
			return d
		}
		select {
		case <-d.proc.done:
			d.proc.printLog(30)
			c.t.Fatalf("containerd exited before it was ready: %v", d.proc.err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("containerd not ready after 30s: %v", err)
		}
	}
}

// cleanEnv is the test's environment without proxy settings (a proxy
// cannot reach the lab), plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(strings.ToLower(k), "_proxy") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// ctr runs ctr in the agent's namespace against this containerd, in
// namespace "eagle".
func (d *containerd) ctr(ctx context.Context, args ...string) (string, error) {
	cmd := d.a.host.Command(ctx, "ctr", append([]string{"--address", d.sock, "--namespace", "eagle"}, args...)...)
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, lastLines(string(out), 20))
	}
	return string(out), nil
}

// pull pulls img from the origin with a hosts directory that names the
// agent as the origin's mirror (as "eagle agent --write-hosts-toml"
// writes it), and unpacks it with the native snapshotter.
func (d *containerd) pull(ctx context.Context, img origin.Image) (string, error) {
	hosts := filepath.Join(d.dir, "certs.d")
	if err := proxy.WriteHostsTOML(hosts, "http://"+agentListen, []string{d.c.origin.URL}); err != nil {
		return "", err
	}
	return d.ctr(ctx, "images", "pull", "--hosts-dir", hosts, "--snapshotter", "native", d.c.origin.Host+"/"+img.Repository+":"+img.Tag)
}

// checkImage checks that containerd recorded img's manifest for its
// reference and holds each of its blobs (each verified against its
// digest when containerd committed it).
func (d *containerd) checkImage(ctx context.Context, img origin.Image) error {
	ref := d.c.origin.Host + "/" + img.Repository + ":" + img.Tag
	out, err := d.ctr(ctx, "images", "ls")
	if err != nil {
		return err
	}
	found := false
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == ref {
			found = true
			if f[2] != img.Manifest.Digest.String() {
				return fmt.Errorf("%s: containerd recorded manifest %s, want %s", ref, f[2], img.Manifest.Digest)
			}
		}
	}
	if !found {
		return fmt.Errorf("ctr images ls has no %s:\n%s", ref, out)
	}
	out, err = d.ctr(ctx, "content", "ls", "--quiet")
	if err != nil {
		return err
	}
	have := strings.Fields(out)
	for _, b := range append(img.Blobs(), img.Manifest) {
		if !slices.Contains(have, b.Digest.String()) {
			return fmt.Errorf("%s: blob %s is not in containerd's content store", ref, b.Digest)
		}
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
