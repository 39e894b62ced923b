package p2p

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// nudgeClient starts an anacrolix client that advertises nudgeExtension,
// or not, holding the torrent of mi in dir.
func nudgeClient(t *testing.T, dir string, mi *metainfo.MetaInfo, advertise bool) (*torrent.Client, *torrent.Torrent) {
	t.Helper()
	cfg := torrent.TestingConfig(t)
	cfg.DataDir = dir
	cfg.DefaultStorage = storage.NewFile(dir)
	cfg.Seed = true
	cfg.MaxAllocPeerRequestDataPerConn = 1 << 20
	if advertise {
		cfg.Callbacks.PeerConnAdded = append(cfg.Callbacks.PeerConnAdded, advertiseNudge)
	}
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	tr, err := cl.AddTorrent(mi)
	if err != nil {
		t.Fatal(err)
	}
	return cl, tr
}

// TestNudgeWakesOnlyEaglePeersAndKeepsTheConnection: a node nudges a
// peer that advertises the extension (the message goes out, the peer
// ignores it and keeps the connection), and cannot nudge one that does
// not.
func TestNudgeWakesOnlyEaglePeersAndKeepsTheConnection(t *testing.T) {
	for _, tc := range []struct {
		name      string
		advertise bool
	}{{"eagle peer", true}, {"other peer", false}} {
		t.Run(tc.name, func(t *testing.T) {
			seedDir, leechDir := t.TempDir(), t.TempDir()
			mi := testTorrent(t, seedDir, 1<<20)
			seedCl, seed := nudgeClient(t, seedDir, mi, tc.advertise)
			<-seed.GotInfo()
			if err := seed.VerifyDataContext(t.Context()); err != nil {
				t.Fatal(err)
			}
			_, leech := nudgeClient(t, leechDir, mi, true)
			leech.AddClientPeer(seedCl)
			// One piece only: a leech that completed the blob would drop
			// its complete peer.
			leech.Piece(0).SetPriority(torrent.PiecePriorityNormal)
			deadline := time.Now().Add(20 * time.Second)
			for !leech.PieceState(0).Complete {
				if time.Now().After(deadline) {
					t.Fatal("the first piece did not arrive")
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The extended handshakes are done once pieces flowed. A
			// second connection between the two may come up meanwhile
			// (a run under load counted 1 before the nudge and 2 woken): every
			// connection whose handshake is done is woken, at least the
			// one the piece came over.
			before := len(seed.PeerConns())
			if before == 0 {
				t.Fatal("the seed holds no connection after a piece went to the leech")
			}
			got := nudge(leech)
			conns := len(leech.PeerConns())
			switch {
			case tc.advertise && (got < 1 || got > conns):
				t.Fatalf("nudge woke %d of %d connections to a peer that advertises the extension, want 1 to %d", got, conns, conns)
			case !tc.advertise && got != 0:
				t.Fatalf("nudge woke %d of %d connections to a peer that does not advertise the extension, want 0", got, conns)
			}
			time.Sleep(200 * time.Millisecond)
			if n := len(seed.PeerConns()); n < before {
				t.Errorf("the nudged peer has %d connections, had %d: it dropped the nudger", n, before)
			}
		})
	}
}

// testTorrent writes size random bytes to dir/blob and returns the
// metainfo of a torrent of it in 64 KiB pieces.
func testTorrent(t *testing.T, dir string, size int) *metainfo.MetaInfo {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "blob"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	info := metainfo.Info{PieceLength: 64 << 10}
	if err := info.BuildFromFilePath(filepath.Join(dir, "blob")); err != nil {
		t.Fatal(err)
	}
	mi := &metainfo.MetaInfo{}
	var err error
	if mi.InfoBytes, err = bencode.Marshal(info); err != nil {
		t.Fatal(err)
	}
	return mi
}
