package attack

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/netns"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/pull"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
)

// A cluster of 1 tracker, 2 seeders and 3 agents whose origin lets only
// alice read alice/*. Alice pulls her image through every agent. A
// stranger in a network namespace of its own, with no cluster
// certificate — or one from another CA — then tries every port of every
// agent, seeder and the tracker, knowing the digests and even the blob's
// infohash, and gets 0 bytes of her blobs: the registry ports answer as
// the origin would (401/403/404), and the internal planes (seeder gRPC,
// peer wire, tracker) do not talk to non-members at all.
func TestIsolationStranger(t *testing.T) {
	requireNetns(t)
	ctx := t.Context()
	stranger, err := netns.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stranger.Close(); err != nil {
			t.Error(err)
		}
	})
	users := map[string]string{"alice": "alice-pw", "bob": "bob-pw"}
	ts, err := origin.StartTokenServer(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	ts.Limit("alice", "alice/*")
	ts.Limit("bob", "bob/*")
	c := startCluster(t, cluster.Options{Seeders: 2, Agents: 3, ListenHost: stranger.HostAddr,
		Origin: origin.Options{Token: ts.Auth()}})

	pushTransport := &http.Transport{}
	t.Cleanup(pushTransport.CloseIdleConnections)
	alice := &http.Client{Transport: origin.NewAuthTransport(pushTransport, "alice", users["alice"])}
	img, err := origin.PushRandomImage(ctx, alice, c.Origin.URL, "alice/app", "v1", []int64{2<<20 + 3, 1 << 20}, 17)
	if err != nil {
		t.Fatal(err)
	}
	c.Origin.ResetCounts()

	// Alice pulls through every agent: her layers are now in every cache
	// and seeded by the seeders and the agents.
	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag
	for _, a := range c.Agents {
		hosts := t.TempDir()
		if err := pull.WriteHostsTOML(hosts, c.Origin.Host, a.URL); err != nil {
			t.Fatal(err)
		}
		creds := func(string) (string, string, error) { return "alice", users["alice"], nil }
		if _, err := pull.Pull(ctx, ref, pull.Options{HostsDir: hosts, Credentials: creds}); err != nil {
			t.Fatalf("alice's pull through %s: %v", a.Name, err)
		}
	}
	for _, b := range img.Blobs() {
		if n := c.Origin.BlobGETs(b.Digest); n != 1 {
			t.Errorf("origin served %s %d times, want once", b.Digest, n)
		}
	}

	// What the stranger knows: every digest, the layer's bytes' infohash
	// (as if it had leaked), bob's password. What it has not: alice's
	// password or a cluster certificate.
	aliceToken := token(t, ts, "alice", users["alice"], "repository:alice/app:pull")
	var blobs [][]byte
	for _, b := range img.Blobs() {
		blobs = append(blobs, get(t, alice, c.Origin.URL+"/v2/alice/app/blobs/"+b.Digest.String()))
	}
	layer := img.Layers[0]
	ih := infoHash(t, layer.Digest.String(), blobs[1])
	bobForAlice := token(t, ts, "bob", users["bob"], "repository:alice/app:pull")
	bobOwn := token(t, ts, "bob", users["bob"], "repository:bob/app:pull")
	foreignCA, err := mtls.NewCA("another cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignCfg, err := foreignCA.WriteMember(filepath.Join(t.TempDir(), "foreign"), "intruder")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := mtls.Load(foreignCfg)
	if err != nil {
		t.Fatal(err)
	}

	web := &http.Client{Transport: &http.Transport{DialContext: stranger.DialContext}, Timeout: 10 * time.Second}
	defer web.CloseIdleConnections()
	// The layers are checked for leaks; the config is JSON that names the
	// layers' digests, which every error answer names too.
	check := func(what string, got []byte) {
		t.Helper()
		if i := leaked(got, blobs[1:]...); i >= 0 {
			t.Errorf("%s: the stranger got blob bytes (at offset %d of %d received)", what, i, len(got))
		}
	}

	// The agents' registry ports answer as the origin would.
	blobPath := "/v2/alice/app/blobs/" + layer.Digest.String()
	for _, a := range c.Agents {
		for _, p := range []struct {
			what, method, path, authz string
			want                      []int
		}{
			{"anonymous GET", http.MethodGet, blobPath, "", []int{401}},
			{"anonymous HEAD", http.MethodHead, blobPath, "", []int{401}},
			{"bob's token for alice's repository", http.MethodGet, blobPath, bobForAlice, []int{401, 403}},
			{"bob's token, alice's digest under bob's repository", http.MethodGet, "/v2/bob/app/blobs/" + layer.Digest.String(), bobOwn, []int{404}},
			{"a registry the agent does not mirror", http.MethodGet, blobPath + "?ns=evil.example.com", aliceToken, []int{502}},
		} {
			status, body := do(t, web, p.method, a.URL+p.path, p.authz)
			what := fmt.Sprintf("%s registry port, %s", a.Name, p.what)
			if !contains(p.want, status) {
				t.Errorf("%s: %d, want %v", what, status, p.want)
			}
			check(what, body)
		}
		// The path itself works: with alice's credentials the stranger's
		// network reaches the blob, so the refusals above are refusals.
		if status, body := do(t, web, http.MethodGet, a.URL+blobPath, aliceToken); status != http.StatusOK || string(body) != string(blobs[1]) {
			t.Fatalf("%s with alice's token from the stranger's namespace: %d, %d bytes; the test cannot tell refusals from a broken network", a.Name, status, len(body))
		}
	}

	// The peer wire of every agent and seeder: a BitTorrent handshake for
	// the layer's infohash, in plaintext, over TLS without a certificate,
	// and over TLS with another cluster's certificate.
	peers := map[string]string{}
	for _, a := range c.Agents {
		peers[a.Name+" peer port"] = a.Node.Engine.Addr().String()
	}
	for i, s := range c.Seeders {
		peers[fmt.Sprintf("seeder-%d peer port", i)] = s.Engine.Addr().String()
	}
	for name, addr := range peers {
		for _, mode := range []string{"plaintext", "TLS without certificate", "TLS with a foreign certificate"} {
			got, err := btHandshake(ctx, stranger, addr, ih, mode, foreign)
			what := name + ", " + mode
			if strings.HasPrefix(string(got), "\x13BitTorrent protocol") {
				t.Errorf("%s: the peer answered the BitTorrent handshake", what)
			}
			if err == nil {
				t.Errorf("%s: the connection stayed open and quiet; want it refused", what)
			}
			check(what, got)
		}
	}

	// The direct transfers on the same peer ports: an HTTP range request
	// for the whole layer by its infohash, in plaintext, and over TLS
	// asking for the direct transfer protocol without a certificate and
	// with another cluster's.
	for name, addr := range peers {
		for mode, cfg := range map[string]*tls.Config{
			"plaintext":                      nil,
			"TLS without certificate":        {InsecureSkipVerify: true, NextProtos: []string{"eagle-direct/1"}},
			"TLS with a foreign certificate": withALPN(foreign.ClientConfig(), "eagle-direct/1"),
		} {
			what := name + ", direct transfer, " + mode
			tr := &http.Transport{DialContext: stranger.DialContext, TLSClientConfig: cfg}
			scheme := "https"
			if cfg == nil {
				scheme = "http"
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/eagle/v1/torrents/%x", scheme, addr, ih[:]), nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", len(blobs[1])-1))
			resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: tr}).Do(req)
			if err == nil {
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Errorf("%s: answered %s", what, resp.Status)
				check(what, got)
			}
			tr.CloseIdleConnections()
		}
	}

	// A real BitTorrent client in the stranger's namespace, given the
	// infohash and every peer port, fetches the info dictionary from the
	// peers (BEP 9) and then the pieces, as an attacker's would.
	var addrs []string
	for _, addr := range peers {
		addrs = append(addrs, addr)
	}
	if n := strangerDownload(t, stranger, ih, addrs, 5*time.Second); n != 0 {
		t.Errorf("a BitTorrent client in the stranger's namespace downloaded %d bytes of alice's layer", n)
	}

	// The seeders' gRPC, even with alice's own token in the request.
	for i, s := range c.Seeders {
		for mode, creds := range map[string]credentials.TransportCredentials{
			"plaintext":                      insecure.NewCredentials(),
			"TLS without certificate":        credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}),
			"TLS with a foreign certificate": credentials.NewTLS(foreign.ClientConfig()),
		} {
			conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(creds),
				grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
					return stranger.DialContext(ctx, "tcp", addr)
				}))
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			req := &seederpb.GetMetaInfoRequest{
				Upstream: c.Origin.URL, Repository: "alice/app", Digest: layer.Digest.String(), Authorization: aliceToken,
			}
			resp, err := seederpb.NewMetaInfoServiceClient(conn).GetMetaInfo(rctx, req)
			if err == nil || len(resp.GetMetainfo()) > 0 {
				t.Errorf("seeder-%d gRPC, %s: metainfo handed out (err %v)", i, mode, err)
			}
			// The cut-through stream, which carries the bytes themselves.
			if st, err := seederpb.NewMetaInfoServiceClient(conn).StreamBlob(rctx, req); err == nil {
				if m, err := st.Recv(); err == nil {
					t.Errorf("seeder-%d StreamBlob, %s: a %T part handed out", i, mode, m.GetPart())
				}
			}
			cancel()
			conn.Close()
		}
	}

	// The tracker: announces and scrapes need a member's certificate.
	base := strings.TrimSuffix(c.TrackerURL, "/announce")
	q := url.Values{"info_hash": {string(ih[:])}, "peer_id": {"-XX0000-strangerstra"}, "port": {"6881"},
		"uploaded": {"0"}, "downloaded": {"0"}, "left": {"1"}, "compact": {"1"}}
	for _, path := range []string{"/announce?" + q.Encode(), "/scrape?info_hash=" + url.QueryEscape(string(ih[:]))} {
		noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: stranger.DialContext,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		status, body := do(t, noCert, http.MethodGet, base+path, "")
		if status != http.StatusForbidden || strings.Contains(string(body), "peers") || strings.Contains(string(body), "complete") {
			t.Errorf("tracker %s without a certificate: %d %q, want 403 and no swarm", path[:9], status, body)
		}
		noCert.CloseIdleConnections()
		foreignClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: stranger.DialContext,
			TLSClientConfig: foreign.ClientConfig()}}
		if resp, err := foreignClient.Get(base + path); err == nil {
			resp.Body.Close()
			t.Errorf("tracker %s with a foreign certificate: %s, want the handshake refused", path[:9], resp.Status)
		}
		foreignClient.CloseIdleConnections()
		plain := "http://" + strings.TrimPrefix(base, "https://") + path
		status, body = do(t, web, http.MethodGet, plain, "")
		if status == http.StatusOK || strings.Contains(string(body), "peers") {
			t.Errorf("tracker %s in plaintext: %d %q", path[:9], status, body)
		}
	}
}

// get reads url's body with client, which must answer 200.
func get(t *testing.T, client *http.Client, url string) []byte {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return b
}

// do sends a request with an optional Authorization and returns the
// status and body; status 0 when no answer came.
func do(t *testing.T, client *http.Client, method, url, authz string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// infoHash is the infohash Eagle's seeders build for the blob content.
func infoHash(t *testing.T, dgst string, content []byte) metainfo.Hash {
	t.Helper()
	d := digestOf(t, dgst)
	ih := p2p.NewInfoHasher(d, int64(len(content)))
	ih.Write(content)
	mi, err := ih.MetaInfo()
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := p2p.ParseMetaInfo(d, mi)
	if err != nil {
		t.Fatal(err)
	}
	return m.HashInfoBytes()
}

// btHandshake connects to a peer port from inside ns as a stranger and
// asks for the first block of the torrent ih: a BitTorrent handshake,
// interested, and a request, in plaintext or over TLS with the given
// client certificate (none when creds is nil). It returns what came back
// within a second and the error that ended the connection (nil if it was
// still open and quiet).
func btHandshake(ctx context.Context, ns *netns.NS, addr string, ih metainfo.Hash, mode string, foreign *mtls.Credentials) ([]byte, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := ns.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	conn := raw
	switch mode {
	case "TLS without certificate":
		conn = tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	case "TLS with a foreign certificate":
		conn = tls.Client(raw, foreign.ClientConfig())
	}
	conn.SetDeadline(time.Now().Add(time.Second))
	var msg []byte
	msg = append(msg, "\x13BitTorrent protocol"...)
	msg = append(msg, make([]byte, 8)...)
	msg = append(msg, ih[:]...)
	peerID := make([]byte, 20)
	rand.Read(peerID)
	msg = append(msg, peerID...)
	msg = append(msg, 0, 0, 0, 1, 2) // interested
	req := make([]byte, 17)
	binary.BigEndian.PutUint32(req, 13)
	req[4] = 6                                   // request
	binary.BigEndian.PutUint32(req[13:], 16<<10) // index 0, begin 0, 16 KiB
	msg = append(msg, req...)
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	got, err := io.ReadAll(conn)
	if err == nil {
		err = io.EOF
	}
	if isTimeout(err) {
		err = nil
	}
	return got, err
}

// strangerDownload runs a real anacrolix client whose connections start in
// ns, asks it for the torrent ih from peers, and returns how many bytes of
// it the client held after wait.
func strangerDownload(t *testing.T, ns *netns.NS, ih metainfo.Hash, peers []string, wait time.Duration) int64 {
	t.Helper()
	cc := torrent.NewDefaultClientConfig()
	cc.DataDir = t.TempDir()
	cc.NoDHT = true
	cc.DisableTCP = true
	cc.DisableUTP = true
	cc.DisableWebtorrent = true
	cc.DisableWebseeds = true
	cc.NoDefaultPortForwarding = true
	cc.AcceptPeerConnections = false
	cc.Seed = false
	cc.Slogger = slog.New(slog.DiscardHandler)
	cl, err := torrent.NewClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cl.AddDialer(nsDialer{ns})
	tor, _ := cl.AddTorrentInfoHash(ih)
	var pis []torrent.PeerInfo
	for _, a := range peers {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			t.Fatal(err)
		}
		pis = append(pis, torrent.PeerInfo{Addr: torrent.PeerRemoteAddr(net.TCPAddrFromAddrPort(ap)), Trusted: true})
	}
	tor.AddPeers(pis)
	go func() {
		select {
		case <-tor.GotInfo():
			tor.DownloadAll()
		case <-cl.Closed():
		}
	}()
	time.Sleep(wait)
	return tor.BytesCompleted()
}

// nsDialer is an anacrolix dialer whose sockets start in a namespace.
type nsDialer struct{ ns *netns.NS }

func (d nsDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return d.ns.DialContext(ctx, "tcp", addr)
}

func (nsDialer) DialerNetwork() string { return "tcp" }

// withALPN returns cfg asking for the application protocol proto.
func withALPN(cfg *tls.Config, proto string) *tls.Config {
	cfg.NextProtos = []string{proto}
	return cfg
}
