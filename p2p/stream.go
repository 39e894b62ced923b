package p2p

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/directio"
	"github.com/eagle-p2p/eagle/internal/pace"
)

// StreamSource is a MetaInfoSource that can also stream a cold blob from
// the seeder that fetches it, as the bytes arrive from the origin
// (cut-through): the node hands them to its readers at the origin's pace
// instead of waiting for the seeder's whole fetch, and every byte still
// passes its piece hash first. *seeder.Client implements it.
type StreamSource interface {
	// StreamBlob asks for ref's blob as MetaInfoWithPeers does, with the
	// same authorization and errors, and returns its stream, which ends
	// when ctx does. relayPort is the node's peer port, on which it relays
	// what it is streamed to nodes the seeder sends to it (0: it does not;
	// see StreamHeader.Source). Like a metainfo call for a cold blob, a stream may
	// wait as long as the seeder's origin fetch takes: the source ends it
	// when its seeder stops answering (seeder.Client health-checks it).
	StreamBlob(ctx context.Context, ref blob.Ref, relayPort int) (BlobStream, error)
}

// BlobStream is one blob's stream from its seeder (see StreamPart).
type BlobStream interface {
	// Recv returns the stream's next part; io.EOF after the Done part.
	Recv() (StreamPart, error)
}

// StreamPart is one part of a BlobStream; exactly one field is set. A
// seeder that streams the blob sends a Header, then Data and PieceHash
// parts, then Done once the whole blob matched its digest; one that holds
// the blob already, or streams it to others, sends Done alone.
type StreamPart struct {
	// Header describes the blob about to be streamed.
	Header *StreamHeader
	// Data is the blob's next bytes.
	Data []byte
	// PieceHash is the SHA-1 of the next full-length piece, all of whose
	// bytes came before it. A short last piece's is only in the metainfo.
	PieceHash []byte
	// Done is the seeder's answer, as MetaInfoWithPeers gives it.
	Done *StreamDone
}

// StreamHeader describes a streamed blob.
type StreamHeader struct {
	// Size is the blob's length in bytes.
	Size int64
	// PieceLength is the piece length of the metainfo the stream ends
	// with.
	PieceLength int64
	// Source, when valid, is the node the blob's bytes come from instead
	// of the stream, which then carries the piece hashes only: a node
	// streamed them itself, which relays them under RelayKey on its peer
	// port as it verifies them.
	Source netip.AddrPort
	// RelayKey is what this node relays the blob under to the nodes the
	// seeder sends to it.
	RelayKey []byte
}

// StreamDone is a stream's last part: the blob's metainfo, the seeder that
// answered and peers that hold the blob.
type StreamDone struct {
	MetaInfo []byte
	Seeder   string
	Peers    []netip.AddrPort
}

// errStreamProtocol reports a stream that broke its protocol.
var errStreamProtocol = errors.New("p2p: seeder stream out of protocol")

// openStream asks ss for ref's blob. It returns the seeder's answer when
// that is all the stream holds, or the stream and its header. A stream
// that could not start (an old seeder, a seeder down) leaves ok false and
// no error: the caller asks the seeders as it would without a stream. An
// error is the seeder's refusal, which asking again would repeat.
func (e *Engine) openStream(ctx context.Context, ref blob.Ref, ss StreamSource) (st BlobStream, hdr *StreamHeader, ans seederAnswer, ok bool, err error) {
	st, err = ss.StreamBlob(ctx, ref, e.relayPort())
	var first StreamPart
	if err == nil {
		first, err = st.Recv()
	}
	switch {
	case err != nil && definitive(err):
		return nil, nil, seederAnswer{}, false, fmt.Errorf("p2p: metainfo for %s: %w", ref.Digest, err)
	case err != nil:
		e.log.Debug("no stream from the seeder; asking for the metainfo", "digest", ref.Digest, "err", err)
		return nil, nil, seederAnswer{}, false, nil
	case first.Done != nil:
		return nil, nil, seederAnswer{mi: first.Done.MetaInfo, seeder: first.Done.Seeder, peers: first.Done.Peers}, true, nil
	case first.Header == nil:
		e.log.Warn("seeder stream did not start with a header; asking for the metainfo", "digest", ref.Digest)
		return nil, nil, seederAnswer{}, false, nil
	}
	h := first.Header
	if h.Size <= 0 || h.PieceLength < PieceLength(h.Size) || h.PieceLength > MaxPieceLength || h.PieceLength&(h.PieceLength-1) != 0 {
		e.log.Warn("seeder stream header out of shape; asking for the metainfo", "digest", ref.Digest, "size", h.Size, "piece_length", h.PieceLength)
		return nil, nil, seederAnswer{}, false, nil
	}
	return st, h, seederAnswer{}, true, nil
}

// definitive reports whether a seeder's error answers for the blob itself
// (the origin refused, has no such blob, or sent other bytes), so that
// asking again would only repeat it.
func definitive(err error) bool {
	var oe *blob.OriginError
	return errors.As(err, &oe) || errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrDigestMismatch) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// streamed is what a stream left: the seeder's answer, when it got that
// far, the hashes of the pieces it verified, in order, and a last piece
// whose bytes came but whose hash is only in the metainfo.
type streamed struct {
	ans    seederAnswer
	hashes []byte
	last   []byte
}

// receive writes the stream's pieces into ent's data as each passes the
// hash the seeder sent for it, until the stream's Done part or its error.
// Stream bytes count against the download limit.
// A relayed download's stream carries no data: its hashes go to hs.
func (e *Engine) receive(ctx context.Context, ent *entry, st BlobStream, hs *pieceHashes) (streamed, error) {
	d := ent.data
	var out streamed
	buf := directio.Buffer(int(d.pieceLen))[:0]
	pieceSize := func(i int) int { return int(min(d.pieceLen, d.size-int64(i)*d.pieceLen)) }
	i := 0
	for {
		p, err := st.Recv()
		if err != nil {
			if c := context.Cause(ctx); c != nil {
				err = fmt.Errorf("%w (%w)", err, c)
			}
			return out, err
		}
		switch {
		case hs != nil && p.PieceHash != nil:
			if i >= len(d.complete) || len(p.PieceHash) != sha1.Size {
				return out, fmt.Errorf("%w: hash of piece %d", errStreamProtocol, i)
			}
			hs.add(p.PieceHash)
			out.hashes = append(out.hashes, p.PieceHash...)
			i++
		case hs != nil && p.Data != nil:
			return out, fmt.Errorf("%w: data in a relayed stream", errStreamProtocol)
		case p.Data != nil:
			if i >= len(d.complete) || len(buf)+len(p.Data) > pieceSize(i) {
				return out, fmt.Errorf("%w: data past piece %d", errStreamProtocol, i)
			}
			if err := pace.Wait(ctx, e.downLimit, len(p.Data)); err != nil {
				return out, err
			}
			buf = append(buf, p.Data...)
			e.fromSeeders.Add(int64(len(p.Data)))
			e.streamed.Add(int64(len(p.Data)))
		case p.PieceHash != nil:
			if i >= len(d.complete) || len(buf) != pieceSize(i) || len(p.PieceHash) != sha1.Size {
				return out, fmt.Errorf("%w: hash of piece %d after %d of its bytes", errStreamProtocol, i, len(buf))
			}
			if sum := sha1.Sum(buf); !bytes.Equal(sum[:], p.PieceHash) {
				return out, fmt.Errorf("%w: piece %d does not match its hash", errStreamProtocol, i)
			}
			_, spare, err := d.writeVerified(i, buf, false)
			if err != nil {
				return out, err
			}
			out.hashes = append(out.hashes, p.PieceHash...)
			buf = spare[:0]
			i++
		case p.Done != nil:
			out.ans = seederAnswer{mi: p.Done.MetaInfo, seeder: p.Done.Seeder, peers: p.Done.Peers}
			if i == len(d.complete)-1 && len(buf) == pieceSize(i) {
				out.last = buf
			}
			return out, nil
		default:
			return out, fmt.Errorf("%w: a part that is neither data, hash nor done", errStreamProtocol)
		}
	}
}

// confirm checks what a stream left against the blob's metainfo: the
// shape the header promised, and every piece hash the stream sent. It
// then verifies and writes the last piece, if the stream carried its bytes.
func (s *streamed) confirm(d *blobData, info *metainfo.Info) error {
	if info.Length != d.size || info.PieceLength != d.pieceLen {
		return fmt.Errorf("%w: metainfo of %d bytes in pieces of %d, stream of %d in %d", errStreamProtocol, info.Length, info.PieceLength, d.size, d.pieceLen)
	}
	if !bytes.HasPrefix(info.Pieces, s.hashes) {
		return fmt.Errorf("%w: piece hashes differ from the metainfo's", errStreamProtocol)
	}
	if s.last == nil {
		return nil
	}
	i := len(d.complete) - 1
	if sum := sha1.Sum(s.last); !bytes.Equal(sum[:], info.Pieces[i*sha1.Size:(i+1)*sha1.Size]) {
		return fmt.Errorf("%w: last piece does not match its hash", errStreamProtocol)
	}
	_, _, err := d.writeVerified(i, s.last, false)
	return err
}

// streamDownload runs a download that starts as a stream from the seeder
// fetching the blob (see StreamSource): readers get each piece as soon as
// it passes its hash, and the digest is computed as the pieces come.
// When the stream breaks off, the download asks the seeders and takes the
// pieces it lacks from the swarm, keeping those the metainfo confirms.
func (e *Engine) streamDownload(ctx context.Context, ent *entry, ref blob.Ref, ss StreamSource) error {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	st, hdr, ans, ok, err := e.openStream(sctx, ref, ss)
	switch {
	case err != nil:
		return err
	case !ok:
		if ans, err = e.askSeeder(ctx, ref); err != nil {
			return err
		}
		return e.swarmDownload(ctx, ent, ref, ans)
	case st == nil:
		return e.swarmDownload(ctx, ent, ref, ans)
	}
	release, err := e.prepare(ctx, ent, ref, hdr.Size, hdr.PieceLength)
	if err != nil {
		return err
	}
	defer release()
	e.setRelayKey(ent, hdr.RelayKey)
	close(ent.ready)

	// A node chained behind another takes the bytes from it, and the
	// hashes from the stream.
	var hs *pieceHashes
	var relayed atomic.Int64
	relayDone := make(chan error, 1)
	stopRelay := func() {}
	if hdr.Source.IsValid() && e.direct != nil && !e.cfg.DisableDirect {
		hs = newPieceHashes()
		var rctx context.Context
		rctx, stopRelay = context.WithCancel(ctx)
		go func() { relayDone <- e.relayFrom(rctx, ent, hdr.Source, hdr.RelayKey, hs, &relayed) }()
		defer func() {
			stopRelay()
			<-relayDone
		}()
		e.log.Debug("download relayed from a node streamed before", "digest", ref.Digest, "source", hdr.Source, "size", hdr.Size)
	} else {
		close(relayDone)
		e.log.Debug("download streamed from its seeder", "digest", ref.Digest, "size", hdr.Size, "pieces", len(ent.data.complete))
	}

	// The digest is computed as pieces complete, stream or swarm. A
	// commit that fails (a full disk) ends the stream too.
	var commitErr error
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		if commitErr = e.commit(ctx, ent, ref); commitErr != nil {
			cancel(commitErr)
		}
	}()
	fail := func(err error) error {
		ent.data.fail(err)
		<-committed
		if commitErr != nil {
			return commitErr
		}
		return err
	}

	got, err := e.receive(sctx, ent, st, hs)
	cancel(nil)
	if err != nil {
		select {
		case <-committed:
			if commitErr != nil {
				return commitErr
			}
		default:
		}
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		if hs == nil {
			// Streamed: the next seeder (the first one's fetch died with
			// it) may stream the blob again, and the nodes relayed from this
			// one go on getting it in order.
			again, err2 := e.streamAgain(ctx, ent, ref, ss, hdr)
			switch {
			case err2 != nil && definitive(err2):
				return fail(err2)
			case err2 == nil:
				e.log.Warn("the seeder's stream broke off; streamed again from the next seeder", "digest", ref.Digest, "err", err)
				got, err = again, nil
			}
		}
		if err != nil {
			e.log.Warn("the seeder's stream broke off; asking the seeders and taking the rest from the swarm",
				"digest", ref.Digest, "pieces", len(got.hashes)/sha1.Size, "of", len(ent.data.complete), "err", err)
			if got.ans, err = e.askSeeder(ctx, ref); err != nil {
				return fail(err)
			}
		}
	}
	mi, info, err := ParseMetaInfo(ref.Digest, got.ans.mi)
	if err != nil {
		return fail(err)
	}
	if err := got.confirm(ent.data, &info); err != nil {
		return fail(fmt.Errorf("p2p: download %s: %w", ref.Digest, err))
	}
	if hs == nil {
		if ent.data.left() == 0 {
			// Streamed whole while the others that asked waited for the
			// metainfo: they all start empty, as from a seeder, and a
			// node that told each of them it has every piece would be
			// asked by all for the same pieces.
			e.super.add(mi.HashInfoBytes(), info.NumPieces())
		}
		stop, err := e.joinSwarm(ent, ref, got.ans, mi, &info)
		if err != nil {
			e.super.remove(mi.HashInfoBytes())
			return fail(err)
		}
		defer stop()
	} else {
		// Every piece's hash, the short last one's included. The node
		// joins the swarm at once, to serve what it has, but takes nothing
		// from it while the relay brings bytes: the relay is a few pieces
		// behind the seeder's fetch when it keeps up.
		hs.set(info.Pieces)
		if err := e.addToSwarm(ent, ref, got.ans, mi, true); err != nil {
			return fail(err)
		}
		e.awaitRelay(ctx, ref, hdr.Source, &relayed, relayDone, committed)
		// From here the swarm brings what is left: a relay that comes
		// back would only bring the same pieces twice.
		stopRelay()
		ent.torrent().DownloadAll()
		defer e.startDirect(ent, got.ans, &info)()
	}
	<-committed
	if commitErr != nil {
		return commitErr
	}
	e.keepMetaInfo(ref.Digest, got.ans.mi)
	e.log.Debug("download complete", "digest", ref.Digest, "streamed", len(got.hashes) == len(info.Pieces))
	return nil
}

// streamAgain asks ss for the blob of a stream that broke off, and
// receives it again into ent's data if the answer is a stream of the same
// shape (pieces it holds already are not written twice), or is the answer
// alone. Any other answer is an error that is not definitive: the caller
// asks the seeders.
func (e *Engine) streamAgain(ctx context.Context, ent *entry, ref blob.Ref, ss StreamSource, hdr *StreamHeader) (streamed, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	st, h, ans, ok, err := e.openStream(sctx, ref, ss)
	switch {
	case err != nil:
		return streamed{}, err
	case !ok:
		return streamed{}, errors.New("p2p: no stream from the next seeder")
	case st == nil:
		return streamed{ans: ans}, nil
	case h.Source.IsValid() || h.Size != hdr.Size || h.PieceLength != hdr.PieceLength:
		return streamed{}, fmt.Errorf("%w: the next seeder's stream is of another shape", errStreamProtocol)
	}
	e.setRelayKey(ent, h.RelayKey)
	return e.receive(sctx, ent, st, nil)
}

// awaitRelay returns once a relayed download's relay has ended, brought
// nothing for relayIdle (got counts what it brought: pieces a reader had
// the wire fetch do not count), or the download is complete.
func (e *Engine) awaitRelay(ctx context.Context, ref blob.Ref, src netip.AddrPort, got *atomic.Int64, relayDone chan error, committed <-chan struct{}) {
	tick := time.NewTicker(relayIdle / 4)
	defer tick.Stop()
	last, moved := got.Load(), time.Now()
	for {
		select {
		case err := <-relayDone:
			if err != nil {
				e.log.Warn("relay ended early; taking the rest from the swarm", "digest", ref.Digest, "source", src, "err", err)
			}
			relayDone <- err
			return
		case <-committed:
			return
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if n := got.Load(); n > last {
				last, moved = n, now
			} else if now.Sub(moved) >= relayIdle {
				e.log.Info("relay brought nothing for a while; taking the rest from the swarm beside it", "digest", ref.Digest, "source", src,
					"relayed", n, "idle", relayIdle)
				return
			}
		}
	}
}
