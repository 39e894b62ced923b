package proxy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
)

// TestWriteHostsTOMLReadByContainerd writes the files and reads them back
// with containerd's own hosts handling: for every registry, containerd
// must try the agent first (pull and resolve only), then the registry.
func TestWriteHostsTOMLReadByContainerd(t *testing.T) {
	dir := t.TempDir()
	agent := "http://127.0.0.1:5001"
	regs := []string{"docker.io", "ghcr.io", "http://127.0.0.1:5000", "index.docker.io"}
	if err := WriteHostsTOML(dir, agent, regs); err != nil {
		t.Fatalf("WriteHostsTOML: %v", err)
	}
	hosts := config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(dir)})

	pullResolve := docker.HostCapabilityPull | docker.HostCapabilityResolve
	tests := []struct {
		ref          string // the host part of a reference, as containerd passes it
		scheme, host string // the registry's own entry
	}{
		{"docker.io", "https", "registry-1.docker.io"},
		{"ghcr.io", "https", "ghcr.io"},
		{"127.0.0.1:5000", "http", "127.0.0.1:5000"},
	}
	for _, tc := range tests {
		got, err := hosts(tc.ref)
		if err != nil {
			t.Fatalf("hosts(%s): %v", tc.ref, err)
		}
		if len(got) != 2 {
			t.Fatalf("hosts(%s): %d hosts %+v, want the agent then the registry", tc.ref, len(got), got)
		}
		m, s := got[0], got[1]
		if m.Scheme != "http" || m.Host != "127.0.0.1:5001" || m.Path != "/v2" || m.Capabilities != pullResolve {
			t.Errorf("hosts(%s)[0] = %s://%s%s caps %b, want the agent http://127.0.0.1:5001/v2 with pull|resolve",
				tc.ref, m.Scheme, m.Host, m.Path, m.Capabilities)
		}
		if s.Scheme != tc.scheme || s.Host != tc.host || s.Path != "/v2" || s.Capabilities&pullResolve != pullResolve {
			t.Errorf("hosts(%s)[1] = %s://%s%s caps %b, want %s://%s/v2 with pull|resolve",
				tc.ref, s.Scheme, s.Host, s.Path, s.Capabilities, tc.scheme, tc.host)
		}
	}

	// Exactly one directory per registry, and no temporary file left over.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 1 || files[0].Name() != "hosts.toml" {
			t.Errorf("%s holds %v, want only hosts.toml", e.Name(), files)
		}
	}
	if len(names) != 3 {
		t.Errorf("directories %v, want docker.io, ghcr.io and 127.0.0.1:5000", names)
	}

	// Writing again replaces the files: the agent moved.
	if err := WriteHostsTOML(dir, "https://eagle.internal:443", []string{"ghcr.io"}); err != nil {
		t.Fatal(err)
	}
	got, err := hosts("ghcr.io")
	if err != nil || len(got) != 2 || got[0].Scheme != "https" || got[0].Host != "eagle.internal:443" {
		t.Fatalf("after rewrite: %+v, %v", got, err)
	}
}

func TestWriteHostsTOMLRejectsBadInput(t *testing.T) {
	tests := []struct {
		name     string
		dir      string
		agent    string
		registry []string
	}{
		{"no scheme on the agent", "d", "127.0.0.1:5001", []string{"ghcr.io"}},
		{"agent with a path", "d", "http://127.0.0.1:5001/v2", []string{"ghcr.io"}},
		{"agent with a query", "d", "http://127.0.0.1:5001?x=1", []string{"ghcr.io"}},
		{"agent ftp", "d", "ftp://127.0.0.1:5001", []string{"ghcr.io"}},
		{"agent bad host", "d", "http://bad host:1", []string{"ghcr.io"}},
		{"no registry", "d", "http://127.0.0.1:5001", nil},
		{"registry with a path", "d", "http://127.0.0.1:5001", []string{"https://ghcr.io/org"}},
		{"registry with a bad host", "d", "http://127.0.0.1:5001", []string{"../../etc"}},
		{"empty registry", "d", "http://127.0.0.1:5001", []string{""}},
		{"registry as http and https", "d", "http://127.0.0.1:5001", []string{"http://r:5000", "https://r:5000"}},
		{"empty directory", "", "http://127.0.0.1:5001", []string{"ghcr.io"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := tc.dir
			if dir != "" {
				dir = filepath.Join(root, dir)
			}
			err := WriteHostsTOML(dir, tc.agent, tc.registry)
			if !errors.Is(err, ErrInvalidHostsConfig) {
				t.Fatalf("err = %v, want ErrInvalidHostsConfig", err)
			}
			if ents, _ := os.ReadDir(root); len(ents) != 0 {
				t.Errorf("wrote %v despite the error", ents)
			}
		})
	}
}

func TestWriteHostsTOMLReportsWriteErrors(t *testing.T) {
	// A file where the hosts directory should be.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteHostsTOML(f, "http://127.0.0.1:5001", []string{"ghcr.io"})
	if err == nil || errors.Is(err, ErrInvalidHostsConfig) {
		t.Fatalf("err = %v, want an I/O error", err)
	}
}
