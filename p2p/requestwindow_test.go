package p2p_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/p2p"
)

// holderPeer is a fake member of a node's swarm, over the peer wire, that
// holds the whole blob: a test reads the node's messages and answers,
// rejects or ignores its requests itself.
type holderPeer struct {
	t  *testing.T
	c  net.Conn
	sb seededBlob
}

// joinAsHolder seeds a 32 MiB blob, starts a node pulling it (at 4 MiB/s,
// peer wire only, so that the pull lasts the test), and joins the node's
// swarm as a peer holding every piece that has unchoked it.
func joinAsHolder(t *testing.T, ctx context.Context) *holderPeer {
	t.Helper()
	sb := seedBlob(t, ctx, "window/blob", 32<<20)
	a := newEngineWith(t, sb.tracker, newFSStore(t), sb.src, func(c *p2p.Config) {
		c.DownloadLimit = 4 << 20
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
	t.Cleanup(func() { stop(); <-fetched })

	// Join once the node is in the blob's swarm.
	all := func(int) bool { return true }
	c, err := dialPeerWire(t, a.Addr().String(), sb.ih, "-EA0100-holdsitwhole", sb.info.NumPieces(), all)
	for deadline := time.Now().Add(10 * time.Second); err != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("the node did not take a connection for the blob's swarm: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		c, err = dialPeerWire(t, a.Addr().String(), sb.ih, "-EA0100-holdsitwhole", sb.info.NumPieces(), all)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{0, 0, 0, 1, 1}); err != nil { // unchoke
		t.Fatal(err)
	}
	return &holderPeer{t: t, c: c, sb: sb}
}

// read returns the node's next message, or false if none came within wait.
func (h *holderPeer) read(wait time.Duration) (body []byte, ok bool) {
	h.c.SetReadDeadline(time.Now().Add(wait))
	var n uint32
	if err := binary.Read(h.c, binary.BigEndian, &n); err != nil {
		return nil, false
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(h.c, body); err != nil {
		return nil, false
	}
	return body, true
}

// msgRequest is the peer wire's request message ID.
const msgRequest = 6

func isMsg(body []byte, id byte) bool { return len(body) == 13 && body[0] == id }

// answer sends the chunk a request message asks for.
func (h *holderPeer) answer(req []byte) {
	index, begin, length := binary.BigEndian.Uint32(req[1:]), binary.BigEndian.Uint32(req[5:]), binary.BigEndian.Uint32(req[9:])
	off := int(index)*int(h.sb.info.PieceLength) + int(begin)
	msg := binary.BigEndian.AppendUint32(nil, 9+length)
	msg = append(append(msg, 7), req[1:9]...)
	if _, err := h.c.Write(append(msg, h.sb.content[off:off+int(length)]...)); err != nil {
		h.t.Fatal(err)
	}
}

// reject refuses a request message (the fast extension's reject).
func (h *holderPeer) reject(req []byte) {
	msg := append([]byte{0, 0, 0, 13, 16}, req[1:]...)
	if _, err := h.c.Write(msg); err != nil {
		h.t.Fatal(err)
	}
}

// TestRequestWindow has a downloading node meet a peer that holds the whole
// blob and unchokes it. The peer answers the node's first requests at once,
// rejects the next ones, and unchokes the node again: the node, having
// seen a fast peer, asks it for 8 chunks at once (Eagle's patch of
// anacrolix's request window, third_party/anacrolix-torrent/EAGLE.md).
// Unpatched, the update after a reject set the window to one chunk.
func TestRequestWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := joinAsHolder(t, ctx)

	// Answer the node's first requests with their chunks at once, then
	// reject every request until the node asks for nothing more (an update
	// of its requests after a reject adds none, which in unpatched
	// anacrolix leaves the connection a window of one), then choke and
	// unchoke it and count what it asks for, answering nothing.
	const answer, want = 32, 8
	answered, rejected, asked := 0, 0, 0
	for answered < answer {
		body, ok := h.read(5 * time.Second)
		if !ok {
			t.Fatalf("the node asked a peer holding the blob for %d chunks, want at least %d", answered, answer)
		}
		if isMsg(body, msgRequest) {
			h.answer(body)
			answered++
		}
	}
	for quiet := time.Now().Add(300 * time.Millisecond); time.Now().Before(quiet); {
		if body, ok := h.read(time.Until(quiet)); ok && isMsg(body, msgRequest) {
			h.reject(body)
			rejected++
			quiet = time.Now().Add(300 * time.Millisecond)
		}
	}
	if _, err := h.c.Write([]byte{0, 0, 0, 1, 0, 0, 0, 0, 1, 1}); err != nil { // choke, unchoke
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); asked < want && time.Now().Before(deadline); {
		if body, ok := h.read(time.Until(deadline)); ok && isMsg(body, msgRequest) {
			asked++
		}
	}
	if asked < want {
		t.Fatalf("after %d chunks came back at once and %d requests were rejected, the node asked the unchoking peer for %d chunks, want at least %d", answered, rejected, asked, want)
	}
}
