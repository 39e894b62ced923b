package seeder

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

func newClient(t *testing.T, addrs ...string) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Seeders: addrs, Logger: testLogger(t), Credentials: testtls.Credentials(t, "agent")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientMetaInfo(t *testing.T) {
	layer := pushImage(t, 20, 700<<10)[0]
	ts := startSeeder(t, Config{}, nil)
	c := newClient(t, ts.addr)
	ctx := context.Background()
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}

	mi, err := c.MetaInfo(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	checkMetaInfo(t, ts.store, layer, mi)

	missing := ref
	missing.Digest = digest.FromString("missing")
	if _, err := c.MetaInfo(ctx, missing); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("unknown digest: %v, want blob.ErrNotFound", err)
	}

	badRepo := ref
	badRepo.Repository = "UPPER"
	if _, err := c.MetaInfo(ctx, badRepo); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad repository: %v, want InvalidArgument", err)
	}

	badDigest := ref
	badDigest.Digest = "sha256:nothex"
	if _, err := c.MetaInfo(ctx, badDigest); !errors.Is(err, storage.ErrInvalidDigest) {
		t.Errorf("bad digest: %v, want storage.ErrInvalidDigest", err)
	}
	if got := testOrigin.BlobGETs(layer.Digest); got != 1 {
		t.Errorf("origin blob GETs = %d, want 1", got)
	}
}

func TestClientOriginErrors(t *testing.T) {
	layer := pushImage(t, 21, 300<<10)[0]
	const challenge = `Bearer realm="http://127.0.0.1/token",service="x",scope="repository:a:pull"`
	gw := startGateway(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		switch r.Header.Get("Authorization") {
		case "":
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		case "Bearer corrupt":
			next.ServeHTTP(&corrupter{ResponseWriter: w, at: 5}, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
	ts := startSeeder(t, Config{}, nil)
	c := newClient(t, ts.addr)
	ref := blob.Ref{Upstream: gw.URL, Repository: testRepo(t), Digest: layer.Digest}

	_, err := c.MetaInfo(context.Background(), ref)
	var oe *blob.OriginError
	if !errors.As(err, &oe) {
		t.Fatalf("anonymous: %v, want *blob.OriginError", err)
	}
	if oe.StatusCode != http.StatusUnauthorized || oe.WWWAuthenticate != challenge {
		t.Errorf("origin error %+v, want 401 with the challenge", oe)
	}
	if strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("error %q carries the origin's body", err)
	}

	ref.Authorization = "Bearer corrupt"
	if _, err := c.MetaInfo(context.Background(), ref); !errors.Is(err, blob.ErrDigestMismatch) {
		t.Errorf("corrupt origin: %v, want blob.ErrDigestMismatch", err)
	}
}

func TestClientFailover(t *testing.T) {
	layer := pushImage(t, 22, 400<<10)[0]
	seeders := map[string]*testSeeder{}
	var addrs []string
	for range 3 {
		ts := startSeeder(t, Config{}, nil)
		seeders[ts.addr] = ts
		addrs = append(addrs, ts.addr)
	}
	order := Rank(addrs, layer.Digest)
	seeders[order[0]].stop() // its port is now closed

	c := newClient(t, addrs...)
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}
	mi, err := c.MetaInfo(context.Background(), ref)
	if err != nil {
		t.Fatalf("with the first seeder down: %v", err)
	}
	second := seeders[order[1]]
	checkMetaInfo(t, second.store, layer, mi)
	if got := second.srv.Stats().OriginFetches; got != 1 {
		t.Errorf("second-ranked seeder fetched %d times, want 1", got)
	}
	if got := seeders[order[2]].srv.Stats().OriginFetches; got != 0 {
		t.Errorf("third-ranked seeder fetched %d times, want 0", got)
	}
	if got := testOrigin.BlobGETs(layer.Digest); got != 1 {
		t.Errorf("origin blob GETs = %d, want 1", got)
	}

	// With every seeder down the error says so, and is Unavailable.
	seeders[order[1]].stop()
	seeders[order[2]].stop()
	_, err = c.MetaInfo(context.Background(), ref)
	if err == nil || !strings.Contains(err.Error(), "all 3 seeders failed") || status.Code(err) != codes.Unavailable {
		t.Fatalf("all down: %v, want all 3 seeders failed, Unavailable", err)
	}
}

// Clients with the seeder list in any order send a blob to the same
// seeder, so it is fetched from origin once.
func TestClientsAgreeOnSeeder(t *testing.T) {
	layers := pushImage(t, 23, 5000, 6000, 7000)
	var all []*testSeeder
	var addrs []string
	for range 3 {
		ts := startSeeder(t, Config{}, nil)
		all = append(all, ts)
		addrs = append(addrs, ts.addr)
	}
	c1 := newClient(t, addrs...)
	c2 := newClient(t, addrs[2], addrs[0], addrs[1])
	for _, l := range layers {
		ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: l.Digest}
		a, err := c1.MetaInfo(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c2.MetaInfo(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: clients got different metainfo", l.Digest)
		}
		if got := testOrigin.BlobGETs(l.Digest); got != 1 {
			t.Errorf("%s: origin blob GETs = %d, want 1", l.Digest, got)
		}
		first := Rank(addrs, l.Digest)[0]
		for _, ts := range all {
			_, err := ts.store.Stat(context.Background(), l.Digest)
			if has := err == nil; has != (ts.addr == first) {
				t.Errorf("%s: seeder %s holds it = %v, rendezvous-first is %s", l.Digest, ts.addr, has, first)
			}
		}
	}
}

// badSeeder is a MetaInfoService that answers with the metainfo it is given,
// to test the client against a faulty or malicious seeder.
type badSeeder struct {
	seederpb.UnimplementedMetaInfoServiceServer
	metaInfo []byte
	size     int64
	peers    []string
}

func (b *badSeeder) GetMetaInfo(context.Context, *seederpb.GetMetaInfoRequest) (*seederpb.GetMetaInfoResponse, error) {
	return &seederpb.GetMetaInfoResponse{Metainfo: b.metaInfo, Size: b.size, Peers: b.peers}, nil
}

func startBadSeeder(t *testing.T, mi []byte, size int64) string {
	t.Helper()
	return startBadSeederPeers(t, mi, size, nil)
}

// startBadSeederPeers is startBadSeeder whose answers carry peers. It
// serves no health service: the client takes it for a seeder that
// predates it, and healthy.
func startBadSeederPeers(t *testing.T, mi []byte, size int64, peers []string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A cluster member gone bad: its certificate is good, its answers not.
	g := grpc.NewServer(append(ServerOptions(), grpc.Creds(credentials.NewTLS(testtls.Credentials(t, "bad-seeder").ServerConfig())))...)
	seederpb.RegisterMetaInfoServiceServer(g, &badSeeder{metaInfo: mi, size: size, peers: peers})
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Serve(lis)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
	return lis.Addr().String()
}

func TestClientRejectsBadMetaInfo(t *testing.T) {
	layer := pushImage(t, 24, 300<<10)[0]
	other := digest.FromString("another blob")
	ih := p2p.NewInfoHasher(other, 10)
	ih.Write([]byte("0123456789"))
	otherMI, err := ih.MetaInfo()
	if err != nil {
		t.Fatal(err)
	}
	good := startSeeder(t, Config{}, nil)
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}
	for _, tc := range []struct {
		name string
		mi   []byte
		size int64
	}{
		{"garbage", []byte("d4:infoi3ee"), layer.Size},
		{"empty", nil, layer.Size},
		{"other blob", otherMI, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := startBadSeeder(t, tc.mi, tc.size)
			_, err := newClient(t, bad).MetaInfo(context.Background(), ref)
			if !errors.Is(err, p2p.ErrBadMetaInfo) {
				t.Fatalf("only a bad seeder: %v, want p2p.ErrBadMetaInfo", err)
			}
			// Next to a good seeder, the client moves on to it whatever
			// the ranking.
			mi, err := newClient(t, bad, good.addr).MetaInfo(context.Background(), ref)
			if err != nil {
				t.Fatalf("bad and good seeder: %v", err)
			}
			checkMetaInfo(t, good.store, layer, mi)
		})
	}
}

func TestClientWrongSizeIsBadMetaInfo(t *testing.T) {
	dgst := digest.FromString("0123456789")
	ih := p2p.NewInfoHasher(dgst, 10)
	ih.Write([]byte("0123456789"))
	mi, err := ih.MetaInfo()
	if err != nil {
		t.Fatal(err)
	}
	bad := startBadSeeder(t, mi, 11)
	_, err = newClient(t, bad).MetaInfo(context.Background(), blob.Ref{Upstream: "http://127.0.0.1:1", Repository: "a", Digest: dgst})
	if !errors.Is(err, p2p.ErrBadMetaInfo) || !strings.Contains(err.Error(), "size 11") {
		t.Fatalf("err = %v, want p2p.ErrBadMetaInfo about the size", err)
	}
}

// The client waits for a slow cold fetch as long as the caller's context
// allows, and no longer.
func TestClientWaitsForSlowFetch(t *testing.T) {
	layer := pushImage(t, 25, 300<<10)[0]
	var served, cancelled atomic.Int64
	gw := startGateway(t, getsOnly(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		select {
		case <-time.After(700 * time.Millisecond):
		case <-r.Context().Done():
			cancelled.Add(1)
			return
		}
		served.Add(1)
		next.ServeHTTP(w, r)
	}))
	ts := startSeeder(t, Config{}, nil)
	c := newClient(t, ts.addr)
	ref := blob.Ref{Upstream: gw.URL, Repository: testRepo(t), Digest: layer.Digest}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.MetaInfo(ctx, ref); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("short deadline: %v, want context.DeadlineExceeded", err)
	}
	start := time.Now()
	mi, err := c.MetaInfo(context.Background(), ref)
	if err != nil {
		t.Fatalf("no deadline: %v", err)
	}
	checkMetaInfo(t, ts.store, layer, mi)
	// Nobody waited for the first call's fetch any more: it was cancelled
	// (at the origin, if it had got that far), and the second call fetched
	// anew.
	if served.Load() != 1 || cancelled.Load() != gw.hits.Load()-1 {
		t.Errorf("origin GETs: %d served, %d cancelled, %d in all; want 1 served and every other cancelled",
			served.Load(), cancelled.Load(), gw.hits.Load())
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("slow fetch took %v", time.Since(start))
	}
}

func TestNewClientErrors(t *testing.T) {
	for _, addrs := range [][]string{nil, {""}, {"127.0.0.1:1", "127.0.0.1:1"}} {
		if c, err := NewClient(ClientConfig{Seeders: addrs}); err == nil {
			c.Close()
			t.Errorf("NewClient(%q) succeeded", addrs)
		}
	}
}

func TestRank(t *testing.T) {
	addrs := []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}
	orig := slices.Clone(addrs)
	counts := map[string]int{}
	const n = 3000
	for i := range n {
		d := digest.FromString(strconv.Itoa(i))
		r := Rank(addrs, d)
		if !slices.Equal(r, Rank(addrs, d)) {
			t.Fatalf("Rank is not deterministic for %s", d)
		}
		if !slices.Equal(r, Rank([]string{addrs[2], addrs[0], addrs[1]}, d)) {
			t.Fatalf("Rank depends on the input order for %s", d)
		}
		sorted := slices.Clone(r)
		slices.Sort(sorted)
		if !slices.Equal(sorted, orig) {
			t.Fatalf("Rank(%v) = %v is not a permutation", addrs, r)
		}
		counts[r[0]]++

		// Removing a seeder moves only the blobs it ranked first, and
		// keeps the relative order of the others.
		without := Rank(addrs[:2], d)
		want := slices.DeleteFunc(slices.Clone(r), func(a string) bool { return a == addrs[2] })
		if !slices.Equal(without, want) {
			t.Fatalf("%s: Rank without %s = %v, want %v", d, addrs[2], without, want)
		}
	}
	if !slices.Equal(addrs, orig) {
		t.Fatalf("Rank modified its input: %v", addrs)
	}
	for _, a := range addrs {
		if c := counts[a]; c < n/3*85/100 || c > n/3*115/100 {
			t.Errorf("%s is first for %d of %d digests, want %d ± 15%%", a, c, n, n/3)
		}
	}
	if got := Rank(nil, digest.FromString("x")); len(got) != 0 {
		t.Errorf("Rank(nil) = %v", got)
	}
}

// An agent engine that gets its metainfo through the Client downloads the
// blob from the seeder's engine, and the origin serves it once.
func TestAgentFetchesThroughSeeder(t *testing.T) {
	layer := pushImage(t, 26, 1<<20+99)[0]
	announce := testenv.Tracker(t, testLogger(t))
	ts := startSeederAnnouncing(t, Config{}, nil, announce)
	c := newClient(t, ts.addr)

	agentStore, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer agentStore.Close()
	az, err := auth.New(auth.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer az.Close()
	agent, err := p2p.New(p2p.Config{
		TLS:        testtls.Member(t, "agent"),
		Authorizer: az,
		ListenAddr: "127.0.0.1:0",
		DataDir:    t.TempDir(),
		Trackers:   []string{announce},
		Logger:     engineLogger(t),
	}, agentStore, c)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ref := blob.Ref{Upstream: testOrigin.URL, Repository: testRepo(t), Digest: layer.Digest}
	b, err := agent.Fetch(ctx, ref)
	if err != nil {
		t.Fatalf("agent fetch: %v", err)
	}
	defer b.Close()
	v := layer.Digest.Verifier()
	n, err := io.Copy(v, b)
	if err != nil {
		t.Fatalf("read through swarm: %v", err)
	}
	if n != layer.Size || !v.Verified() {
		t.Fatalf("agent read %d bytes (want %d), verified %v", n, layer.Size, v.Verified())
	}
	if got := testOrigin.BlobGETs(layer.Digest); got != 1 {
		t.Errorf("origin blob GETs = %d, want 1", got)
	}
	if st := agent.Stats(); st.BytesFromSeeders != layer.Size {
		t.Errorf("agent got %d bytes from seeders, want %d", st.BytesFromSeeders, layer.Size)
	}
}
