package seeder

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/internal/pace"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
)

// streamQueueBytes bounds the bytes of one origin fetch queued for one
// streaming caller. A caller that falls this far behind the origin is
// dropped from the tap: it gets no more bytes, and the answer once the
// fetch is done. The fetch never waits for a caller, and a slow one holds
// this much memory at most.
const streamQueueBytes = 32 << 20

// streamDrain is the most bytes still queued for a caller when the fetch
// ends that it is sent before the answer; a caller further behind gets
// the answer at once.
const streamDrain = 4 << 20

// streamQueueParts bounds the parts queued for one caller, whatever their
// size.
const streamQueueParts = 4096

// streamChunk is the most blob bytes in one part sent from the store (see
// streamRest).
const streamChunk = 256 << 10

// tap hands the bytes of one origin fetch, as they arrive, to the callers
// streaming it (StreamBlob): at most fanout of them, each of whom asked
// before the first byte arrived. With relay, callers after those are
// chained behind them: each gets the piece hashes here and the bytes from
// the caller before it, if that one relays (see BlobHeader.source). Its methods are
// safe on a nil tap, which streams to nobody.
type tap struct {
	fanout int
	// relay chains the callers after the first fanout (Config.StreamRelay).
	relay bool
	// key is what the fetch's callers relay the blob under.
	key []byte

	mu       sync.Mutex
	started  bool
	size, pl int64
	hashes   []byte
	subs     []*subscriber
	// tail is the last caller that relays: the next one's source.
	tail *subscriber
	// callers counts every caller of the fetch, streamed or not (see
	// asked).
	callers int
}

func newTap(fanout int, relay bool) *tap {
	if fanout <= 0 {
		return nil
	}
	key := make([]byte, 16)
	rand.Read(key)
	return &tap{fanout: fanout, relay: relay, key: key}
}

// subscriber is one streaming caller's queue.
type subscriber struct {
	// relay is where the caller relays what it is streamed; invalid if it
	// does not.
	relay netip.AddrPort
	// source, set when the tap chained the caller, is where its bytes
	// come from; the tap sends it no data then.
	source  netip.AddrPort
	parts   chan *seederpb.StreamBlobResponse
	queued  atomic.Int64
	dropped chan struct{}
	once    sync.Once
	// t is the tap it joined last, set under that tap's mu; StreamBlob
	// reads it once the answer is in.
	t *tap
}

func newSubscriber(relay netip.AddrPort) *subscriber {
	return &subscriber{relay: relay, parts: make(chan *seederpb.StreamBlobResponse, streamQueueParts), dropped: make(chan struct{})}
}

func (s *subscriber) drop() { s.once.Do(func() { close(s.dropped) }) }

// took returns m, a part taken off s's queue, and counts its bytes out of
// the queue.
func (s *subscriber) took(m *seederpb.StreamBlobResponse) *seederpb.StreamBlobResponse {
	s.queued.Add(-int64(len(m.GetData())))
	return m
}

// header is s's header for a blob of size bytes in pieces of pl.
func (t *tap) header(s *subscriber) *seederpb.StreamBlobResponse {
	h := &seederpb.BlobHeader{Size: t.size, PieceLength: t.pl, RelayKey: t.key}
	if s.source.IsValid() {
		h.Source = s.source.String()
	}
	return &seederpb.StreamBlobResponse{Part: &seederpb.StreamBlobResponse_Header{Header: h}}
}

// join adds s to the callers the fetch streams to: for its bytes, unless
// the fetch has started or streams to fanout callers already; otherwise
// chained behind the last caller that relays, if there is one.
func (t *tap) join(s *subscriber) {
	if t == nil || s == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if slices.Contains(t.subs, s) {
		return
	}
	direct := 0
	for _, o := range t.subs {
		if !o.source.IsValid() {
			direct++
		}
	}
	switch {
	case !t.started && direct < t.fanout:
	case t.relay && t.tail != nil:
		s.source = t.tail.relay
	default:
		return
	}
	t.subs = append(t.subs, s)
	s.t = t
	if s.relay.IsValid() {
		t.tail = s
	}
	if t.started {
		// Chained after the first byte: the header and the hashes so far.
		t.send(s, t.header(s), 0)
		for h := range slices.Chunk(t.hashes, sha1.Size) {
			t.send(s, hashPart(h), 0)
		}
	}
}

// asked counts one more caller waiting for the fetch, whether or not it
// streams (GetMetaInfo callers too).
func (t *tap) asked() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.callers++
}

// alone reports whether the fetch had a single caller: nobody else waits
// for the blob, so nobody needs the seeder's uplink for it from the swarm.
func (t *tap) alone() bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.callers == 1
}

// leave takes s off the tap: a caller that went away is nobody's source.
func (t *tap) leave(s *subscriber) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.subs = slices.DeleteFunc(t.subs, func(o *subscriber) bool { return o == s })
	if t.tail == s {
		t.tail = nil
	}
}

// begin marks the fetch started, so no caller joins for the bytes from
// here on, and sends those who did their header.
func (t *tap) begin(size, pieceLen int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started, t.size, t.pl = true, size, pieceLen
	for _, s := range t.subs {
		t.send(s, t.header(s), 0)
	}
}

// active reports whether anyone is streamed the bytes.
func (t *tap) active() bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.subs {
		if !s.source.IsValid() {
			return true
		}
	}
	return false
}

// data queues the fetch's next bytes for the callers it streams them to.
func (t *tap) data(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := &seederpb.StreamBlobResponse{Part: &seederpb.StreamBlobResponse_Data{Data: bytes.Clone(p)}}
	for _, s := range t.subs {
		if !s.source.IsValid() {
			t.send(s, m, len(p))
		}
	}
}

// hashed queues the next full piece's hash for every caller.
func (t *tap) hashed(h []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hashes = append(t.hashes, h...)
	m := hashPart(bytes.Clone(h))
	for _, s := range t.subs {
		t.send(s, m, 0)
	}
}

func hashPart(h []byte) *seederpb.StreamBlobResponse {
	return &seederpb.StreamBlobResponse{Part: &seederpb.StreamBlobResponse_PieceHash{PieceHash: h}}
}

// send queues m, which carries n blob bytes, for s, or drops s if its
// queue is full. t.mu is held.
func (t *tap) send(s *subscriber, m *seederpb.StreamBlobResponse, n int) {
	select {
	case <-s.dropped:
		return
	default:
	}
	if s.queued.Load()+int64(n) > streamQueueBytes {
		s.drop()
		return
	}
	s.queued.Add(int64(n))
	select {
	case s.parts <- m:
	default:
		s.queued.Add(-int64(n))
		s.drop()
	}
}

// tapWriter computes a fetch's piece hashes and hands the tap its bytes
// and each full piece's hash as soon as the piece is complete: the bytes
// are cut at piece boundaries so that a hash follows its piece's last byte.
type tapWriter struct {
	ih  *p2p.InfoHasher
	t   *tap
	off int64
}

func (w *tapWriter) Write(p []byte) (int, error) {
	if w.t == nil {
		n, err := w.ih.Write(p)
		w.off += int64(n)
		return n, err
	}
	pl := w.ih.PieceLength()
	n := 0
	for len(p) > 0 {
		seg := p[:min(int64(len(p)), pl-w.off%pl)]
		if _, err := w.ih.Write(seg); err != nil {
			return n, err
		}
		w.off += int64(len(seg))
		n += len(seg)
		if w.t.active() {
			w.t.data(seg)
		}
		if w.off%pl == 0 {
			h := w.ih.PieceHashes()
			w.t.hashed(h[len(h)-sha1.Size:])
		}
		p = p[len(seg):]
	}
	return n, nil
}

// StreamBlob implements seederpb.MetaInfoServiceServer: GetMetaInfo that
// streams a cold blob's bytes to the caller as the origin sends them (see
// seeder.proto), paced by the seeder's upload limit.
func (s *Server) StreamBlob(req *seederpb.GetMetaInfoRequest, stream grpc.ServerStreamingServer[seederpb.StreamBlobResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	sub := newSubscriber(relayAddr(ctx, req.GetRelayPort()))
	var e entry
	var err error
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		e, err = s.answer(ctx, req, callerOf(ctx), sub)
	}()
	defer func() {
		cancel()
		<-answered
		sub.drop()
		sub.t.leave(sub)
	}()
	// sent counts the blob bytes and piece hashes the caller was sent.
	var sent struct {
		data   int64
		hashes int
	}
	send := func(m *seederpb.StreamBlobResponse) error {
		if d := m.GetData(); d != nil {
			if err := pace.Wait(ctx, s.upLimit, len(d)); err != nil {
				return err
			}
			s.streamedBytes.Add(int64(len(d)))
			sent.data += int64(len(d))
		} else if m.GetPieceHash() != nil {
			sent.hashes++
		}
		return stream.Send(m)
	}
	for {
		select {
		case m := <-sub.parts:
			if err := send(sub.took(m)); err != nil {
				return err
			}
			continue
		case <-answered:
		}
		break
	}
	if err != nil {
		return err
	}
	// The fill queued every part before it ended. A caller that kept up
	// gets the few still queued, then the answer. One that fell behind
	// the origin (dropped, or more than streamDrain queued) gets the
	// answer at once: the seeder holds the whole blob now, and the caller
	// takes the rest from the swarm, which it joins with the bytes it has,
	// rather than from this one stream while the swarm waits for it.
	// Unless it was the fetch's only caller: then there is no swarm that
	// needs the seeder's uplink, and the caller gets the rest from the
	// stored blob on this stream, at its own pace. Handed to a swarm of
	// one, it depended on reaching the seeder's peer port, and where it
	// could not (an address it has no route to) it stalled after the
	// first megabytes instead of failing fast.
	behind := true
	select {
	case <-sub.dropped:
	default:
		// The head of a relay chain drains all it has queued: the nodes
		// behind it take the blob from it in order.
		if sub.queued.Load() <= streamDrain || sub.t != nil && sub.t.relay {
			behind = false
			for {
				select {
				case m := <-sub.parts:
					if err := send(sub.took(m)); err != nil {
						return err
					}
					continue
				default:
				}
				break
			}
		}
	}
	if behind && sub.t != nil && sub.t.alone() {
		if err := s.streamRest(ctx, req, e, sent.data, sent.hashes, send); err != nil {
			return err
		}
	}
	return stream.Send(&seederpb.StreamBlobResponse{Part: &seederpb.StreamBlobResponse_Done{
		Done: &seederpb.GetMetaInfoResponse{Metainfo: e.metaInfo, Size: e.size, Peers: s.peers(ctx)}}})
}

// relayAddr is where the caller of ctx relays a stream: its address with
// port, or nothing for a port out of range.
func relayAddr(ctx context.Context, port int32) netip.AddrPort {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil || port <= 0 || port > 65535 {
		return netip.AddrPort{}
	}
	ap, ok := addrPortOf(p.Addr)
	if !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr(), uint16(port))
}

// streamRest sends a caller that fell behind the origin the rest of the
// blob from the store: the hashes it lacks of the pieces it has, then the
// bytes from off on, each full piece followed by its hash (the
// metainfo's), as the origin fetch streams them. send paces and sends each
// part.
func (s *Server) streamRest(ctx context.Context, req *seederpb.GetMetaInfoRequest, e entry, off int64, hashes int, send func(*seederpb.StreamBlobResponse) error) error {
	dgst := digest.Digest(req.GetDigest())
	_, info, err := p2p.ParseMetaInfo(dgst, e.metaInfo)
	if err != nil {
		return s.restFailed(ctx, req, err)
	}
	size, pl, all := info.TotalLength(), info.PieceLength, info.Pieces
	hash := func(i int) error { return send(hashPart(all[i*sha1.Size : (i+1)*sha1.Size])) }
	for ; int64(hashes) < off/pl; hashes++ {
		if err := hash(hashes); err != nil {
			return err
		}
	}
	b, err := s.store.Open(ctx, dgst)
	if err != nil {
		return s.restFailed(ctx, req, err)
	}
	defer b.Close()
	buf := make([]byte, streamChunk)
	for off < size {
		// Up to the end of the piece, so that its hash follows its last
		// byte.
		n := min(int64(len(buf)), size-off, pl-off%pl)
		// ReadFull: a ReaderAt may return io.EOF with the last bytes.
		if _, err := io.ReadFull(io.NewSectionReader(b, off, n), buf[:n]); err != nil {
			return s.restFailed(ctx, req, err)
		}
		m := &seederpb.StreamBlobResponse{Part: &seederpb.StreamBlobResponse_Data{Data: buf[:n]}}
		if err := send(m); err != nil {
			return err
		}
		off += n
		if off%pl == 0 {
			if err := hash(int(off/pl - 1)); err != nil {
				return err
			}
		}
	}
	return nil
}

// restFailed logs why streamRest could not read the stored blob (or its
// metainfo) and returns the status the caller gets: Unavailable, on which
// it asks the next seeder.
func (s *Server) restFailed(ctx context.Context, req *seederpb.GetMetaInfoRequest, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "stream: cannot read the stored blob for a caller that fell behind the origin",
		slog.String("digest", req.GetDigest()), slog.Any("error", err))
	return status.Error(codes.Unavailable, "seeder: cannot read the stored blob")
}
