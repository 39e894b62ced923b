package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/internal/logbuf"
	"github.com/eagle-p2p/eagle/internal/origin"
)

// commandFunc returns the run function of the subcommand name.
func commandFunc(t *testing.T, name string) func(context.Context, []string, io.Writer, io.Writer) error {
	t.Helper()
	for _, c := range commands {
		if c.name == name {
			return c.run
		}
	}
	t.Fatalf("no command %q", name)
	return nil
}

// Every section of every subcommand refuses a bad value, or a value of the
// wrong type, with an error that names the key, and does not start.
func TestBadValuesNameTheKey(t *testing.T) {
	dir := t.TempDir()
	// Valid cluster membership, so that the key under test is the one
	// reported and not the missing certificates.
	ca := testCA(t)
	tlsOf := func(name string) string { return tlsYAML(member(t, ca, name)) }
	// merge is the YAML lines of base, each (with the lines nested under
	// it) dropped if override sets its key, followed by override.
	merge := func(base, override string) string {
		indent := func(line string) int { return len(line) - len(strings.TrimLeft(line, " ")) }
		var out []string
		skip := false
		for _, line := range strings.SplitAfter(base, "\n") {
			if line == "" {
				continue
			}
			if key, _, _ := strings.Cut(line, ":"); indent(line) == indent(base) {
				skip = strings.HasPrefix(override, key+":") || strings.Contains(override, "\n"+key+":")
			}
			if !skip {
				out = append(out, line)
			}
		}
		return strings.Join(out, "") + override
	}
	// A valid tracker, agent or seeder, to which each case adds one bad
	// key, replacing the valid one if there is one (a key twice is an
	// error of its own).
	tracker := func(top string) string { return merge(tlsOf("tracker"), top) }
	agent := func(top, p2p, proxy string) string {
		return merge("data_dir: "+dir+"\nseeders: [127.0.0.1:1]\n"+tlsOf("agent"), top) +
			"p2p:\n" + merge("  listen_addr: 127.0.0.1:0\n  trackers: [https://127.0.0.1:1/announce]\n", p2p) +
			"proxy:\n" + merge("  default_upstream: http://127.0.0.1:1\n", proxy)
	}
	seeder := func(top, p2p, section string) string {
		return merge("data_dir: "+dir+"\nmetrics_listen: 127.0.0.1:0\n"+tlsOf("seeder"), top) +
			"p2p:\n" + merge("  listen_addr: 127.0.0.1:0\n  trackers: [https://127.0.0.1:1/announce]\n", p2p) +
			"seeder:\n" + merge("  allowed_upstreams: [registry.example]\n", section)
	}
	for _, tc := range []struct {
		cmd, yaml, want string
	}{
		{"tracker", tracker("listen: [a, b]\n"), "listen"},
		{"tracker", tracker("log_level: loud\n"), "log_level"},
		{"tracker", tracker("tracker:\n  interval: soon\n"), "tracker.interval"},
		{"tracker", tracker("tracker:\n  interval: 10s\n  min_interval: 500ms\n"), "min_interval"},
		{"tracker", tracker("tracker:\n  peer_ttl: 5s\n"), "peer_ttl"},
		{"tracker", tracker("tracker:\n  max_num_want: -1\n"), "max_num_want"},
		{"tracker", tracker("tracker:\n  num_want: many\n"), "tracker.num_want"},
		{"tracker", tracker("tracker:\n  policy: nearest\n"), "policy"},
		{"tracker", tracker("tracker:\n  trust_client_ip: maybe\n"), "tracker.trust_client_ip"},
		{"tracker", tracker("tracker:\n  intervall: 5s\n"), "tracker.intervall"},
		{"tracker", tracker("tls:\n  insecure: maybe\n"), "tls.insecure"},
		{"tracker", tracker("tls:\n  ca: " + dir + "/ca.pem\n"), "tls.cert"},
		{"tracker", tracker("tls:\n  ca: " + dir + "/none.pem\n  cert: " + dir + "/none.pem\n  key: " + dir + "/none.pem\n"), "tls.ca"},
		{"tracker", tracker("tls:\n  insecure: true\n  key: " + dir + "/key.pem\n"), "tls.key"},
		{"tracker", tracker("tls:\n  cert: [a]\n"), "tls.cert"},

		{"seeder", seeder("log_level: loud\n", "", ""), "log_level"},
		{"seeder", seeder("data_dir: [a]\n", "", ""), "data_dir"},
		{"seeder", seeder("metrics_listen: nonsense\n", "", ""), "metrics_listen"},
		{"seeder", seeder("", "  listen_addr: nonsense\n", ""), "listen_addr"},
		{"seeder", seeder("", "  trackers: [ftp://x]\n", ""), "trackers"},
		{"seeder", seeder("", "  trackers: [http://127.0.0.1:1/announce]\n", ""), "trackers"},
		{"seeder", seeder("", "  upload_limit: fast\n", ""), "p2p.upload_limit"},
		{"seeder", seeder("", "", "  origin_timeout: -1s\n"), "origin_timeout"},
		{"seeder", seeder("", "", "  origin_timeout: [1s]\n"), "seeder.origin_timeout"},
		{"seeder", seeder("", "", "  max_concurrent_fetches: -2\n"), "max_concurrent_fetches"},
		{"seeder", seeder("", "", "  metainfo_cache_size: lots\n"), "seeder.metainfo_cache_size"},
		{"seeder", seeder("", "", "  allowed_upstreams: [\"http://bad/\"]\n"), "allowed_upstreams"},
		{"seeder", seeder("", "", "  allowed_upstreams: []\n"), "allowed_upstreams"},
		{"seeder", seeder("", "", "  allow_any_upstream: perhaps\n"), "seeder.allow_any_upstream"},
		{"seeder", seeder("tls:\n  insecure: true\n  ca: "+dir+"/ca.pem\n", "", ""), "tls.insecure"},
		{"seeder", seeder("tls:\n  key: "+dir+"/key.pem\n", "", ""), "tls.ca"},

		{"agent", agent("log_level: loud\n", "", ""), "log_level"},
		{"agent", "data_dir: " + dir + "\np2p:\n  trackers: [https://127.0.0.1:1/announce]\n" + tlsOf("agent"), "seeders"},
		{"agent", agent("seeders: 127.0.0.1:1\n", "", ""), "seeders"},
		{"agent", agent("", "  listen_addr: nonsense\n", ""), "listen_addr"},
		{"agent", agent("", "  trackers: [http://127.0.0.1:1/announce]\n", ""), "trackers"},
		{"agent", agent("", "  download_limit: 5 parsecs\n", ""), "p2p.download_limit"},
		{"agent", agent("", "  dial_peers: 30\n  max_peers: 10\n", ""), "max_peers"},
		{"agent", agent("", "", "  default_upstream: ftp://x\n"), "default_upstream"},
		{"agent", agent("", "", "  upstreams: [\"http://a/path\"]\n"), "upstreams[0]"},
		{"agent", agent("", "", "  auth_cache_size: -1\n"), "auth_cache_size"},
		{"agent", agent("", "", "  auth_timeout: -1s\n"), "auth_timeout"},
		{"agent", agent("", "", "  auth_cache_ttl: 1h30\n"), "proxy.auth_cache_ttl"},
		{"agent", agent("", "", "  authorize_blobs: sometimes\n"), "proxy.authorize_blobs"},
		{"agent", agent("", "", "  trust_forwarded_headers: 2\n"), "proxy.trust_forwarded_headers"},
		{"agent", agent("tls:\n  cert: "+dir+"/cert.pem\n  key: "+dir+"/key.pem\n", "", ""), "tls.ca"},
		{"agent", agent("tls:\n  insecure: 1\n", "", ""), "tls.insecure"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var stdout, stderr bytes.Buffer
		err := commandFunc(t, tc.cmd)(ctx, []string{"--config", writeFile(t, tc.yaml), "--listen", "127.0.0.1:0"}, &stdout, &stderr)
		cancel()
		switch {
		case err == nil:
			t.Errorf("%s with\n%s: started, want an error naming %s", tc.cmd, tc.yaml, tc.want)
		case strings.Contains(err.Error(), "already defined"):
			t.Errorf("%s with\n%s: the case sets a key twice: %v", tc.cmd, tc.yaml, err)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s with\n%s: error %q does not name %s", tc.cmd, tc.yaml, err, tc.want)
		}
	}
}

// logBuffer collects a command's JSON log lines.
type logBuffer struct{ logbuf.Buffer }

// field returns attribute key of the first log line whose msg is msg.
func (b *logBuffer) field(msg, key string) string {
	line := b.find(func(line map[string]any) bool {
		_, ok := line[key].(string)
		return ok && line["msg"] == msg
	})
	v, _ := line[key].(string)
	return v
}

// find returns the first log line for which match is true, or nil.
func (b *logBuffer) find(match func(line map[string]any) bool) map[string]any {
	sc := bufio.NewScanner(bytes.NewReader(b.Bytes()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && match(line) {
			return line
		}
	}
	return nil
}

// startCommand runs "eagle <name> args..." until the test ends and returns
// its log. Cleanup stops it and checks that it exited cleanly.
func startCommand(t *testing.T, name string, args ...string) *logBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &logBuffer{}
	errc := make(chan error, 1)
	run := commandFunc(t, name)
	go func() { errc <- run(ctx, args, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("eagle %s: %v", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("eagle %s did not stop", name)
		}
	})
	return logs
}

// waitAddr waits for the log line msg and returns its attribute key.
func waitAddr(t *testing.T, logs *logBuffer, msg, key string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if v := logs.field(msg, key); v != "" {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q log line with %s; logs:\n%s", msg, key, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// promFloat formats n as the Prometheus text format writes sample values.
func promFloat(n int64) string { return strconv.FormatFloat(float64(n), 'g', -1, 64) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
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

// A tracker, a seeder and an agent run as the binary runs them; a blob
// pulled through the agent shows in each one's /metrics, and /healthz and
// /readyz answer on the agent's and tracker's listeners and on the
// seeder's metrics_listen.
func TestOpsEndpoints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o, err := origin.Start(ctx, origin.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	img, err := origin.PushRandomImage(ctx, nil, o.URL, "ops/app", "v1", []int64{1<<20 + 5}, 7)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]

	// Every part is a member of one cluster, as in production.
	ca := testCA(t)
	trk := startCommand(t, "tracker", append([]string{"--listen", "127.0.0.1:0", "--interval", "1s"}, tlsArgs(member(t, ca, "tracker"))...)...)
	trackerAddr := waitAddr(t, trk, "listening", "addr")
	announce := "https://" + trackerAddr + "/announce"
	sdr := startCommand(t, "seeder", append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--peer-listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--tracker", announce, "--allow-upstream", o.Host},
		tlsArgs(member(t, ca, "seeder-0"))...)...)
	seederAddr := waitAddr(t, sdr, "seeder listening", "grpc")
	seederOps := waitAddr(t, sdr, "metrics listening", "addr")
	agt := startCommand(t, "agent", append([]string{"--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--tracker", announce, "--seeder", seederAddr, "--upstream", o.URL},
		tlsArgs(member(t, ca, "agent-0"))...)...)
	agentAddr := waitAddr(t, agt, "listening", "addr")
	// The tracker's ops endpoints are served over TLS to clients without a
	// certificate; the seeder's metrics_listen and the agent's registry
	// endpoint are plain HTTP.
	trackerClient := opsClient(t, ca)

	code, body := get(t, "http://"+agentAddr+"/v2/ops/app/blobs/"+layer.Digest.String())
	if code != http.StatusOK || digest.FromString(body) != layer.Digest {
		t.Fatalf("blob through the agent: %d, %d bytes not matching %s", code, len(body), layer.Digest)
	}
	// The proxy counts a request when it has finished with it.
	time.Sleep(50 * time.Millisecond)

	for _, tc := range []struct {
		name, base string
		client     *http.Client
		want       []string
	}{
		{"agent", "http://" + agentAddr, http.DefaultClient, []string{
			`eagle_proxy_requests_total{code="200",method="GET",route="blob"} 1`,
			`eagle_proxy_blob_bytes_total{source="swarm"} ` + promFloat(layer.Size),
			`eagle_p2p_downloads_total{result="success"} 1`,
			`eagle_p2p_cache_bytes ` + promFloat(layer.Size),
			`eagle_p2p_received_bytes_total{from="seeder"}`,
			`eagle_p2p_active_downloads 0`,
			"go_goroutines", "process_resident_memory_bytes",
		}},
		{"tracker", "https://" + trackerAddr, trackerClient, []string{
			`eagle_tracker_announces_total{event="started",result="ok"}`,
			`eagle_tracker_swarms 1`,
			`eagle_tracker_peers 2`,
		}},
		{"seeder", "http://" + seederOps, http.DefaultClient, []string{
			`eagle_seeder_origin_fetches_total{result="success"} 1`,
			`eagle_seeder_origin_bytes_total ` + promFloat(layer.Size),
			`eagle_seeder_requests_total{code="OK"} 1`,
			`eagle_p2p_uploaded_bytes_total`,
			`eagle_p2p_cache_bytes ` + promFloat(layer.Size),
		}},
	} {
		// Announces and the tracker's view of the swarm settle within an
		// announce or two.
		deadline := time.Now().Add(10 * time.Second)
		var missing []string
		for {
			code, body := getWith(t, tc.client, tc.base+"/metrics")
			missing = missing[:0]
			for _, w := range tc.want {
				if code != http.StatusOK || !strings.Contains(body, w) {
					missing = append(missing, w)
				}
			}
			if len(missing) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(missing) > 0 {
			t.Errorf("%s /metrics lacks %q", tc.name, missing)
		}
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, body := getWith(t, tc.client, tc.base+p); code != http.StatusOK || body != "ok\n" {
				t.Errorf("%s %s: %d %q", tc.name, p, code, body)
			}
		}
	}
	// The registry API is still the node's: a ping reaches the origin.
	if code, _ := get(t, "http://"+agentAddr+"/v2/"); code != http.StatusOK {
		t.Errorf("GET /v2/ through the agent: %d", code)
	}
	// The request id reaches the access log.
	if id := agt.field("request", "request_id"); id == "" {
		t.Error("the agent's access log has no request_id")
	}
}
