package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker/config"
)

// TestAgentWriteHostsTOML runs "eagle agent --write-hosts-toml" and reads
// the files back with containerd's hosts handling.
func TestAgentWriteHostsTOML(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs.d")
	var stdout, stderr bytes.Buffer
	code := run([]string{"agent", "--listen", ":5005", "--write-hosts-toml", dir,
		"--upstream", "http://127.0.0.1:5000", "--mirror", "docker.io,ghcr.io"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "3 registries") {
		t.Errorf("stdout %q does not report 3 registries", stdout.String())
	}
	hosts := config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(dir)})
	for ref, server := range map[string]string{
		"127.0.0.1:5000": "http://127.0.0.1:5000",
		"docker.io":      "https://registry-1.docker.io",
		"ghcr.io":        "https://ghcr.io",
	} {
		got, err := hosts(ref)
		if err != nil {
			t.Fatalf("hosts(%s): %v", ref, err)
		}
		if len(got) != 2 || got[0].Scheme+"://"+got[0].Host != "http://127.0.0.1:5005" || got[1].Scheme+"://"+got[1].Host != server {
			t.Errorf("hosts(%s) = %+v, want the agent at http://127.0.0.1:5005 then %s", ref, got, server)
		}
	}
}

func TestAgentWriteHostsTOMLErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--listen", ":5005"}, "no registry to mirror"},
		{[]string{"--listen", "127.0.0.1:0", "--mirror", "ghcr.io"}, "fixed port"},
		{[]string{"--listen", "nonsense", "--mirror", "ghcr.io"}, "nonsense"},
		{[]string{"--listen", ":5005", "--mirror", "https://ghcr.io/some/path"}, "ghcr.io/some/path"},
	}
	for _, tc := range tests {
		dir := filepath.Join(t.TempDir(), "certs.d")
		var stdout, stderr bytes.Buffer
		args := append([]string{"agent", "--write-hosts-toml", dir}, tc.args...)
		if code := run(args, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error naming %q", tc.args, code, stderr.String(), tc.want)
		}
	}
	for listen, want := range map[string]string{"[::]:5005": "http://[::1]:5005", "0.0.0.0:5005": "http://127.0.0.1:5005", "10.1.2.3:5005": "http://10.1.2.3:5005"} {
		if got, err := localAgentURL(listen); err != nil || got != want {
			t.Errorf("localAgentURL(%q) = %q, %v; want %q", listen, got, err, want)
		}
	}
}
