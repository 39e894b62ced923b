package attack

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/proxy"
	"github.com/eagle-p2p/eagle/seeder"
)

// With allow_any_upstream on the agents and the seeders, an anonymous
// client names (?ns=) a registry the attacker runs, which answers 200 to
// every HEAD, and asks for alice's layer, cached on the agent: it gets 0
// bytes. The attacker's yes proves nothing: the agent serves a blob for an
// upstream it does not trust only when a seeder vouches that this very
// upstream served the bytes, and the seeder, to vouch, fetches them from
// there — and the attacker has none.
func TestMaliciousAllowAnyUpstream(t *testing.T) {
	ctx := t.Context()
	var heads, gets atomic.Int64
	attacker := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodHead:
			heads.Add(1)
			w.Header().Set("Content-Length", "3145731")
		case http.MethodGet:
			gets.Add(1)
			http.NotFound(w, r)
		}
	}))
	// On 127.0.0.1, which its test certificate names.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	attacker.Listener = lis
	attacker.StartTLS()
	t.Cleanup(attacker.Close)
	attackerHost := lis.Addr().String()

	// Both the agents and the seeders can reach the attacker (its
	// certificate is trusted, its address listed), so that what stops it
	// is provenance, not the network.
	caPath := filepath.Join(t.TempDir(), "attacker-ca.pem")
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: attacker.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	agentTransport := attacker.Client().Transport.(*http.Transport).Clone()
	t.Cleanup(agentTransport.CloseIdleConnections)
	c := startCluster(t, cluster.Options{Seeders: 1, Agents: 2,
		ProxyConfig:  proxy.Config{AllowAnyUpstream: true, Transport: agentTransport},
		SeederConfig: seeder.Config{AllowAnyUpstream: true, RedirectHosts: []string{attackerHost}, OriginCA: caPath},
	})
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "alice/app", "v1", []int64{3<<20 + 3}, 23)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	path := "/v2/alice/app/blobs/" + layer.Digest.String()
	content := get(t, http.DefaultClient, c.Origin.URL+path)
	for _, a := range c.Agents {
		if got := get(t, http.DefaultClient, a.URL+path); string(got) != string(content) {
			t.Fatalf("%s served other bytes", a.Name)
		}
	}
	c.Origin.ResetCounts()

	client := &http.Client{Timeout: 30 * time.Second}
	for _, a := range c.Agents {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			status, body := do(t, client, method, a.URL+path+"?ns="+url.QueryEscape(attackerHost), "")
			if status == http.StatusOK {
				t.Errorf("%s %s through %s naming the attacker's registry: 200", method, a.Name, path)
			}
			if i := leaked(body, content); i >= 0 {
				t.Errorf("%s %s: blob bytes in the answer", method, a.Name)
			}
		}
	}
	if heads.Load() == 0 || gets.Load() == 0 {
		t.Errorf("the attacker saw %d HEADs and %d GETs: the test did not reach the provenance check", heads.Load(), gets.Load())
	}
	if n := c.Origin.TotalBlobGETs(); n != 0 {
		t.Errorf("the origin served %d blobs during the attack", n)
	}
}

// Forty "complete" peers that accept connections and never answer (a
// tarpit run by a member gone bad: they announce with a member's
// certificate from their own addresses) do not stretch a pull beyond 1.5
// times its time without them: dialled handshakes give up within seconds
// and the node keeps asking the tracker for more peers meanwhile.
func TestMaliciousTarpitPeers(t *testing.T) {
	ctx := t.Context()
	const size, limit = 48 << 20, 16 << 20
	c := startCluster(t, cluster.Options{Seeders: 1, Agents: 1, DownloadLimit: limit, UploadLimit: limit})
	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "tar/pit", "v1", []int64{size}, 29)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	path := "/v2/tar/pit/blobs/" + layer.Digest.String()
	content := get(t, http.DefaultClient, c.Agents[0].URL+path) // the seeder and agent-0 hold it now
	ih := infoHash(t, layer.Digest.String(), content)

	pullTime := func() time.Duration {
		t.Helper()
		a, err := c.AddAgent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if got := get(t, http.DefaultClient, a.URL+path); string(got) != string(content) {
			t.Fatal("wrong bytes")
		}
		return time.Since(start)
	}
	without := pullTime()

	// The tarpits: 40 listeners that accept and say nothing, each
	// announced as a complete peer from its own address.
	member, err := c.Member("tarpit")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := mtls.Load(member)
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var announced atomic.Int64
	for i := range 40 {
		ip := fmt.Sprintf("127.0.2.%d", i+1)
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		var held []net.Conn
		var mu sync.Mutex
		wg.Go(func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, conn) // never read, never written
				mu.Unlock()
			}
		})
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range held {
				c.Close()
			}
		})
		port := l.Addr().(*net.TCPAddr).Port
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: creds.ClientConfig(),
			DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext,
		}}
		wg.Go(func() {
			defer l.Close()
			defer client.CloseIdleConnections()
			for {
				if announce(actx, client, c.TrackerURL, ih, i, port) {
					announced.Add(1)
				}
				select {
				case <-actx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for announced.Load() < 40 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if announced.Load() < 40 {
		t.Fatalf("only %d tarpit announces were taken", announced.Load())
	}
	with := pullTime()
	stop()
	wg.Wait()
	t.Logf("pull of %d MiB at %d MiB/s: %v without tarpits, %v with 40", size>>20, limit>>20, without, with)
	if with > without*3/2 {
		t.Errorf("40 tarpit peers stretched the pull from %v to %v, more than 1.5 times", without, with)
	}
}

// announce announces peer i of the tarpit as complete; true if the tracker
// took it.
func announce(ctx context.Context, client *http.Client, trackerURL string, ih metainfo.Hash, i, port int) bool {
	q := url.Values{"info_hash": {string(ih[:])}, "peer_id": {fmt.Sprintf("-TP0000-%012d", i)},
		"port": {strconv.Itoa(port)}, "uploaded": {"0"}, "downloaded": {"0"}, "left": {"0"}, "compact": {"1"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, trackerURL+"?"+q.Encode(), nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.HasPrefix(string(body), "d") && !strings.Contains(string(body), "failure reason")
}
