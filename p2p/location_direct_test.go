package p2p_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/tracker"
)

// borderSwitch is a tracker policy that names every requester a border
// peer taking every piece, with other locations' peers as its upstream
// peers, until leave is set; from then on no requester is one.
type borderSwitch struct{ leave atomic.Bool }

// Border implements tracker.BorderJudge.
func (p *borderSwitch) Border(tracker.InfoHash, tracker.Peer, []tracker.Peer) (share, shares int) {
	if p.leave.Load() {
		return -1, 0
	}
	return 0, 1
}

// Order implements tracker.Policy.
func (p *borderSwitch) Order(_ tracker.InfoHash, requester tracker.Peer, candidates []tracker.Peer) []tracker.Peer {
	return nearUnlessBorder(requester, candidates, !p.leave.Load())
}

// Upstream implements tracker.UpstreamMarker.
func (p *borderSwitch) Upstream(dst []tracker.Peer, requester tracker.Peer, handed []tracker.Peer) []tracker.Peer {
	return otherLocations(dst, requester, handed)
}

// TestLocationDirectTransferFromUpstreamEnds: a direct transfer from an
// upstream peer, under way when the tracker says the node is no longer a
// border peer, ends at its next piece, and the node takes the rest from
// the seeder. A transfer claims a run of up to 8 MiB (here every piece);
// left to finish, it went on bringing the whole run across the border.
//
// The upstream peer is a member of another location that the tracker
// lists, connected to the node over the peer wire (holding every piece,
// never unchoking it) and serving direct transfers at about 1.25 MiB/s:
// until the node falls back on its seeder, its direct transfers are the
// only source of the blob's bytes.
func TestLocationDirectTransferFromUpstreamEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sb := seedBlob(t, ctx, "location/direct", 8<<20)
	size, piece := int64(len(sb.content)), sb.info.PieceLength
	upIP := netip.MustParseAddr("127.0.0.3")

	// The upstream peer's direct transfer server: any range of the blob,
	// 32 KiB every 25 ms.
	var served atomic.Int64
	direct := serveDirect(t, upIP.String(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var first, last int
		fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
		w.WriteHeader(http.StatusPartialContent)
		rc := http.NewResponseController(w)
		for at := first; at <= last; at += 32 << 10 {
			n, err := w.Write(sb.content[at:min(at+32<<10, last+1)])
			served.Add(int64(n))
			if err != nil || rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(25 * time.Millisecond):
			}
		}
	}))

	// The tracker lists it (at a port where nothing listens: it reaches
	// the node by dialing it).
	lis, err := net.Listen("tcp", netip.AddrPortFrom(upIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	listed := netip.MustParseAddrPort(lis.Addr().String())
	lis.Close()
	store := tracker.NewMemoryStore(tracker.StoreConfig{})
	t.Cleanup(func() { store.Close() })
	if err := store.Announce(ctx, tracker.InfoHash(sb.ih), tracker.Peer{ID: tracker.PeerID{'u', 'p'}, Addr: listed, Location: "dc0"}); err != nil {
		t.Fatal(err)
	}
	policy := &borderSwitch{}
	trk, err := tracker.New(tracker.Config{Policy: policy, Interval: time.Second, MinInterval: time.Second, Logger: quiet}, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trk.Close() })
	url, _ := testtls.Server(t, trk)

	// What the upstream peer had served when the node acted on the answer
	// that said it is no longer a border peer.
	var servedAct atomic.Int64
	servedAct.Store(-1)
	acted := &onMessage{sub: "no longer a border peer", f: func() { servedAct.CompareAndSwap(-1, served.Load()) }}
	node := newEngineWith(t, url+"/announce", newFSStore(t), sb.src, func(c *p2p.Config) {
		c.ListenAddr, c.Location, c.Logger = "127.0.0.2:0", "dc1", slog.New(acted)
	})
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := node.Fetch(ctx, sb.ref)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer b.Close()
		got, err := io.ReadAll(b)
		done <- result{got, err}
	}()
	t.Cleanup(func() { cancel(); <-done })

	all := func(int) bool { return true }
	c, err := dialPeerWireFrom(t, upIP, node.Addr().String(), sb.ih, "-UP0001-upstreampeer", sb.info.NumPieces(), all)
	for deadline := time.Now().Add(10 * time.Second); err != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("the node did not take a connection for the blob's swarm: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		c, err = dialPeerWireFrom(t, upIP, node.Addr().String(), sb.ih, "-UP0001-upstreampeer", sb.info.NumPieces(), all)
	}
	c.SetDeadline(time.Time{})
	// Its extended handshake names its listen port, where direct
	// transfers are asked for.
	ext := fmt.Sprintf("d1:md11:ut_metadatai0ee1:pi%dee", direct.Port())
	msg := binary.BigEndian.AppendUint32(nil, uint32(2+len(ext)))
	if _, err := c.Write(append(append(msg, 20, 0), ext...)); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, c)
	t.Cleanup(func() { c.Close() })

	// 1 MiB served, and counted as the upstream peer's: the node heard
	// it is a border peer with that upstream peer.
	for served.Load() < 1<<20 || node.Stats().BytesFromUpstream == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("the upstream peer served %d bytes by direct transfer, %d of them counted as from upstream; want 1 MiB, some counted, before the node is told", served.Load(), node.Stats().BytesFromUpstream)
		case <-time.After(10 * time.Millisecond):
		}
	}
	policy.leave.Store(true)
	var res result
	select {
	case res = <-done:
		done <- res // for the cleanup
	case <-ctx.Done():
		t.Fatal("the node's read did not end within the test's minute")
	}
	if res.err != nil || !bytes.Equal(res.b, sb.content) {
		t.Fatalf("the node read %d bytes that differ from the origin's (%v)", len(res.b), res.err)
	}
	st := node.Stats()
	t.Logf("the upstream peer served %d bytes, %d of them before the node acted; the node got %d from upstream, %d from seeders, %d by direct transfers (%d-byte pieces)",
		served.Load(), servedAct.Load(), st.BytesFromUpstream, st.BytesFromSeeders, st.BytesDirect, piece)
	if servedAct.Load() < 0 {
		t.Fatal("the node never acted on the tracker's word that it is no longer a border peer")
	}
	// The piece under way, and what the server wrote into the sockets'
	// buffers before the node's transfer closed its connection (32-64 KiB
	// on an idle machine; the bound allows 0.8 s of the server's pace for
	// a loaded one); not the rest of the run (6.65 MB when the transfer
	// went on).
	bound := max(2*piece, 1<<20)
	if servedAct.Load()+bound >= size {
		t.Fatalf("the upstream peer had served %d of %d bytes when the node acted: the test proves nothing", servedAct.Load(), size)
	}
	if after := served.Load() - servedAct.Load(); after > bound {
		t.Errorf("the upstream peer served %d bytes by direct transfer after the node acted, want at most %d", after, bound)
	}
	if st.BytesFromUpstream == 0 || st.BytesFromSeeders == 0 {
		t.Errorf("the node got %d bytes from upstream and %d from seeders: want both", st.BytesFromUpstream, st.BytesFromSeeders)
	}
}
