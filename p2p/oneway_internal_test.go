package p2p

import (
	"bytes"
	"io"
	"net/netip"
	"testing"

	"github.com/anacrolix/torrent/metainfo"
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
