package p2p_test

import (
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

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
	sb := seedBlob(t, ctx, "window/blob", 4<<20)
	// The node's own download limit keeps its pull going for the length
	// of the test.
	a := newEngineWith(t, sb.tracker, newFSStore(t), sb.src, func(c *p2p.Config) {
		c.DownloadLimit = 64 << 10
		c.DisableDirect = true
	})
	fetchCtx, stop := context.WithCancel(ctx)
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		if b, err := a.Fetch(fetchCtx, sb.ref); err == nil {
			io.Copy(io.Discard, b)
			b.Close()
		}
	}()
	defer func() { stop(); <-fetched }()

	// Join the node as a member holding every piece, once it is in the
	// blob's swarm.
	all := func(int) bool { return true }
	c, err := dialPeerWire(t, a.Addr().String(), sb.ih, "-EA0100-holdsitwhole", sb.info.NumPieces(), all)
	for deadline := time.Now().Add(10 * time.Second); err != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("the node did not take a connection for the blob's swarm: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		c, err = dialPeerWire(t, a.Addr().String(), sb.ih, "-EA0100-holdsitwhole", sb.info.NumPieces(), all)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0, 0, 0, 1, 1}); err != nil { // unchoke
		t.Fatal(err)
	}

	// Read what the node sends for a few seconds, answering nothing, and
	// count its requests outstanding at once (a cancel takes one back).
	// The handshake offers the fast extension, so that a cancelled request
	// waits for a reject that never comes rather than being asked again.
	const want = 8
	outstanding, most := 0, 0
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for most < want {
		var n uint32
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			break
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c, body); err != nil {
			break
		}
		switch {
		case n == 0:
		case body[0] == 6: // request
			outstanding++
		case body[0] == 8: // cancel
			outstanding--
		}
		most = max(most, outstanding)
	}
	if most < want {
		t.Fatalf("the node kept at most %d requests outstanding with a peer holding the blob, want at least %d", most, want)
	}
}
