package seeder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
)

// StreamBlob implements p2p.StreamSource: it asks the first seeder in Rank
// order that is up for ref's blob as a stream (see StreamBlob in
// seeder.proto), telling it the caller relays on relayPort (0: not). It
// does not fail over: a caller whose stream does not
// start, or breaks off, asks MetaInfoWithPeers, which does. Errors are
// MetaInfo's; the stream ends when ctx does, or when the seeder is found
// down.
func (c *Client) StreamBlob(ctx context.Context, ref blob.Ref, relayPort int) (p2p.BlobStream, error) {
	if err := storage.ValidateDigest(ref.Digest); err != nil {
		return nil, fmt.Errorf("seeder: %w", err)
	}
	order, err := c.order(ctx, ref.Digest, map[string]bool{}, false)
	if err != nil {
		return nil, err
	}
	if len(order) == 0 {
		return nil, status.Error(codes.Unavailable, "seeder: no seeder to stream from")
	}
	s := order[0]
	g, ok := s.acquire()
	if !ok {
		return nil, fmt.Errorf("%w: removed from the seeder set", errLeft)
	}
	if err := waitReady(ctx, g.conn, c.opts.connectTimeout); err != nil {
		if ctx.Err() == nil {
			s.markDown()
		}
		s.release()
		return nil, err
	}
	sctx, cancel := context.WithCancelCause(ctx)
	// The stream ends with the seeder's connection: a seeder found down
	// or hung leaves the caller to ask the others.
	stop := context.AfterFunc(g.ctx, func() { cancel(context.Cause(g.ctx)) })
	context.AfterFunc(sctx, func() {
		stop()
		s.release()
	})
	st, err := g.stub.StreamBlob(sctx, &seederpb.GetMetaInfoRequest{
		Upstream:      ref.Upstream,
		Repository:    ref.Repository,
		Digest:        ref.Digest.String(),
		Authorization: ref.Authorization,
		RelayPort:     int32(relayPort),
	})
	if err != nil {
		cancel(nil)
		return nil, convertError(s.addr, status.Convert(err), err)
	}
	return &blobStream{c: c, s: s, ctx: sctx, cancel: cancel, st: st, dgst: ref.Digest}, nil
}

// blobStream is a StreamBlob call as a p2p.BlobStream.
type blobStream struct {
	c      *Client
	s      *seederConn
	ctx    context.Context
	cancel context.CancelCauseFunc
	st     grpc.ServerStreamingClient[seederpb.StreamBlobResponse]
	dgst   digest.Digest
	done   bool
}

// errNoAnswer reports a stream that ended without the seeder's answer.
var errNoAnswer = errors.New("seeder: stream ended without an answer")

func (b *blobStream) Recv() (p2p.StreamPart, error) {
	if b.done {
		return p2p.StreamPart{}, io.EOF
	}
	m, err := b.st.Recv()
	if err != nil {
		b.cancel(nil)
		if errors.Is(err, io.EOF) {
			return p2p.StreamPart{}, fmt.Errorf("seeder %s: %w", b.s.addr, errNoAnswer)
		}
		if c := context.Cause(b.ctx); c != nil && status.Code(err) == codes.Canceled {
			return p2p.StreamPart{}, fmt.Errorf("seeder %s: %w", b.s.addr, c)
		}
		return p2p.StreamPart{}, convertError(b.s.addr, status.Convert(err), err)
	}
	switch p := m.GetPart().(type) {
	case *seederpb.StreamBlobResponse_Header:
		h := &p2p.StreamHeader{Size: p.Header.GetSize(), PieceLength: p.Header.GetPieceLength(), RelayKey: p.Header.GetRelayKey()}
		if src := p.Header.GetSource(); src != "" {
			// Only an IP literal with a port: a name would let a seeder
			// steer the node's lookups.
			ap, err := netip.ParseAddrPort(src)
			if err != nil || !validPeer(ap) {
				return p2p.StreamPart{}, fmt.Errorf("seeder %s: relay source %q is not an IP address with a port", b.s.addr, src)
			}
			h.Source = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		return p2p.StreamPart{Header: h}, nil
	case *seederpb.StreamBlobResponse_Data:
		if len(p.Data) == 0 {
			return p2p.StreamPart{}, fmt.Errorf("seeder %s: empty data part", b.s.addr)
		}
		return p2p.StreamPart{Data: p.Data}, nil
	case *seederpb.StreamBlobResponse_PieceHash:
		return p2p.StreamPart{PieceHash: p.PieceHash}, nil
	case *seederpb.StreamBlobResponse_Done:
		b.done = true
		b.cancel(nil)
		mi, err := checkResponse(b.dgst, p.Done)
		if err != nil {
			b.c.log.WarnContext(b.ctx, "bad metainfo from seeder", "seeder", b.s.addr, "digest", b.dgst, "error", err)
			return p2p.StreamPart{}, fmt.Errorf("seeder %s: %w", b.s.addr, err)
		}
		b.s.refresh()
		var peers []netip.AddrPort
		if raw := p.Done.GetPeers(); len(raw) > 0 {
			peers = b.c.parsePeers(context.WithoutCancel(b.ctx), b.s.addr, raw)
		}
		return p2p.StreamPart{Done: &p2p.StreamDone{MetaInfo: mi, Seeder: b.s.addr, Peers: peers}}, nil
	default:
		return p2p.StreamPart{}, fmt.Errorf("seeder %s: a stream part of no known kind", b.s.addr)
	}
}
