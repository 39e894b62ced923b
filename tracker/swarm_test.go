package tracker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/eagle-p2p/eagle/tracker"
)

// newTorrentClient returns an anacrolix client on 127.0.0.1 that can find
// peers only through trackers: no DHT, PEX, uTP, IPv6, web seeds or port
// forwarding.
func newTorrentClient(t *testing.T, dataDir string, seed bool) *torrent.Client {
	t.Helper()
	cfg := torrent.NewDefaultClientConfig()
	cfg.DataDir = dataDir
	cfg.Seed = seed
	cfg.ListenHost = func(string) string { return "127.0.0.1" }
	cfg.ListenPort = 0
	cfg.NoDHT = true
	cfg.DisablePEX = true
	cfg.DisableUTP = true
	cfg.DisableIPv6 = true
	cfg.DisableWebtorrent = true
	cfg.DisableWebseeds = true
	cfg.NoDefaultPortForwarding = true
	cfg.DisableAcceptRateLimiting = true
	cfg.Slogger = slog.New(slog.DiscardHandler)
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, err := range cl.Close() {
			t.Errorf("closing torrent client: %v", err)
		}
	})
	return cl
}

// waitCounts polls the store until the swarm matches want.
func waitCounts(t *testing.T, store tracker.PeerStore, ih tracker.InfoHash, want tracker.SwarmCounts) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := store.Counts(context.Background(), ih)
		if err != nil {
			t.Fatal(err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("swarm counts %+v, want %+v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSwarmThroughTracker has a seeder and a leecher, both real anacrolix
// clients, find each other through the tracker alone and move a torrent.
func TestSwarmThroughTracker(t *testing.T) {
	t.Parallel()
	store := tracker.NewMemoryStore(tracker.StoreConfig{PeerTTL: time.Minute})
	defer store.Close()
	srv, err := tracker.New(tracker.Config{}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()

	seedDir, leechDir := t.TempDir(), t.TempDir()
	data := make([]byte, 3<<20+12345)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(seedDir, "layer.tar"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	info := metainfo.Info{PieceLength: 256 << 10}
	if err := info.BuildFromFilePath(filepath.Join(seedDir, "layer.tar")); err != nil {
		t.Fatal(err)
	}
	mi := metainfo.MetaInfo{Announce: ts.URL + "/announce"}
	if mi.InfoBytes, err = bencode.Marshal(info); err != nil {
		t.Fatal(err)
	}
	ih := tracker.InfoHash(mi.HashInfoBytes())

	seeder := newTorrentClient(t, seedDir, true)
	st, err := seeder.AddTorrent(&mi)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.VerifyDataContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.Complete().On():
	case <-time.After(10 * time.Second):
		t.Fatal("seeder does not hold the whole torrent after verifying its data")
	}
	// Wait until the seeder is in the swarm, so that the leecher's first
	// announce finds it instead of waiting an interval.
	waitCounts(t, store, ih, tracker.SwarmCounts{Complete: 1})

	leecher := newTorrentClient(t, leechDir, false)
	lt, err := leecher.AddTorrent(&mi)
	if err != nil {
		t.Fatal(err)
	}
	lt.DownloadAll()
	select {
	case <-lt.Complete().On():
	case <-time.After(30 * time.Second):
		t.Fatalf("leecher has %d of %d bytes after 30s", lt.BytesCompleted(), len(data))
	}
	r := lt.NewReader()
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("leecher read %d bytes that differ from the seeder's %d", len(got), len(data))
	}
	onDisk, err := os.ReadFile(filepath.Join(leechDir, "layer.tar"))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("leecher's file differs from the seeder's (err %v)", err)
	}
	stats := lt.Stats()
	if n := stats.ConnStats.BytesReadUsefulData.Int64(); n != int64(len(data)) {
		t.Errorf("leecher downloaded %d useful bytes from peers, want %d", n, len(data))
	}
	// The leecher reports its completion: two seeders, one download.
	waitCounts(t, store, ih, tracker.SwarmCounts{Complete: 2, Downloaded: 1})
}
