package seeder

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"

	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
)

// streamQueueBytes bounds the bytes of one origin fetch queued for one
// streaming caller. A caller that falls this far behind the origin is
// dropped: it gets no more bytes, and the answer once the fetch is done,
// like any other caller. The fetch never waits for a caller, and a slow
// one holds this much memory at most.
const streamQueueBytes = 32 << 20

// streamQueueParts bounds the parts queued for one caller, whatever their
// size.
const streamQueueParts = 4096

// tap hands the bytes of one origin fetch, as they arrive, to the callers
// streaming it (StreamBlob): at most fanout of them, each of whom asked
// before the first byte arrived. Its methods are safe on a nil tap, which
// streams to nobody.
type tap struct {
	fanout  int
	mu      sync.Mutex
	started bool
	subs    []*subscriber
}

func newTap(fanout int) *tap {
	if fanout <= 0 {
		return nil
	}
	return &tap{fanout: fanout}
}

// subscriber is one streaming caller's queue.
type subscriber struct {
	parts   chan *seederpb.StreamBlobResponse
	queued  atomic.Int64
	dropped chan struct{}
	once    sync.Once
	// sent counts the bytes StreamBlob sent; its goroutine's own.
	sent int64
}

func newSubscriber() *subscriber {
	return &subscriber{parts: make(chan *seederpb.StreamBlobResponse, streamQueueParts), dropped: make(chan struct{})}
}

func (s *subscriber) drop() { s.once.Do(func() { close(s.dropped) }) }

// join adds s to the callers the fetch streams to, unless the fetch has
// started or streams to fanout callers already.
func (t *tap) join(s *subscriber) {
	if t == nil || s == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started && len(t.subs) < t.fanout && !slices.Contains(t.subs, s) {
		t.subs = append(t.subs, s)
	}
}

// begin marks the fetch started, so no caller joins from here on, and
// sends those who did the header.
func (t *tap) begin(size, pieceLen int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started = true
	t.publishLocked(&seederpb.StreamBlobResponse{Part: &seederpb.StreamBlobResponse_Header{
		Header: &seederpb.BlobHeader{Size: size, PieceLength: pieceLen}}}, 0)
}

// active reports whether anyone still listens.
func (t *tap) active() bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.subs) > 0
}

func (t *tap) publish(m *seederpb.StreamBlobResponse, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.publishLocked(m, n)
}

// publishLocked queues m, which carries n blob bytes, for every caller,
// and drops those whose queue is full.
func (t *tap) publishLocked(m *seederpb.StreamBlobResponse, n int) {
	t.subs = slices.DeleteFunc(t.subs, func(s *subscriber) bool {
		select {
		case <-s.dropped:
			return true
		default:
		}
		if s.queued.Load()+int64(n) > streamQueueBytes {
			s.drop()
			return true
		}
		s.queued.Add(int64(n))
		select {
		case s.parts <- m:
			return false
		default:
			s.queued.Add(-int64(n))
			s.drop()
			return true
		}
	})
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
	if !w.t.active() {
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
		w.t.publish(&seederpb.StreamBlobResponse{Part: &seederpb.StreamBlobResponse_Data{Data: bytes.Clone(seg)}}, len(seg))
		if w.off%pl == 0 {
			h := w.ih.PieceHashes()
			w.t.publish(&seederpb.StreamBlobResponse{Part: &seederpb.StreamBlobResponse_PieceHash{PieceHash: bytes.Clone(h[len(h)-20:])}}, 0)
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
	sub := newSubscriber()
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
	}()
	send := func(m *seederpb.StreamBlobResponse) error {
		if d := m.GetData(); d != nil {
			sub.queued.Add(-int64(len(d)))
			if err := waitLimit(ctx, s.upLimit, len(d)); err != nil {
				return err
			}
			s.streamedBytes.Add(int64(len(d)))
			sub.sent += int64(len(d))
		}
		return stream.Send(m)
	}
	for {
		select {
		case m := <-sub.parts:
			if err := send(m); err != nil {
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
	// The fill queued every part before it ended. A caller dropped for
	// falling behind gets what was queued before, which runs on without a
	// gap, and then the answer: the swarm brings it the rest. It waits for
	// the answer on this call, not on a new one, so that the fill never
	// finds itself without a caller and cancelled meanwhile.
	select {
	case <-sub.dropped:
		s.log.WarnContext(ctx, "a streaming caller fell behind the origin; it got the answer alone and takes the rest from the swarm",
			"caller", callerOf(ctx), "digest", req.GetDigest(), "streamed_bytes", sub.sent)
	default:
	}
	for {
		select {
		case m := <-sub.parts:
			if err := send(m); err != nil {
				return err
			}
			continue
		default:
		}
		break
	}
	return stream.Send(&seederpb.StreamBlobResponse{Part: &seederpb.StreamBlobResponse_Done{
		Done: &seederpb.GetMetaInfoResponse{Metainfo: e.metaInfo, Size: e.size, Peers: s.peers(ctx)}}})
}

// waitLimit waits until l lets n bytes through; a nil l lets everything.
func waitLimit(ctx context.Context, l *rate.Limiter, n int) error {
	if l == nil {
		return nil
	}
	for n > 0 {
		step := min(n, l.Burst())
		if err := l.WaitN(ctx, step); err != nil {
			return err
		}
		n -= step
	}
	return nil
}
