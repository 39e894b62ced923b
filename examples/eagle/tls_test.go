package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/mtls"
)

// testCA makes a cluster CA for one test.
func testCA(t *testing.T) *mtls.CA {
	t.Helper()
	ca, err := mtls.NewCA("eagle test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// member issues ca's member files for name into a directory the test
// removes, as "eagle certs" would lay them out, and returns their Config.
func member(t *testing.T, ca *mtls.CA, name string) mtls.Config {
	t.Helper()
	cfg, err := ca.WriteMember(filepath.Join(t.TempDir(), "tls"), name)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tlsArgs are the --tls-* flags that give a command cfg.
func tlsArgs(cfg mtls.Config) []string {
	if cfg.Insecure {
		return []string{"--tls-insecure"}
	}
	return []string{"--tls-ca", cfg.CA, "--tls-cert", cfg.Cert, "--tls-key", cfg.Key}
}

// tlsYAML is the tls: section that gives a config file cfg.
func tlsYAML(cfg mtls.Config) string {
	if cfg.Insecure {
		return "tls:\n  insecure: true\n"
	}
	return fmt.Sprintf("tls:\n  ca: %q\n  cert: %q\n  key: %q\n", cfg.CA, cfg.Cert, cfg.Key)
}

// opsClient is an HTTPS client that trusts ca and presents no certificate,
// as a Prometheus scraper or a Kubernetes probe does. Member certificates
// name localhost.
func opsClient(t *testing.T, ca *mtls.CA) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// memberClient is an HTTPS client that presents cfg's member certificate.
func memberClient(t *testing.T, cfg mtls.Config) *http.Client {
	t.Helper()
	creds, err := mtls.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: creds.ClientConfig()}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// getWith GETs url with client and returns the status and body.
func getWith(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// Every part refuses to start without certificates unless told, by name,
// to run its internal planes in plaintext; then it starts and says so.
func TestTLSRequired(t *testing.T) {
	dir := t.TempDir()
	// Each part's command line, complete but for the tls keys.
	parts := []struct {
		cmd  string
		args []string
	}{
		{"tracker", []string{"--listen", "127.0.0.1:0"}},
		{"seeder", []string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0",
			"--data-dir", filepath.Join(dir, "seeder"), "--tracker", "http://127.0.0.1:1/announce", "--allow-upstream", "registry.example"}},
		{"agent", []string{"--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "agent"),
			"--tracker", "http://127.0.0.1:1/announce", "--seeder", "127.0.0.1:1", "--upstream", "http://127.0.0.1:1"}},
	}
	for _, p := range parts {
		t.Run(p.cmd, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stderr logBuffer
			err := commandFunc(t, p.cmd)(ctx, p.args, io.Discard, &stderr)
			if err == nil {
				t.Fatalf("eagle %s without tls keys started", p.cmd)
			}
			for _, want := range []string{"tls.ca", "tls.insecure"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("eagle %s without tls keys: error %q does not name %s", p.cmd, err, want)
				}
			}
			// A certificate without the rest is not enough either, and the
			// error says what is missing.
			err = commandFunc(t, p.cmd)(ctx, append(p.args, "--tls-cert", filepath.Join(dir, "x.pem")), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), "tls.ca") || !strings.Contains(err.Error(), "tls.key") {
				t.Errorf("eagle %s with --tls-cert alone: error %v, want one naming tls.ca and tls.key", p.cmd, err)
			}

			logs := startCommand(t, p.cmd, append(p.args, "--tls-insecure")...)
			msg := "listening"
			if p.cmd == "seeder" {
				msg = "seeder listening"
			}
			key := "addr"
			if p.cmd == "seeder" {
				key = "grpc"
			}
			waitAddr(t, logs, msg, key)
			if p.cmd == "tracker" && logs.find(func(line map[string]any) bool { return line["msg"] == "listening" && line["tls"] == false }) == nil {
				t.Errorf("the insecure tracker's listening line does not say tls=false; logs:\n%s", logs.String())
			}
			warn := logs.find(func(line map[string]any) bool {
				m, _ := line["msg"].(string)
				return line["level"] == "WARN" && strings.Contains(m, "tls.insecure")
			})
			if warn == nil {
				t.Errorf("eagle %s --tls-insecure logged no warning about it; logs:\n%s", p.cmd, logs.String())
			}
		})
	}
}

// "eagle tracker" with certificates serves over TLS: its probes and metrics
// to any client, announces and scrapes only to cluster members.
func TestTrackerTLS(t *testing.T) {
	ca := testCA(t)
	trk := startCommand(t, "tracker", append([]string{"--listen", "127.0.0.1:0"}, tlsArgs(member(t, ca, "tracker"))...)...)
	addr := waitAddr(t, trk, "listening", "addr")
	if v := trk.find(func(line map[string]any) bool { return line["msg"] == "listening" && line["tls"] == true }); v == nil {
		t.Errorf("the tracker's listening line does not say tls=true; logs:\n%s", trk.String())
	}
	base := "https://" + addr
	q := url.Values{
		"info_hash": {strings.Repeat("i", 20)}, "peer_id": {"-EA0100-abcdefghijkl"}, "port": {"6881"},
		"uploaded": {"0"}, "downloaded": {"0"}, "left": {"100"}, "compact": {"1"}, "event": {"started"},
	}
	announce := base + "/announce?" + q.Encode()

	anyone := opsClient(t, ca)
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := getWith(t, anyone, base+p); code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s without a client certificate: %d %q, want 200 ok", p, code, body)
		}
	}
	if code, body := getWith(t, anyone, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "eagle_tracker_") {
		t.Errorf("/metrics without a client certificate: %d, %d bytes", code, len(body))
	}
	for _, p := range []string{announce, base + "/scrape"} {
		if code, _ := getWith(t, anyone, p); code != http.StatusForbidden {
			t.Errorf("GET %s without a client certificate: %d, want 403", p, code)
		}
	}
	// Plain HTTP gets nowhere.
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the tracker answered plain HTTP")
		}
	}
	// A certificate from another CA is no membership: the handshake fails.
	if resp, err := memberClient(t, member(t, testCA(t), "stranger")).Get(announce); err == nil {
		resp.Body.Close()
		t.Errorf("a stranger's announce got %s, want a failed handshake", resp.Status)
	}

	code, body := getWith(t, memberClient(t, member(t, ca, "agent-0")), announce)
	if code != http.StatusOK || !strings.HasPrefix(body, "d") || !strings.HasSuffix(body, "e") || !strings.Contains(body, "8:interval") {
		t.Fatalf("a member's announce: %d %q, want a bencoded dictionary with an interval", code, body)
	}
	if strings.Contains(body, "failure reason") {
		t.Errorf("a member's announce failed: %q", body)
	}
}
