package p2p

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

func testHandshake(ih metainfo.Hash, fast bool) []byte {
	hs := []byte(wireProtocol)
	reserved := make([]byte, 8)
	if fast {
		reserved[7] |= 0x04
	}
	hs = append(hs, reserved...)
	hs = append(hs, ih[:]...)
	return append(hs, bytes.Repeat([]byte("p"), 20)...)
}

type scanned struct {
	raw  []byte
	msgs [][]byte // id followed by payload
}

func scanInChunks(t *testing.T, stream []byte, keep func(byte) bool, split func(rest int) int) scanned {
	t.Helper()
	var got scanned
	s := wireScanner{keep: keep}
	for len(stream) > 0 {
		n := split(len(stream))
		s.scan(stream[:n], func(b []byte) { got.raw = append(got.raw, b...) }, func(id byte, p []byte) {
			got.msgs = append(got.msgs, append([]byte{id}, p...))
		})
		stream = stream[n:]
	}
	if !s.atBoundary() {
		t.Error("stream of whole messages does not end at a boundary")
	}
	return got
}

func TestWireScannerSplitsAnyWay(t *testing.T) {
	var ih metainfo.Hash
	ih[0] = 7
	piece := append([]byte{0, 0, 0, 3, 0, 0, 0, 0}, bytes.Repeat([]byte{0xab}, 16<<10)...)
	parts := [][]byte{
		testHandshake(ih, true),
		{0, 0, 0, 0}, // keep-alive
		wireMessage(msgBitfield, []byte{0xff, 0x80}),
		wireMessage(7, piece),
		haveMessage(3),
		wireMessage(msgHaveAll, nil),
		wireMessage(2, nil), // interested
	}
	stream := bytes.Join(parts, nil)
	var wantRaw []byte
	for i, p := range parts {
		if i != 2 && i != 4 && i != 5 {
			wantRaw = append(wantRaw, p...)
		}
	}
	wantMsgs := [][]byte{{msgBitfield, 0xff, 0x80}, {msgHave, 0, 0, 0, 3}, {msgHaveAll}}
	splits := map[string]func(int) int{
		"whole":       func(rest int) int { return rest },
		"byte":        func(int) int { return 1 },
		"random":      func(rest int) int { return 1 + rand.IntN(min(rest, 40)) },
		"random-wide": func(rest int) int { return 1 + rand.IntN(rest) },
	}
	for name, split := range splits {
		t.Run(name, func(t *testing.T) {
			got := scanInChunks(t, stream, isHaveMessage, split)
			if !bytes.Equal(got.raw, wantRaw) {
				t.Errorf("raw bytes: got %d, want %d (equal %v)", len(got.raw), len(wantRaw), bytes.Equal(got.raw, wantRaw))
			}
			if len(got.msgs) != len(wantMsgs) {
				t.Fatalf("kept %d messages, want %d", len(got.msgs), len(wantMsgs))
			}
			for i := range wantMsgs {
				if !bytes.Equal(got.msgs[i], wantMsgs[i]) {
					t.Errorf("message %d: got %x, want %x", i, got.msgs[i], wantMsgs[i])
				}
			}
		})
	}
}

func TestWireScannerPassesForeignStreams(t *testing.T) {
	var ih metainfo.Hash
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, maxWireMessage+1)
	for name, stream := range map[string][]byte{
		// An encrypted (MSE) stream starts with random bytes.
		"not bittorrent": append([]byte{0x13, 'X'}, bytes.Repeat([]byte{1}, 200)...),
		// A length no peer would send: garbage after the handshake.
		"huge length": append(append(testHandshake(ih, false), huge...), bytes.Repeat([]byte{msgHave}, 100)...),
	} {
		t.Run(name, func(t *testing.T) {
			var raw []byte
			kept := 0
			s := wireScanner{keep: func(byte) bool { return true }}
			for i := 0; i < len(stream); i += 7 {
				s.scan(stream[i:min(i+7, len(stream))], func(b []byte) { raw = append(raw, b...) }, func(byte, []byte) { kept++ })
			}
			if !bytes.Equal(raw, stream) || kept != 0 {
				t.Errorf("stream changed: %d of %d bytes passed, %d messages kept", len(raw), len(stream), kept)
			}
			if s.atBoundary() {
				t.Error("an opaque stream reports a message boundary")
			}
		})
	}
}

// TestSwarmOffersDistinctPieces checks the offer policy: every peer gets
// offers, no piece is offered twice while unoffered pieces remain, at most
// superSeedSlots offers are outstanding, and an offer the peer completes
// (or that times out) frees its slot for the next.
func TestSwarmOffersDistinctPieces(t *testing.T) {
	const pieces = 64
	sw := &ssSwarm{n: pieces, have: make([]int32, pieces), offered: make([]int32, pieces), peers: map[*ssConn]*ssPeer{}}
	conns := make([]*ssConn, 6)
	for i := range conns {
		conns[i] = &ssConn{}
		sw.join(conns[i]).started = true
	}
	told := map[int]int{}
	var order []int
	perConn := map[*ssConn][]int{}
	tell := func(c *ssConn, i int) { told[i]++; order = append(order, i); perConn[c] = append(perConn[c], i) }
	now := time.Now()
	sw.fill(now, tell)
	if len(told) != superSeedSlots || sw.slots != superSeedSlots {
		t.Fatalf("first fill offered %d pieces holding %d slots, want %d", len(told), sw.slots, superSeedSlots)
	}
	// Peers report their offered pieces one at a time; each report frees a
	// slot that goes to the peer waiting longest.
	for round := 0; len(told) < pieces; round++ {
		if round > 10*pieces {
			t.Fatal("offers stopped before every piece was offered")
		}
		for c, offered := range perConn {
			if len(offered) == 0 {
				continue
			}
			sw.got(sw.peers[c], offered[0], false)
			perConn[c] = offered[1:]
			now = now.Add(time.Millisecond)
			sw.fill(now, tell)
		}
		if sw.slots > superSeedSlots {
			t.Fatalf("%d slots taken, limit %d", sw.slots, superSeedSlots)
		}
	}
	first := map[int]bool{}
	for _, i := range order[:pieces] {
		if first[i] {
			t.Errorf("piece %d offered again before every piece was offered once", i)
		}
		first[i] = true
	}
	for c, p := range sw.peers {
		n := 0
		for _, tl := range p.told {
			if tl {
				n++
			}
		}
		if n < pieces/len(conns)/2 {
			t.Errorf("peer %p was offered %d pieces, far below its share", c, n)
		}
	}

	// A peer that never gets its offers loses their slots after the TTL.
	stuck := &ssConn{}
	sw2 := &ssSwarm{n: pieces, have: make([]int32, pieces), offered: make([]int32, pieces), peers: map[*ssConn]*ssPeer{}}
	sw2.join(stuck).started = true
	sw2.fill(now, func(*ssConn, int) {})
	before := sw2.slots
	sw2.fill(now.Add(superSeedOfferTTL+time.Second), func(*ssConn, int) {})
	if before != superSeedSlots || sw2.slots != superSeedSlots || len(sw2.peers[stuck].offers) != 2*superSeedSlots {
		t.Errorf("after the TTL: slots %d→%d, offers %d; want the old offers to give up their slots to new ones", before, sw2.slots, len(sw2.peers[stuck].offers))
	}

	// A peer that leaves gives its slots back.
	sw.leave(conns[0])
	for _, c := range conns[1:] {
		sw.leave(c)
	}
	if sw.slots != 0 || len(sw.peers) != 0 {
		t.Errorf("all peers left: %d slots still taken", sw.slots)
	}
	for i := range pieces {
		if sw.have[i] != 0 || sw.offered[i] != 0 {
			t.Fatalf("all peers left: piece %d still counts have=%d offered=%d", i, sw.have[i], sw.offered[i])
		}
	}
}

// TestSwarmOffersTheFrontFirst checks that a swarm's first offers are the
// blob's first frontPieces pieces, in order (every reader waits on piece 0
// first), and that the offers after them are drawn from the window, not
// in order.
func TestSwarmOffersTheFrontFirst(t *testing.T) {
	const pieces = 256
	inOrder := 0
	for range 20 {
		sw := &ssSwarm{n: pieces, have: make([]int32, pieces), offered: make([]int32, pieces), peers: map[*ssConn]*ssPeer{}}
		for range 8 {
			sw.join(&ssConn{}).started = true
		}
		var order []int
		sw.fill(time.Now(), func(_ *ssConn, i int) { order = append(order, i) })
		if len(order) < frontPieces+2 {
			t.Fatalf("first fill offered %v, want more than %d pieces", order, frontPieces+1)
		}
		for i := range frontPieces {
			if order[i] != i {
				t.Fatalf("first offers %v, want pieces 0 to %d first, in order", order, frontPieces-1)
			}
		}
		for j, i := range order[frontPieces:] {
			// The window holds the pickWindow lowest-numbered pieces not
			// offered yet: after the front and j offers from it, pieces
			// up to frontPieces+pickWindow+j-1.
			if i >= frontPieces+pickWindow+j {
				t.Fatalf("first offers %v: piece %d is beyond the window of %d", order, i, pickWindow)
			}
		}
		if order[frontPieces] == frontPieces && order[frontPieces+1] == frontPieces+1 {
			inOrder++
		}
	}
	if inOrder == 20 {
		t.Error("the offers after the front came in order in 20 swarms out of 20: want them drawn at random from the window")
	}
}

// TestSwarmOpensIsolatedPeer checks that a peer which, for
// isolationDelay, gets pieces from the seeder only, while the others hold
// pieces it lacks, is told of every piece (it could not learn of the other
// peers), and that a peer which got a piece elsewhere stays super-seeded.
func TestSwarmOpensIsolatedPeer(t *testing.T) {
	const pieces = 64
	sw := &ssSwarm{n: pieces, have: make([]int32, pieces), offered: make([]int32, pieces), peers: map[*ssConn]*ssPeer{}}
	start := time.Now()
	conns := make([]*ssConn, 3)
	for i := range conns {
		conns[i] = &ssConn{}
		p := sw.join(conns[i])
		p.started, p.startedAt = true, start
	}
	told := map[*ssConn]map[int]bool{}
	tell := func(c *ssConn, i int) {
		if told[c] == nil {
			told[c] = map[int]bool{}
		}
		told[c][i] = true
	}
	// Every peer gets its offers; peer 1 also gets a piece it was not
	// offered, from another peer.
	sw.fill(start, tell)
	for _, c := range conns {
		for i := range told[c] {
			sw.got(sw.peers[c], i, false)
		}
	}
	for i := range pieces {
		if !told[conns[1]][i] {
			sw.got(sw.peers[conns[1]], i, false)
			break
		}
	}
	sw.fill(start.Add(isolationDelay/2), tell)
	for _, c := range conns {
		if sw.peers[c].isolated {
			t.Fatalf("peer opened after %v, before isolationDelay %v", isolationDelay/2, isolationDelay)
		}
	}
	sw.fill(start.Add(isolationDelay+time.Millisecond), tell)
	for i, c := range conns {
		p := sw.peers[c]
		want := i != 1
		if p.isolated != want {
			t.Errorf("peer %d: isolated %v, want %v (pieces from others: %d)", i, p.isolated, want, p.fromOthers)
		}
		if !want {
			continue
		}
		for j := range pieces {
			if !p.has[j] && !told[c][j] {
				t.Fatalf("isolated peer %d was not told of piece %d", i, j)
			}
		}
		if p.active != 0 || len(p.offers) != 0 {
			t.Errorf("isolated peer %d still holds %d slots, %d offers", i, p.active, len(p.offers))
		}
	}
	if sw.slots > superSeedSlots {
		t.Errorf("%d slots taken, limit %d", sw.slots, superSeedSlots)
	}
}

// TestSwarmOpensPeerThatJoinedWithPieces checks that the pieces a peer
// held when it connected (its opening bitfield) do not count as pieces it
// got from other peers: a node streamed a blob's first pieces joins with
// them, and if it gets nothing from anyone but this seeder afterwards, it
// is opened like any isolated peer. One that then gets a piece elsewhere
// stays super-seeded.
func TestSwarmOpensPeerThatJoinedWithPieces(t *testing.T) {
	const pieces, held = 64, 10
	sw := &ssSwarm{n: pieces, have: make([]int32, pieces), offered: make([]int32, pieces), peers: map[*ssConn]*ssPeer{}}
	start := time.Now()
	conns := []*ssConn{{}, {}, {}}
	for _, c := range conns {
		p := sw.join(c)
		p.started, p.startedAt = true, start
	}
	// Peers 0 and 1 connect with the first pieces (a streamed prefix);
	// peer 2 with none.
	for _, c := range conns[:2] {
		for i := range held {
			sw.got(sw.peers[c], i, true)
		}
	}
	told := map[*ssConn][]int{}
	sw.fill(start, func(c *ssConn, i int) { told[c] = append(told[c], i) })
	for _, c := range conns {
		for _, i := range told[c] {
			sw.got(sw.peers[c], i, false)
		}
	}
	// Peer 1 gets a piece it was not offered: it trades.
	for i := held; i < pieces; i++ {
		if !sw.peers[conns[1]].has[i] && !sw.peers[conns[1]].told[i] {
			sw.got(sw.peers[conns[1]], i, false)
			break
		}
	}
	sw.fill(start.Add(isolationDelay+time.Millisecond), func(*ssConn, int) {})
	for i, want := range []bool{true, false, true} {
		if p := sw.peers[conns[i]]; p.isolated != want {
			t.Errorf("peer %d: opened %v, want %v (pieces from others: %d)", i, p.isolated, want, p.fromOthers)
		}
	}
}

// TestSwarmSlotsGrowWithPeers checks that a swarm of many peers gets more
// offers outstanding, up to maxSuperSeedSlots, while a quarter of its peers
// are left without one.
func TestSwarmSlotsGrowWithPeers(t *testing.T) {
	for _, tc := range []struct{ peers, want int }{
		{1, superSeedSlots},
		{8, superSeedSlots},
		{10, 7},
		{11, maxSuperSeedSlots},
		{24, maxSuperSeedSlots},
	} {
		const pieces = 64
		sw := &ssSwarm{n: pieces, have: make([]int32, pieces), offered: make([]int32, pieces), peers: map[*ssConn]*ssPeer{}}
		for range tc.peers {
			sw.join(&ssConn{}).started = true
		}
		offers := 0
		sw.fill(time.Now(), func(*ssConn, int) { offers++ })
		if offers != tc.want || sw.slots != tc.want {
			t.Errorf("%d peers: %d offers holding %d slots, want %d", tc.peers, offers, sw.slots, tc.want)
		}
	}
}

// readMessage reads one peer-wire message: its ID and payload.
func readMessage(t *testing.T, r io.Reader) (byte, []byte) {
	t.Helper()
	for {
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			t.Fatal(err)
		}
		n := binary.BigEndian.Uint32(l[:])
		if n == 0 {
			continue
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		return b[0], b[1:]
	}
}

// TestSuperSeedConnRewritesTheSeedersBitfield drives a wrapped connection
// over real TCP the way anacrolix and a peer would: the seeder's HaveAll
// reaches the peer as a Bitfield of a few pieces, and each Have the peer
// sends brings it one more offer, inserted between the seeder's messages.
func TestSuperSeedConnRewritesTheSeedersBitfield(t *testing.T) {
	const pieces = 40
	var ih metainfo.Hash
	ih[3] = 9
	ss := newSuperSeeder()
	ss.add(ih, pieces)
	peer, raw := loopbackPair(t)
	seed := ss.wrap(raw)
	defer seed.Close()

	// Peer's handshake and empty bitfield, read by the seeder side.
	go func() {
		peer.Write(testHandshake(ih, true))
		peer.Write(wireMessage(msgHaveNone, nil))
	}()
	buf := make([]byte, handshakeLen+5)
	if _, err := io.ReadFull(seed, buf); err != nil {
		t.Fatal(err)
	}
	// The seeder answers with its handshake and HaveAll, written in odd
	// pieces, then a keep-alive.
	out := append(append(testHandshake(ih, true), wireMessage(msgHaveAll, nil)...), 0, 0, 0, 0)
	for _, cut := range [][2]int{{0, 20}, {20, 70}, {70, len(out)}} {
		if _, err := seed.Write(out[cut[0]:cut[1]]); err != nil {
			t.Fatal(err)
		}
	}
	hs := make([]byte, handshakeLen)
	if _, err := io.ReadFull(peer, hs); err != nil {
		t.Fatal(err)
	}
	if !superSeeds(hs) {
		t.Error("the seeder's handshake does not say it super-seeds")
	}
	id, bf := readMessage(t, peer)
	if id != msgBitfield || len(bf) != (pieces+7)/8 {
		t.Fatalf("peer got message %d of %d bytes, want a Bitfield of %d bytes", id, len(bf), (pieces+7)/8)
	}
	var offered []int
	for i := range pieces {
		if bf[i/8]&(0x80>>(i%8)) != 0 {
			offered = append(offered, i)
		}
	}
	if len(offered) != superSeedSlots {
		t.Fatalf("opening bitfield offers %v, want %d pieces", offered, superSeedSlots)
	}
	// The peer got the first offered piece: the seeder offers another.
	// Drain the seeder side so the Have is read.
	go io.Copy(io.Discard, seed)
	if _, err := peer.Write(haveMessage(offered[0])); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	id, p := readMessage(t, peer)
	if id != msgHave || len(p) != 4 {
		t.Fatalf("peer got message %d %x, want a Have", id, p)
	}
	next := int(binary.BigEndian.Uint32(p))
	for _, o := range offered {
		if o == next {
			t.Fatalf("offered piece %d again", next)
		}
	}
}

// discardConn is a net.Conn whose writes vanish.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }
func (discardConn) Close() error                { return nil }

// BenchmarkSuperSeedWrite measures the seeder-side wrapper on its hot
// path: piece messages (16 KiB chunks, as anacrolix sends them) scanned and
// passed through.
func BenchmarkSuperSeedWrite(b *testing.B) {
	var ih metainfo.Hash
	ss := newSuperSeeder()
	ss.add(ih, 512)
	c := ss.wrap(discardConn{}).(*ssConn)
	c.in.scan(testHandshake(ih, true), func([]byte) {}, c.onInbound)
	if _, err := c.Write(append(testHandshake(ih, true), wireMessage(msgHaveAll, nil)...)); err != nil {
		b.Fatal(err)
	}
	msg := wireMessage(7, append([]byte{0, 0, 0, 1, 0, 0, 0, 0}, make([]byte, 16<<10)...))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSuperSeedOffersMoreWhenOffersGoStale checks that offers a peer sits
// on give their slots up after superSeedOfferTTL even when nothing else
// happens in the swarm: the peer is sent fresh offers without sending
// anything itself.
func TestSuperSeedOffersMoreWhenOffersGoStale(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the offer TTL")
	}
	var ih metainfo.Hash
	ih[5] = 1
	ss := newSuperSeeder()
	defer ss.close()
	ss.add(ih, 64)
	peer, raw := loopbackPair(t)
	seed := ss.wrap(raw)
	defer seed.Close()
	go peer.Write(testHandshake(ih, true))
	if _, err := io.ReadFull(seed, make([]byte, handshakeLen)); err != nil {
		t.Fatal(err)
	}
	if _, err := seed.Write(append(testHandshake(ih, true), wireMessage(msgHaveAll, nil)...)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(peer, make([]byte, handshakeLen)); err != nil {
		t.Fatal(err)
	}
	if id, _ := readMessage(t, peer); id != msgBitfield {
		t.Fatalf("opening message %d, want a Bitfield", id)
	}
	start := time.Now()
	peer.SetReadDeadline(start.Add(superSeedOfferTTL + 3*time.Second))
	id, p := readMessage(t, peer)
	if id != msgHave || len(p) != 4 {
		t.Fatalf("got message %d %x, want a Have", id, p)
	}
	if waited := time.Since(start); waited < superSeedOfferTTL-100*time.Millisecond {
		t.Errorf("a new offer came after %v, before the old ones were stale", waited)
	}
}

// TestSuperSeedConnSaysSoInItsHandshake: a node's handshake carries
// superSeedBit exactly when it super-seeds the connection's torrent to that
// peer, whichever side spoke first, however anacrolix cuts its writes (it
// writes the protocol and the reserved bytes before it knows the torrent of
// a connection it was dialed on), and the rest of the stream is unchanged.
func TestSuperSeedConnSaysSoInItsHandshake(t *testing.T) {
	seeded, other := metainfo.Hash{7}, metainfo.Hash{8}
	seederHS := testHandshake(seeded, true)
	copy(seederHS[48:], seederPeerIDPrefix)
	for _, tc := range []struct {
		name   string
		dialed bool // this node writes its handshake first
		ih     metainfo.Hash
		peerHS []byte // the peer's handshake (nil: testHandshake of ih)
		want   bool
		joined bool
		whole  bool // this node writes its handshake and bitfield at once
	}{
		{"dialed, super-seeded", true, seeded, nil, true, true, false},
		{"dialed, super-seeded, one write", true, seeded, nil, true, true, true},
		{"was dialed, super-seeded", false, seeded, nil, true, true, false},
		{"dialed, another torrent", true, other, nil, false, false, false},
		{"was dialed, another torrent", false, other, nil, false, false, false},
		// It dialed a seeder: its handshake went out first, saying it
		// super-seeds, but a seeder is passed plainly.
		{"dialed a seeder", true, seeded, seederHS, true, false, false},
		{"was dialed by a seeder", false, seeded, seederHS, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := newSuperSeeder()
			defer ss.close()
			ss.add(seeded, 16)
			peer, raw := loopbackPair(t)
			c := ss.wrap(raw)
			defer c.Close()
			peerHS := tc.peerHS
			if peerHS == nil {
				peerHS = testHandshake(tc.ih, true)
			}
			own := append(testHandshake(tc.ih, true), wireMessage(msgHaveAll, nil)...)
			write := func(parts ...[]byte) {
				t.Helper()
				for _, p := range parts {
					if _, err := c.Write(p); err != nil {
						t.Fatal(err)
					}
				}
			}
			readPeer := func() {
				t.Helper()
				go peer.Write(peerHS)
				raw.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, make([]byte, handshakeLen)); err != nil {
					t.Fatal(err)
				}
			}
			// As anacrolix writes: protocol, reserved bytes, info hash,
			// peer ID, each in a Write of its own.
			switch {
			case tc.whole:
				write(own)
				readPeer()
			case tc.dialed:
				write(own[:20], own[20:28], own[28:48], own[48:68])
				readPeer()
			default:
				write(own[:20], own[20:28])
				readPeer()
				write(own[28:48], own[48:68])
			}
			if !tc.whole {
				write(own[68:])
			}
			peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			hs := make([]byte, handshakeLen)
			if _, err := io.ReadFull(peer, hs); err != nil {
				t.Fatal(err)
			}
			if got := superSeeds(hs); got != tc.want {
				t.Errorf("handshake says it super-seeds: %v, want %v", got, tc.want)
			}
			if hs[superSeedByte] &^= superSeedBit; !bytes.Equal(hs, own[:handshakeLen]) {
				t.Errorf("handshake %x, want %x with the bit as above", hs, own[:handshakeLen])
			}
			id, _ := readMessage(t, peer)
			if want := byte(msgHaveAll); tc.joined {
				if id != msgBitfield {
					t.Errorf("opening message %d, want a Bitfield (super-seeded)", id)
				}
			} else if id != want {
				t.Errorf("opening message %d, want HaveAll (passed plainly)", id)
			}
			ss.mu.Lock()
			n := 0
			if sw := ss.swarms[seeded]; sw != nil {
				n = len(sw.peers)
			}
			ss.mu.Unlock()
			if joined := n == 1; joined != tc.joined {
				t.Errorf("connection in the swarm: %v, want %v", joined, tc.joined)
			}
		})
	}
}

// A stream that is not the plain BitTorrent protocol (an encrypted one,
// say) goes out as written, however it is cut, empty writes included:
// nothing is held back for a handshake that never comes.
func TestSuperSeedConnPassesForeignStreams(t *testing.T) {
	ss := newSuperSeeder()
	defer ss.close()
	ss.add(metainfo.Hash{7}, 16)
	peer, raw := loopbackPair(t)
	c := ss.wrap(raw)
	defer c.Close()
	stream := append([]byte{0x13, 'X'}, bytes.Repeat([]byte{0xa5}, 100)...)
	for _, part := range [][]byte{nil, stream[:1], nil, stream[1:30], stream[30:]} {
		if _, err := c.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(stream))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatalf("read what was written: %v", err)
	}
	if !bytes.Equal(got, stream) {
		t.Errorf("peer read %x, want %x", got, stream)
	}
}
