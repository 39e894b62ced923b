package p2p_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/p2p"
)

// holderPeer is a fake member of a node's swarm, over the peer wire, that
// holds the whole blob: a test reads the node's messages and answers,
// rejects or ignores its requests itself.
type holderPeer struct {
	c  net.Conn
	sb seededBlob
}

// pull starts node a pulling sb's blob at limit bytes per second, over the
// peer wire only, and returns it with a channel that yields when the
// node's reader got the blob's first byte.
func pull(t *testing.T, ctx context.Context, sb seededBlob, limit p2p.Rate) (*p2p.Engine, <-chan time.Time) {
	t.Helper()
	a := newEngineWith(t, sb.tracker, newFSStore(t), sb.src, func(c *p2p.Config) {
		c.DownloadLimit = limit
		c.DisableDirect = true
	})
	fetchCtx, stop := context.WithCancel(ctx)
	fetched, first := make(chan struct{}), make(chan time.Time, 1)
	go func() {
		defer close(fetched)
		b, err := a.Fetch(fetchCtx, sb.ref)
		if err != nil {
			return
		}
		defer b.Close()
		if _, err := io.ReadFull(b, make([]byte, 1)); err == nil {
			first <- time.Now()
		}
		io.Copy(io.Discard, b)
	}()
	t.Cleanup(func() { stop(); <-fetched })
	return a, first
}

// joinAsHolder joins node a's swarm for sb's blob, once the node is in it,
// as a peer (with BitTorrent peer ID id, 20 bytes) that holds every piece
// and has unchoked the node.
func joinAsHolder(t *testing.T, a *p2p.Engine, sb seededBlob, id string) *holderPeer {
	t.Helper()
	all := func(int) bool { return true }
	c, err := dialPeerWire(t, a.Addr().String(), sb.ih, id, sb.info.NumPieces(), all)
	for deadline := time.Now().Add(10 * time.Second); err != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("the node did not take a connection for the blob's swarm: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		c, err = dialPeerWire(t, a.Addr().String(), sb.ih, id, sb.info.NumPieces(), all)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{0, 0, 0, 1, 1}); err != nil { // unchoke
		t.Fatal(err)
	}
	return &holderPeer{c: c, sb: sb}
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

// piece is the piece a request message asks for.
func piece(req []byte) int { return int(binary.BigEndian.Uint32(req[1:])) }

// answer sends the chunk a request message asks for.
func (h *holderPeer) answer(req []byte) error {
	index, begin, length := binary.BigEndian.Uint32(req[1:]), binary.BigEndian.Uint32(req[5:]), binary.BigEndian.Uint32(req[9:])
	off := int(index)*int(h.sb.info.PieceLength) + int(begin)
	msg := binary.BigEndian.AppendUint32(nil, 9+length)
	msg = append(append(msg, 7), req[1:9]...)
	_, err := h.c.Write(append(msg, h.sb.content[off:off+int(length)]...))
	return err
}

// reject refuses a request message (the fast extension's reject).
func (h *holderPeer) reject(req []byte) error {
	_, err := h.c.Write(append([]byte{0, 0, 0, 13, 16}, req[1:]...))
	return err
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
	sb := seedBlob(t, ctx, "window/blob", 32<<20)
	a, _ := pull(t, ctx, sb, 4<<20) // the limit keeps the pull going for the test
	h := joinAsHolder(t, a, sb, "-EA0100-holdsitwhole")

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
			if err := h.answer(body); err != nil {
				t.Fatal(err)
			}
			answered++
		}
	}
	for quiet := time.Now().Add(300 * time.Millisecond); time.Now().Before(quiet); {
		if body, ok := h.read(time.Until(quiet)); ok && isMsg(body, msgRequest) {
			if err := h.reject(body); err != nil {
				t.Fatal(err)
			}
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

// TestReaderPieceTakenFromSlowPeer has a node pull a blob from two peers
// only (its seeder has left). The first, slow peer answers a request every
// 150 ms, so it is always delivering, but never those for piece 0, the
// piece the node's reader waits on first. The second answers at once and
// joins once the first was asked for piece 0. The node takes piece 0's
// requests over to the fast peer and its reader gets the first byte well
// within the 5 s a runtime waits (proxy.first_byte_timeout); unpatched
// anacrolix never takes a request from a peer that is delivering, and
// Eagle's own rule (the first change in third_party/anacrolix-torrent/
// EAGLE.md) takes it only after a second without a chunk, so the first
// byte waited for the slow peer to run out of other pieces to send.
func TestReaderPieceTakenFromSlowPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb := seedBlob(t, ctx, "urgent/blob", 8<<20)
	if err := sb.seeder.Close(); err != nil {
		t.Fatal(err)
	}
	a, first := pull(t, ctx, sb, 1<<20) // 8 s for the whole blob
	slow := joinAsHolder(t, a, sb, "-EA0100-slowholder01")

	askedFront := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer slow.c.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		var queue [][]byte
		asked := false
		next := time.Now().Add(150 * time.Millisecond)
		for {
			body, ok := slow.read(time.Until(next))
			if ok {
				if isMsg(body, msgRequest) {
					if piece(body) != 0 {
						queue = append(queue, body)
					} else if !asked {
						asked = true
						close(askedFront)
					}
				}
				continue
			}
			if time.Now().Before(next) {
				return // closed, not timed out
			}
			if len(queue) > 0 {
				if slow.answer(queue[0]) != nil {
					return
				}
				queue = queue[1:]
			}
			next = time.Now().Add(150 * time.Millisecond)
		}
	}()
	select {
	case <-askedFront:
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not ask the slow peer for piece 0 in 10 s")
	}

	fast := joinAsHolder(t, a, sb, "-EA0100-fastholder01")
	joined := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			body, ok := fast.read(time.Minute)
			if !ok {
				return
			}
			if isMsg(body, msgRequest) && fast.answer(body) != nil {
				return
			}
		}
	}()
	defer fast.c.Close()
	select {
	case at := <-first:
		if d := at.Sub(joined); d > 4*time.Second {
			t.Fatalf("the reader got the first byte %v after a faster peer holding piece 0 joined, want it within 4 s", d.Round(time.Millisecond))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the reader got no byte in 20 s")
	}
}
