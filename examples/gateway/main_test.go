package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle"
	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/pull"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/proxy"
)

func TestMain(m *testing.M) {
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

// upstreamRecorder is the node's transport to the origin; it records the
// Authorization header, method and path of every request the node sends
// there.
type upstreamRecorder struct {
	rt *http.Transport

	mu    sync.Mutex
	auths []string
	reqs  map[string]int // "METHOD path" → count
}

func (u *upstreamRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	u.mu.Lock()
	u.auths = append(u.auths, r.Header.Get("Authorization"))
	if u.reqs == nil {
		u.reqs = make(map[string]int)
	}
	u.reqs[r.Method+" "+r.URL.Path]++
	u.mu.Unlock()
	return u.rt.RoundTrip(r)
}

// statusCounter counts the answers the gateway gave, by status class and
// route kind.
type statusCounter struct {
	next http.Handler

	mu     sync.Mutex
	counts map[string]int
}

func (s *statusCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.next.ServeHTTP(rec, r)
	kind := "other"
	if strings.Contains(r.URL.Path, "/manifests/") {
		kind = "manifest"
	} else if strings.Contains(r.URL.Path, "/blobs/") {
		kind = "blob"
	}
	s.mu.Lock()
	s.counts[fmt.Sprintf("%s %s %d", r.Method, kind, rec.status)]++
	s.mu.Unlock()
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// The gateway in front of a real cluster: without credentials nothing is
// served; with them, containerd's resolver pulls the image through the
// gateway as a hosts.toml mirror, every blob digest-verified, the blob
// bytes from the swarm, the origin serving each blob once and never seeing
// the gateway's credentials.
func TestGatewayPullsThroughSwarm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Dir: t.TempDir(), Seeders: 1, AnnounceInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "team-a/app", "v1", []int64{3<<20 + 17, 1 << 20}, 11)
	if err != nil {
		t.Fatal(err)
	}
	c.Origin.ResetCounts()

	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	writeHtpasswd(t, htpasswd, map[string]string{"alice": "wonder", "bob": "builder"})
	up := &upstreamRecorder{rt: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(up.rt.CloseIdleConnections)
	gw, err := newGateway(config{
		Auth: authConfig{Htpasswd: htpasswd, Access: map[string][]string{"alice": {"team-a/*"}, "bob": {"team-b/*"}}},
		Node: eagle.Config{
			DataDir: filepath.Join(dir, "node"),
			Seeders: c.SeederAddrs(),
			P2P:     p2p.Config{ListenAddr: "127.0.0.1:0", Trackers: []string{c.TrackerURL}},
			TLS:     member(t, c, "gateway"),
			Proxy:   proxy.Config{DefaultUpstream: c.Origin.URL, Transport: up},
		},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	counter := &statusCounter{next: gw, counts: make(map[string]int)}
	srv := httptest.NewServer(counter)
	t.Cleanup(func() {
		srv.Close()
		if err := gw.Close(); err != nil {
			t.Errorf("close gateway: %v", err)
		}
	})

	get := func(path, user, pw string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	layer := "/v2/" + img.Repository + "/blobs/" + img.Layers[0].Digest.String()
	checkError(t, get("/v2/", "", ""), http.StatusUnauthorized, proxy.CodeUnauthorized)
	checkError(t, get(layer, "", ""), http.StatusUnauthorized, proxy.CodeUnauthorized)
	checkError(t, get(layer, "alice", "wrong"), http.StatusUnauthorized, proxy.CodeUnauthorized)
	checkError(t, get(layer, "bob", "builder"), http.StatusForbidden, proxy.CodeDenied)
	if resp := get("/healthz", "", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	if n := c.Origin.TotalBlobGETs(); n != 0 {
		t.Fatalf("refused requests made %d blob GETs at the origin", n)
	}

	// containerd's resolver with the gateway as the origin's mirror; the
	// credentials go in the mirror's header table, as an operator would
	// write them.
	hosts := t.TempDir()
	hostDir := filepath.Join(hosts, c.Origin.Host)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:wonder"))
	toml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  [host.%q.header]\n    Authorization = %q\n",
		c.Origin.URL, srv.URL, srv.URL, basic)
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag
	var imageBytes int64
	for _, b := range img.Blobs() {
		imageBytes += b.Size
	}
	for range 2 {
		res, err := pull.Pull(ctx, ref, pull.Options{HostsDir: hosts})
		if err != nil {
			t.Fatalf("pull %s through the gateway: %v", ref, err)
		}
		if res.Manifest.Digest != img.Manifest.Digest || res.Bytes != imageBytes || len(res.Blobs) != len(img.Blobs()) {
			t.Fatalf("pulled manifest %s, %d blobs, %d bytes; pushed %s, %d blobs, %d bytes",
				res.Manifest.Digest, len(res.Blobs), res.Bytes, img.Manifest.Digest, len(img.Blobs()), imageBytes)
		}
	}

	// A client has its last byte before the handler returns and the
	// counter counts: give the last requests a moment to finish.
	var counts string
	var blobOK, manifestOK int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		counter.mu.Lock()
		counts = fmt.Sprint(counter.counts)
		blobOK, manifestOK = counter.counts["GET blob 200"], counter.counts["GET manifest 200"]+counter.counts["HEAD manifest 200"]
		counter.mu.Unlock()
		if blobOK >= 2*len(img.Blobs()) || time.Now().After(deadline) {
			break
		}
	}
	if blobOK != 2*len(img.Blobs()) || manifestOK == 0 {
		t.Errorf("the gateway answered %s; want every blob of both pulls and the manifests served by it", counts)
	}
	st := gw.node.Engine.Stats()
	if got := st.BytesFromSeeders + st.BytesFromAgents; got < imageBytes {
		t.Errorf("the node received %d bytes from peers, want the whole image (%d)", got, imageBytes)
	}
	for _, b := range img.Blobs() {
		if n := c.Origin.BlobGETs(b.Digest); n != 1 {
			t.Errorf("origin served blob %s %d times, want 1", b.Digest, n)
		}
	}
	if got := c.Origin.BlobBytes(); got != imageBytes {
		t.Errorf("origin served %d blob bytes, want one copy of the image (%d)", got, imageBytes)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.auths) == 0 {
		t.Fatal("the node sent nothing to the origin: the manifests did not come through the gateway")
	}
	for _, a := range up.auths {
		if a != "" {
			t.Errorf("the origin was sent Authorization %q; the gateway's credentials must stay at the gateway", a)
		}
	}
	// Every blob read was authorized at the origin (a HEAD with the
	// client's credentials, which the gateway removed), however the
	// gateway mounts the node.
	for _, b := range img.Blobs() {
		if head := "HEAD /v2/" + img.Repository + "/blobs/" + b.Digest.String(); up.reqs[head] == 0 {
			t.Errorf("the blob read of %s was not authorized at the origin: no %s among %v", b.Digest, head, up.reqs)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "gateway.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write(`listen: 127.0.0.1:5000
data_dir: /var/lib/eagle/gateway
seeders: [seeder-0:7070]
p2p:
  listen_addr: :6881
  trackers: [http://tracker:7080/announce]
proxy:
  default_upstream: https://registry.example.com
auth:
  realm: corp
  htpasswd: /etc/eagle/htpasswd
  access:
    ci: ["*"]
`)
	var stderr bytes.Buffer
	cfg, err := loadConfig([]string{"--config", good, "--listen", ":6000"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":6000" || cfg.LogLevel != "info" || cfg.Node.DataDir != "/var/lib/eagle/gateway" ||
		cfg.Node.P2P.Trackers[0] != "http://tracker:7080/announce" || cfg.Auth.Realm != "corp" || cfg.Auth.Access["ci"][0] != "*" {
		t.Errorf("loaded %+v", cfg)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", write("auth:\n  htpasswd: x\n  acess: {}\n")}, "acess"},
		{[]string{"--config", write("sedeers: [a:1]\n")}, "sedeers"},
		{[]string{"--config", filepath.Join(t.TempDir(), "none.yaml")}, "no such file"},
	} {
		if _, err := loadConfig(tt.args, &stderr); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("loadConfig(%q) = %v, want an error naming %q", tt.args, err, tt.want)
		}
	}
	if _, err := loadConfig(nil, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("no --config: %v, want errUsage", err)
	}
	// run refuses a configuration the node or the authenticator refuses,
	// before it listens.
	noSeeders := write("listen: 127.0.0.1:0\ndata_dir: " + t.TempDir() + "\nauth:\n  htpasswd: " + filepath.Join(t.TempDir(), "h") + "\n")
	if err := run(context.Background(), []string{"--config", noSeeders}, io.Discard); err == nil || !strings.Contains(err.Error(), "auth.htpasswd") {
		t.Errorf("run with a missing htpasswd: %v", err)
	}
}

// member issues cluster credentials for name.
func member(t *testing.T, c *cluster.Cluster, name string) mtls.Config {
	t.Helper()
	m, err := c.Member(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
