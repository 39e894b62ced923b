package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/origin"
)

// TestPreheatCommand: "eagle seeder" with a preheat: section serves the
// API, and "eagle preheat" warms an image through it at the seeder that
// owns each blob (here the other seeder, the only one in preheat.seeders),
// printing a line per blob when stdout is not a terminal.
func TestPreheatCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o, err := origin.Start(ctx, origin.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	img, err := origin.PushRandomImage(ctx, nil, o.URL, "ops/app", "v1", []int64{1<<20 + 5, 4096}, 7)
	if err != nil {
		t.Fatal(err)
	}
	ca := testCA(t)
	trk := startCommand(t, "tracker", append([]string{"--listen", "127.0.0.1:0", "--interval", "1s"}, tlsArgs(member(t, ca, "tracker"))...)...)
	announce := "https://" + waitAddr(t, trk, "listening", "addr") + "/announce"
	owner := startCommand(t, "seeder", append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--peer-listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--allow-upstream", o.Host, "--tracker", announce},
		tlsArgs(member(t, ca, "seeder-0"))...)...)
	ownerAddr := waitAddr(t, owner, "seeder listening", "grpc")

	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("hush\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("seeder:\n  allowed_upstreams: [%q]\npreheat:\n  listen: 127.0.0.1:0\n  secret_file: %q\n  seeders: [%q]\n  registries:\n    - host: %q\n      plain_http: true\n  concurrency: 2\n%s",
		o.Host, secretFile, ownerAddr, o.Host, tlsYAML(member(t, ca, "seeder-1")))
	sdr := startCommand(t, "seeder", "--config", writeFile(t, cfg), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--peer-listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--tracker", announce)
	api := "http://" + waitAddr(t, sdr, "preheat listening", "addr")

	var stdout, stderr bytes.Buffer
	if code := run([]string{"preheat", "--seeder-api", api, "--secret-file", secretFile, "--interval", "50ms", o.Host + "/ops/app:v1"}, &stdout, &stderr); code != 0 {
		t.Fatalf("eagle preheat: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, b := range img.Blobs() {
		if !strings.Contains(out, "done "+b.Digest.String()) {
			t.Errorf("no line for %s in:\n%s", b.Digest, out)
		}
		if n := o.BlobGETs(b.Digest); n != 1 {
			t.Errorf("origin served %s %d times, want once", b.Digest, n)
		}
	}
	if !strings.Contains(out, "done: 3 blobs") || strings.Contains(out, "\r") {
		t.Errorf("stdout (not a terminal):\n%q", out)
	}

	for _, tc := range []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{[]string{"--seeder-api", api, o.Host + "/ops/app:v1"}, 1, "", "401"},
		{[]string{"--seeder-api", api, "--secret-file", secretFile, o.Host + "/ops/none:v1"}, 1, "", "not found"},
		{[]string{"--seeder-api", api, "--secret-file", secretFile, "--platform", "linux/", o.Host + "/ops/app:v1"}, 1, "", "platforms[0]"},
		{[]string{"--seeder-api", api, "--secret-file", filepath.Join(t.TempDir(), "none"), o.Host + "/ops/app:v1"}, 1, "", "--secret-file"},
		{[]string{"--seeder-api", "127.0.0.1:1", o.Host + "/ops/app:v1"}, 1, "", "--seeder-api"},
		{[]string{"--seeder-api", api}, 2, "", "exactly one image"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"preheat", "--interval", "50ms"}, tc.args...), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.inErr) {
			t.Errorf("eagle preheat %q: exit %d, stderr %q; want exit %d naming %q", tc.args, code, stderr.String(), tc.code, tc.inErr)
		}
	}
}

// The preheat: section's mistakes name their keys.
func TestPreheatConfigNamesTheKey(t *testing.T) {
	ca := testCA(t)
	seederTLS := tlsYAML(member(t, ca, "seeder"))
	base := "seeder:\n  allowed_upstreams: [registry.example.com]\np2p:\n  trackers: [https://127.0.0.1:1/announce]\n" + seederTLS
	for _, tc := range []struct{ yaml, want string }{
		{"preheat:\n  listen: 127.0.0.1:0\n  secret: x\n", "preheat.seeders"},
		{"preheat:\n  seeders: [a:1]\n  secret: x\n", "preheat.listen"},
		{"preheat:\n  listen: 127.0.0.1:0\n  seeders: [a:1]\n", "secret_file or tls.client_ca"},
		{"preheat:\n  listen: 127.0.0.1:0\n  seeders: [a:1]\n  secret: x\n  registries:\n    - plain_http: true\n", "preheat.registries[0].host"},
		{"preheat:\n  listen: 127.0.0.1:0\n  seeders: [a:1]\n  secret: x\n  registries:\n    - {host: r, password: p}\n", "preheat.registries[0].username"},
		{"preheat:\n  listen: 127.0.0.1:0\n  seeders: [a:1]\n  secret: x\n  platforms: [\"linux/\"]\n", "preheat.platforms[0]"},
		{"preheat:\n  listen: 127.0.0.1:0\n  seeders: [a:1]\n  secret: x\n  concurrency: -1\n", "preheat.concurrency"},
		{"preheat:\n  listen: 127.0.0.1:0\n  seeders: [a:1]\n  secret_file: /nonexistent/secret\n", "preheat.secret_file"},
		{"preheat:\n  listen: 127.0.0.1:0\n  seeders: [a:1]\n  secret: x\n  job_timeout: soon\n", "preheat.job_timeout"},
		{"preheat:\n  listen: 127.0.0.1:0\n  seeders: [a:1]\n  secret: x\n  job_timeout: -1m\n", "preheat.job_timeout -1m0s is negative"},
		{"preheat:\n  listen: 127.0.0.1:0\n  seeders: [a:1]\n  secret: x\n  secrte: y\n", "secrte"},
	} {
		var stdout, stderr bytes.Buffer
		code := run([]string{"seeder", "--config", writeFile(t, base+tc.yaml), "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, &stdout, &stderr)
		if code == 0 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want an error naming %q", tc.yaml, code, stderr.String(), tc.want)
		}
	}
}

// With preheat.tls.client_ca and no secret, the API takes only clients
// with a certificate from that CA.
func TestPreheatMutualTLS(t *testing.T) {
	ca := testCA(t)
	srv, cli := member(t, ca, "seeder-0"), member(t, ca, "ops")
	c := &preheatConfig{Listen: "127.0.0.1:0", Seeders: []string{"127.0.0.1:1"}, TLS: preheatTLS{Cert: srv.Cert, Key: srv.Key, ClientCA: srv.CA}}
	if err := c.validate([]string{"registry.example.com"}); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	stop, err := startPreheat(c, srv, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	url := "https://" + waitAddr(t, &logs, "preheat listening", "addr") + "/preheat/nope"
	if code, _ := getWith(t, memberClient(t, cli), url); code != http.StatusNotFound {
		t.Errorf("GET with a client certificate: %d, want 404 (no such job)", code)
	}
	anon := opsClient(t, ca) // trusts the CA, presents no certificate
	if resp, err := anon.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("GET without a client certificate: %d, want a refused handshake", resp.StatusCode)
	}
}
