package p2p_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
)

// TestRequestWindow has a downloading node meet a peer that holds the whole
// blob, unchokes it and answers nothing: the node asks it for several
// chunks at once (anacrolix's window, at least 8 with Eagle's patch,
// third_party/anacrolix-torrent/EAGLE.md), not one chunk per round trip.
// Unpatched, the node sent one request and waited.
func TestRequestWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	ref, _ := pushBlob(t, o, "window/blob", 4<<20)
	src := newSeederClient(t, addr)
	mi, err := src.MetaInfo(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	m, info, err := p2p.ParseMetaInfo(ref.Digest, mi)
	if err != nil {
		t.Fatal(err)
	}
	ih := m.HashInfoBytes()
	// The node's own download limit keeps its pull going for the length
	// of the test.
	a := newEngineWith(t, trk, newFSStore(t), src, func(c *p2p.Config) {
		c.DownloadLimit = 64 << 10
		c.DisableDirect = true
	})
	fetchCtx, stop := context.WithCancel(ctx)
	defer stop()
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		if b, err := a.Fetch(fetchCtx, ref); err == nil {
			io.Copy(io.Discard, b)
			b.Close()
		}
	}()
	defer func() { stop(); <-fetched }()

	// Dial the node as a member holding every piece, once it has joined
	// the blob's swarm (it drops connections for swarms it is not in).
	var c *tls.Conn
	hs := append([]byte("\x13BitTorrent protocol\x00\x00\x00\x00\x00\x10\x00\x05"), ih[:]...)
	hs = append(hs, "-EA0100-holdsitwhole"...)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node did not take a connection for the blob's swarm")
		}
		if c, err = tls.Dial("tcp", a.Addr().String(), testtls.Credentials(t, "peer").ClientConfig()); err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		reply := make([]byte, 68)
		if _, err = c.Write(hs); err == nil {
			_, err = io.ReadFull(c, reply)
		}
		if err == nil {
			break
		}
		c.Close()
	}
	defer c.Close()
	bitfield := make([]byte, (info.NumPieces()+7)/8)
	for i := range info.NumPieces() {
		bitfield[i/8] |= 0x80 >> (i % 8)
	}
	msg := binary.BigEndian.AppendUint32(nil, uint32(1+len(bitfield)))
	msg = append(append(msg, 5), bitfield...)
	msg = append(msg, 0, 0, 0, 1, 1) // unchoke
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}

	// Read what the node sends for a few seconds, answering nothing.
	const want = 8
	requests := 0
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for requests < want {
		var n uint32
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			break
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c, body); err != nil {
			break
		}
		if n > 0 && body[0] == 6 { // request
			requests++
		}
	}
	if requests < want {
		t.Fatalf("the node asked a peer holding the blob for %d chunks without an answer, want at least %d", requests, want)
	}
}
