package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eagle-p2p/eagle/mtls"
)

// certsRun runs "eagle certs" in-process.
func certsRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := runCerts(context.Background(), args, &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

// certsSnippets returns the tls: sections printed for each member, loaded
// the way the binaries load their YAML.
func certsSnippets(t *testing.T, out string) map[string]mtls.Config {
	t.Helper()
	got := map[string]mtls.Config{}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		name, ok := strings.CutPrefix(l, "# ")
		if !ok || i+1 >= len(lines) {
			continue
		}
		var v struct {
			TLS mtls.Config `yaml:"tls"`
		}
		dec := yaml.NewDecoder(strings.NewReader(lines[i+1]))
		dec.KnownFields(true)
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("snippet for %s %q: %v", name, lines[i+1], err)
		}
		got[name] = v.TLS
	}
	return got
}

// certsHandshake connects client to server over 127.0.0.1 with mutual TLS
// and returns the member names each end saw.
func certsHandshake(t *testing.T, server, client mtls.Config) (serverSaw, clientSaw string) {
	t.Helper()
	s, err := mtls.Load(server)
	if err != nil {
		t.Fatalf("Load %s: %v", server.Cert, err)
	}
	c, err := mtls.Load(client)
	if err != nil {
		t.Fatalf("Load %s: %v", client.Cert, err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", s.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	saw := make(chan string, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			saw <- "accept: " + err.Error()
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			saw <- "handshake: " + err.Error()
			return
		}
		tc.Write([]byte("ok"))
		saw <- mtls.MemberName(tc.ConnectionState())
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), c.ClientConfig())
	if err != nil {
		t.Fatalf("dial: %v (server: %s)", err, <-saw)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(io.LimitReader(conn, 2)); err != nil || string(b) != "ok" {
		t.Fatalf("read: %q %v (server: %s)", b, err, <-saw)
	}
	return <-saw, mtls.MemberName(conn.ConnectionState())
}

func TestCertsMakesWorkingMembers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := certsRun(t, "--dir", dir, "--names", "tracker,seeder-0", "--names", "agent", "--hosts", "127.0.0.1,seeder-0.eagle.svc")
	if err != nil {
		t.Fatalf("eagle certs: %v\n%s", err, out)
	}
	if !strings.Contains(out, "made a new CA") {
		t.Errorf("output does not say a CA was made:\n%s", out)
	}
	for path, mode := range map[string]os.FileMode{
		dir:                                    0o700 | os.ModeDir,
		filepath.Join(dir, "ca.pem"):           0o644,
		filepath.Join(dir, "ca-key.pem"):       0o600,
		filepath.Join(dir, "tracker.pem"):      0o644,
		filepath.Join(dir, "tracker-key.pem"):  0o600,
		filepath.Join(dir, "seeder-0-key.pem"): 0o600,
		filepath.Join(dir, "agent-key.pem"):    0o600,
		filepath.Join(dir, "agent.pem"):        0o644,
		filepath.Join(dir, "seeder-0.pem"):     0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
		if !strings.Contains(out, path) && fi.Mode().IsRegular() {
			t.Errorf("output does not name %s:\n%s", path, out)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 8 {
		t.Errorf("%d files in %s, want 8 (no temporary files left)", len(entries), dir)
	}

	snippets := certsSnippets(t, out)
	if len(snippets) != 3 {
		t.Fatalf("%d tls: snippets, want 3:\n%s", len(snippets), out)
	}
	want := mtls.Config{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "agent.pem"), Key: filepath.Join(dir, "agent-key.pem")}
	if snippets["agent"] != want {
		t.Errorf("agent snippet %+v, want %+v", snippets["agent"], want)
	}
	serverSaw, clientSaw := certsHandshake(t, snippets["seeder-0"], snippets["agent"])
	if serverSaw != "agent" || clientSaw != "seeder-0" {
		t.Errorf("seeder saw %q, agent saw %q", serverSaw, clientSaw)
	}
}

func TestCertsAddsMemberWithSameCA(t *testing.T) {
	dir := t.TempDir()
	out, err := certsRun(t, "--dir", dir, "--names", "tracker")
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	caBefore, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	out, err = certsRun(t, "--dir", dir, "--names", "agent-7", "--validity", "1h")
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "reused the CA") {
		t.Errorf("second run does not say it reused the CA:\n%s", out)
	}
	caAfter, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caBefore, caAfter) {
		t.Error("the second run replaced ca.pem")
	}
	tracker, err := mtls.MemberFiles(dir, "tracker")
	if err != nil {
		t.Fatal(err)
	}
	serverSaw, clientSaw := certsHandshake(t, tracker, certsSnippets(t, out)["agent-7"])
	if serverSaw != "agent-7" || clientSaw != "tracker" {
		t.Errorf("tracker saw %q, agent saw %q", serverSaw, clientSaw)
	}
}

func TestCertsRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if out, err := certsRun(t, "--dir", dir, "--names", "tracker"); err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	certPath := filepath.Join(dir, "tracker.pem")
	before, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	_, err = certsRun(t, "--dir", dir, "--names", "agent,tracker")
	if err == nil || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), certPath) {
		t.Fatalf("re-issuing tracker: %v, want an error naming %s and --force", err, certPath)
	}
	if after, _ := os.ReadFile(certPath); !bytes.Equal(before, after) {
		t.Error("a refused run replaced tracker.pem")
	}
	if _, err := os.Stat(filepath.Join(dir, "agent.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run wrote agent.pem (%v)", err)
	}

	out, err := certsRun(t, "--dir", dir, "--names", "tracker", "--force")
	if err != nil {
		t.Fatalf("--force: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(certPath); bytes.Equal(before, after) {
		t.Error("--force did not replace tracker.pem")
	}
	if _, err := mtls.Load(certsSnippets(t, out)["tracker"]); err != nil {
		t.Errorf("replaced member does not load: %v", err)
	}
}

func TestCertsFlagErrors(t *testing.T) {
	keyOnly := t.TempDir()
	if err := os.WriteFile(filepath.Join(keyOnly, "ca.pem"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--names", "a"}, "--dir"},
		{[]string{"--dir", dir}, "--names"},
		{[]string{"--dir", dir, "--names", "a", "--validity", "0s"}, "--validity"},
		{[]string{"--dir", dir, "--names", "a", "--ca-validity", "-1h"}, "--ca-validity"},
		{[]string{"--dir", dir, "--names", "ca"}, "--names"},
		{[]string{"--dir", dir, "--names", "../escape"}, "--names"},
		{[]string{"--dir", dir, "--names", "a,a"}, "--names"},
		{[]string{"--dir", dir, "--names", "a", "--hosts", "http://x/"}, "--hosts"},
		{[]string{"--dir", keyOnly, "--names", "a"}, "--dir"},
	}
	for _, tc := range tests {
		out, err := certsRun(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s\n%s", tc.args, err, tc.want, out)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused runs wrote %d files", len(entries))
	}
	if _, err := certsRun(t, "--dir", dir, "--names", "a", "stray"); err != errUsage {
		t.Errorf("stray argument: %v, want errUsage", err)
	}
	if _, err := certsRun(t, "--bogus"); err != errUsage {
		t.Errorf("unknown flag: %v, want errUsage", err)
	}
	if out, err := certsRun(t, "--help"); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "-names") {
		t.Errorf("--help: %v\n%s", err, out)
	}
}
