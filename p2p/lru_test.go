package p2p_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/lru"
)

// scrapeComplete asks the tracker how many complete peers a swarm has.
func scrapeComplete(t *testing.T, announceURL string, ih metainfo.Hash) int {
	t.Helper()
	u := strings.Replace(announceURL, "/announce", "/scrape", 1) + "?info_hash=" + url.QueryEscape(string(ih[:]))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: testtls.Credentials(t, "client").ClientConfig()}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Files map[string]struct {
			Complete int `bencode:"complete"`
		} `bencode:"files"`
	}
	if err := bencode.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Files[string(ih[:])].Complete
}

func infoHash(t *testing.T, ctx context.Context, src p2p.MetaInfoSource, ref blob.Ref) metainfo.Hash {
	t.Helper()
	b, err := src.MetaInfo(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	mi, _, err := p2p.ParseMetaInfo(ref.Digest, b)
	if err != nil {
		t.Fatal(err)
	}
	return mi.HashInfoBytes()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A node whose cache is full evicts the least recently used blob before the
// next download, leaves that blob's swarm (the tracker stops counting it),
// never evicts a blob that is being read, and refuses a blob larger than
// the whole cache with a clear error.
func TestLRUEvictionLeavesSwarm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	src := newSeederClient(t, addr)
	refA, wantA := pushBlob(t, o, "lru/a", 3<<20)
	refB, wantB := pushBlob(t, o, "lru/b", 3<<20)
	refC, wantC := pushBlob(t, o, "lru/c", 3<<20)
	refBig, _ := pushBlob(t, o, "lru/big", 8<<20)

	fs := newFSStore(t)
	cache, err := lru.New(ctx, fs, 7<<20) // room for two of the three blobs
	if err != nil {
		t.Fatal(err)
	}
	agent := newEngine(t, p2p.RoleAgent, trk, cache, src)

	if got := readAll(t, ctx, agent, refA); !bytes.Equal(got, wantA) {
		t.Fatal("a differs")
	}
	ihA := infoHash(t, ctx, src, refA)
	waitFor(t, "the tracker to count the agent as a seeder of a", func() bool { return scrapeComplete(t, trk, ihA) == 2 })

	// Keep a open while b and c arrive: it must survive, b must go.
	open, err := agent.Fetch(ctx, refA)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, ctx, agent, refB); !bytes.Equal(got, wantB) {
		t.Fatal("b differs")
	}
	if got := readAll(t, ctx, agent, refC); !bytes.Equal(got, wantC) {
		t.Fatal("c differs")
	}
	// (Assertions look at the store under the cache, so that they do not
	// count as uses.)
	if _, err := fs.Stat(ctx, refA.Digest); err != nil {
		t.Fatalf("a blob being read was evicted: %v", err)
	}
	if _, err := fs.Stat(ctx, refB.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("b (least recently used, not in use) is still cached: %v", err)
	}
	open.Close()

	// Now a is the least recently used and not in use: the next download evicts it.
	if got := readAll(t, ctx, agent, refB); !bytes.Equal(got, wantB) {
		t.Fatal("b differs on the second fetch")
	}
	if _, err := fs.Stat(ctx, refA.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a is still cached: %v", err)
	}
	waitFor(t, "the tracker to forget the agent for a", func() bool { return scrapeComplete(t, trk, ihA) == 1 })
	if used, reserved := cache.Usage(); used > cache.Limit() || reserved != 0 {
		t.Fatalf("cache holds %d bytes (+%d reserved), over its limit of %d", used, reserved, cache.Limit())
	}

	if _, err := agent.Fetch(ctx, refBig); !errors.Is(err, storage.ErrTooLarge) {
		t.Fatalf("a blob larger than the cache: %v, want ErrTooLarge", err)
	}
}
