package p2p

import (
	"bytes"
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	anstorage "github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"
)

// A connection to an upstream peer never carries Unchoke or AllowedFast,
// in whatever pieces anacrolix writes them; everything else passes, in
// order. A connection of another torrent passes everything.
func TestOneWayConnKeepsUpstreamChoked(t *testing.T) {
	upIH, otherIH := metainfo.Hash{1}, metainfo.Hash{2}
	var up upstreams
	up.add(upIH, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6881")})
	msgs := [][]byte{
		wireMessage(msgUnchoke, nil),
		haveMessage(7),
		wireMessage(msgAllowedFast, []byte{0, 0, 0, 3}),
		wireMessage(2, nil), // interested
		wireMessage(7, append([]byte{0, 0, 0, 7, 0, 0, 0, 0}, bytes.Repeat([]byte("x"), 3000)...)), // piece
		wireMessage(msgUnchoke, nil),
		wireMessage(0, nil), // choke
	}
	for _, tc := range []struct {
		ih   metainfo.Hash
		want [][]byte
	}{
		{upIH, [][]byte{msgs[1], msgs[3], msgs[4], msgs[6]}},
		{otherIH, msgs},
	} {
		client, server := loopbackPair(t)
		w := up.wrap(client)
		stream := append(testHandshake(tc.ih, true), bytes.Join(msgs, nil)...)
		go func() {
			// Written in odd pieces, as a stream may be.
			for len(stream) > 0 {
				n := min(len(stream), 37)
				if _, err := w.Write(stream[:n]); err != nil {
					return
				}
				stream = stream[n:]
			}
			w.Close()
		}()
		got, err := io.ReadAll(server)
		if err != nil {
			t.Fatal(err)
		}
		want := append(testHandshake(tc.ih, true), bytes.Join(tc.want, nil)...)
		if !bytes.Equal(got, want) {
			t.Errorf("torrent %x: peer got %d bytes, want %d (the handshake and %d messages)", tc.ih[:1], len(got), len(want), len(tc.want))
		}
	}
	up.forget(upIH)
	if up.is(upIH, netip.MustParseAddr("127.0.0.1")) {
		t.Error("forget left the torrent's upstream peers")
	}
}

// On a torrent with a share, what an upstream peer says it has reaches
// anacrolix less the pieces outside the share (Have dropped, Bitfield
// masked, HaveAll turned into the share's Bitfield); everything else
// passes in order, and a torrent without a share, or a peer that is not
// upstream, passes untouched.
func TestOneWayConnHidesPiecesOutsideTheShare(t *testing.T) {
	const pieces = 10
	upIH, plainIH := metainfo.Hash{1}, metainfo.Hash{2}
	var up upstreams
	up.add(upIH, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6881")})
	up.add(plainIH, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6881")})
	if !up.setShare(upIH, shareMask{share: 1, shares: 3, pieces: pieces}) {
		t.Fatal("setting a share reported no change")
	}
	piece := wireMessage(7, append([]byte{0, 0, 0, 4, 0, 0, 0, 0}, bytes.Repeat([]byte("x"), 3000)...))
	in := [][]byte{
		wireMessage(msgBitfield, []byte{0xff, 0xc0}), // all 10
		haveMessage(3), // not in share 1 of 3
		haveMessage(4), // in it
		piece,          // passes
		wireMessage(msgHaveAll, nil),
		wireMessage(msgUnchoke, nil),
	}
	// Share 1 of 3: pieces 1, 4 and 7.
	share := []byte{0x49, 0x00}
	masked := [][]byte{
		wireMessage(msgBitfield, share),
		haveMessage(4),
		piece,
		wireMessage(msgBitfield, share),
		wireMessage(msgUnchoke, nil),
	}
	superHS := testHandshake(upIH, true)
	superHS[superSeedByte] |= superSeedBit
	for _, tc := range []struct {
		name string
		ih   metainfo.Hash
		hs   []byte // the peer's handshake (nil: testHandshake of ih)
		want [][]byte
	}{
		{"share", upIH, nil, masked},
		{"no share", plainIH, nil, in},
		// A peer that super-seeds offers each piece to one peer: what it
		// offers is taken, share or not.
		{"share, super-seeding peer", upIH, superHS, in},
	} {
		t.Run(tc.name, func(t *testing.T) {
			near, far := loopbackPair(t)
			r := up.wrap(near)
			hs := tc.hs
			if hs == nil {
				hs = testHandshake(tc.ih, true)
			}
			stream := append(slices.Clone(hs), bytes.Join(in, nil)...)
			go func() {
				for len(stream) > 0 { // in odd pieces, as a stream may come
					n := min(len(stream), 29)
					if _, err := far.Write(stream[:n]); err != nil {
						return
					}
					stream = stream[n:]
				}
				far.Close()
			}()
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			want := append(slices.Clone(hs), bytes.Join(tc.want, nil)...)
			if !bytes.Equal(got, want) {
				i := 0
				for i < min(len(got), len(want)) && got[i] == want[i] {
					i++
				}
				t.Errorf("anacrolix read %d bytes, want %d; they differ from byte %d: %x, want %x",
					len(got), len(want), i, got[i:min(len(got), i+16)], want[i:min(len(want), i+16)])
			}
		})
	}
	if !up.unmask(upIH) || up.unmask(upIH) {
		t.Error("unmask: want true once, then false")
	}
	if up.setShare(upIH, shareMask{share: 0, shares: 2, pieces: pieces}) {
		t.Error("a share was set again after a stall turned shares off")
	}
}

// A stall with no share on (a lone border peer, say) leaves later shares
// alone: unmask turns shares off only when one was on.
func TestUnmaskOnlyAnActiveShare(t *testing.T) {
	ih := metainfo.Hash{7}
	var up upstreams
	up.add(ih, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:6881")})
	up.setShare(ih, shareMask{}) // share 0 of 1: alone in its location
	if up.unmask(ih) {
		t.Fatal("unmask reported a share that was not on")
	}
	if !up.setShare(ih, shareMask{share: 1, shares: 2, pieces: 100}) {
		t.Error("a share given after a stall without one was ignored")
	}
	if !up.demote(ih) || up.demote(ih) {
		t.Error("demote: want true once (it was a border peer), then false")
	}
	if up.demote(metainfo.Hash{8}) {
		t.Error("demote: true for a torrent without upstream peers")
	}
	if up.maskOf(ih).active() {
		t.Error("a demoted node kept its share")
	}
}

// reconnect closes the connections to upstream peers and dials them again
// (anacrolix dials no address it still lists a connection to, and a closed
// one stays listed for a moment).
func TestReconnectDialsAgain(t *testing.T) {
	dir := t.TempDir()
	mi := testTorrent(t, dir, 4<<20)
	client := func(dir string, up *rate.Limiter) (*torrent.Client, *torrent.Torrent) {
		cfg := torrent.TestingConfig(t)
		cfg.DataDir, cfg.DefaultStorage, cfg.Seed, cfg.DisableUTP = dir, anstorage.NewFile(dir), true, true
		if up != nil {
			cfg.UploadRateLimiter = up
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
		<-tr.GotInfo()
		return cl, tr
	}
	seedCl, seed := client(dir, rate.NewLimiter(64<<10, 64<<10)) // slow: the leech keeps wanting
	if err := seed.VerifyDataContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, leech := client(t.TempDir(), nil)
	leech.DownloadAll()
	seedAddr := netip.MustParseAddrPort(seedCl.ListenAddrs()[0].String())
	connTo := func() *torrent.PeerConn {
		for _, pc := range leech.PeerConns() {
			if pc.RemoteAddr.String() == seedAddr.String() {
				return pc
			}
		}
		return nil
	}
	waitConn := func(not *torrent.PeerConn) *torrent.PeerConn {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if pc := connTo(); pc != nil && pc != not {
				return pc
			}
			if time.Now().After(deadline) {
				t.Fatal("no connection to the seed for 10 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	addPeers(leech, []netip.AddrPort{seedAddr})
	old := waitConn(nil)
	var u upstreams
	u.add(leech.InfoHash(), []netip.AddrPort{seedAddr})
	if n := u.reconnect(t.Context(), leech); n != 1 {
		t.Fatalf("closed %d connections, want 1", n)
	}
	waitConn(old)
}
