package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/storage"
)

// emptyDigest is the digest of the empty blob, which no torrent can describe.
var emptyDigest = digest.SHA256.FromBytes(nil)

// authorize asks the Authorizer whether ref's credentials may read its
// blob.
func (e *Engine) authorize(ctx context.Context, ref blob.Ref) error {
	if e.cfg.SkipAuthorization {
		return nil
	}
	if err := e.cfg.Authorizer.Authorize(ctx, ref); err != nil {
		return fmt.Errorf("p2p: %s: %w", ref.Digest, err)
	}
	return nil
}

// Stat returns the blob's size, from the local store or from its metainfo,
// once the Authorizer let ref's credentials read it.
func (e *Engine) Stat(ctx context.Context, ref blob.Ref) (int64, error) {
	if err := storage.ValidateDigest(ref.Digest); err != nil {
		return 0, err
	}
	if err := e.authorize(ctx, ref); err != nil {
		return 0, err
	}
	if ref.Digest == emptyDigest {
		return 0, nil
	}
	e.mu.Lock()
	ent := e.blobs[ref.Digest]
	e.mu.Unlock()
	if ent != nil {
		select {
		case <-ent.ready:
			if ent.err == nil {
				return ent.size, nil
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if info, err := e.store.Stat(ctx, ref.Digest); err == nil {
		return info.Size, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return 0, fmt.Errorf("p2p: stat %s: %w", ref.Digest, err)
	}
	ans, ok := e.metaCache.Get(ref.Digest)
	if !ok {
		var err error
		if ans, err = e.askSeeder(ctx, ref); err != nil {
			return 0, err
		}
	}
	_, info, err := ParseMetaInfo(ref.Digest, ans.mi)
	if err != nil {
		return 0, err
	}
	e.metaCache.Add(ref.Digest, ans)
	return info.Length, nil
}

// seederAnswer is what a seeder said about a blob: its metainfo, the
// seeder that answered (when the source tells) and peers that hold it.
type seederAnswer struct {
	mi     []byte
	seeder string
	peers  []netip.AddrPort
}

// PeerSource is a MetaInfoSource that also names the seeder that answered
// and the peer-wire addresses of peers that hold the blob, so that a node
// reaches the swarm with no tracker at all. *seeder.Client implements it.
type PeerSource interface {
	MetaInfoWithPeers(ctx context.Context, ref blob.Ref) (mi []byte, seeder string, peers []netip.AddrPort, err error)
}

// HealthSource tells when a seeder stops answering, so that a download
// that depends on it asks the others at once. *seeder.Client implements
// it.
type HealthSource interface {
	// Unhealthy returns a channel closed when the seeder at addr is not
	// (or no longer) healthy.
	Unhealthy(addr string) <-chan struct{}
}

// askSeeder asks the metainfo source, which makes sure some seeder holds
// (and seeds) the blob.
func (e *Engine) askSeeder(ctx context.Context, ref blob.Ref) (seederAnswer, error) {
	if e.src == nil {
		return seederAnswer{}, fmt.Errorf("%w: %s (this engine has no metainfo source)", blob.ErrNotFound, ref.Digest)
	}
	var ans seederAnswer
	var err error
	if ps, ok := e.src.(PeerSource); ok {
		ans.mi, ans.seeder, ans.peers, err = ps.MetaInfoWithPeers(ctx, ref)
	} else {
		ans.mi, err = e.src.MetaInfo(ctx, ref)
	}
	if err != nil {
		return seederAnswer{}, fmt.Errorf("p2p: metainfo for %s: %w", ref.Digest, err)
	}
	return ans, nil
}

// Fetch returns the blob ref names, once the Authorizer let ref's
// credentials read it: from the local store when it is there, else through
// the swarm. A swarm fetch returns as soon as the download has
// started; reads block until the bytes they need have passed their piece
// hash, and the last byte is released only after the whole blob passed its
// digest. Concurrent fetches of one blob share one download. The download
// goes on when the caller goes away: the blob is cached for the next one.
func (e *Engine) Fetch(ctx context.Context, ref blob.Ref) (blob.Reader, error) {
	if err := storage.ValidateDigest(ref.Digest); err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, ref); err != nil {
		return nil, err
	}
	if ref.Digest == emptyDigest {
		return &emptyBlob{}, nil
	}
	for {
		e.mu.Lock()
		if e.ctx.Err() != nil {
			e.mu.Unlock()
			return nil, fmt.Errorf("p2p: engine closed: %w", e.ctx.Err())
		}
		ent := e.blobs[ref.Digest]
		if ent == nil {
			if b, err := e.openStored(ctx, ref.Digest); err == nil || !errors.Is(err, storage.ErrNotFound) {
				e.mu.Unlock()
				return b, err
			}
			ent = &entry{dgst: ref.Digest, ready: make(chan struct{}), done: make(chan struct{})}
			e.blobs[ref.Digest] = ent
			e.wg.Add(1)
			go e.download(ent, ref)
		}
		e.mu.Unlock()
		select {
		case <-ent.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("p2p: fetch %s: %w", ref.Digest, ctx.Err())
		}
		if ent.err != nil {
			return nil, ent.err
		}
		if b, err := e.openStored(ctx, ref.Digest); err == nil {
			return b, nil
		}
		select {
		case <-ent.done:
			if ent.doneErr != nil {
				return nil, ent.doneErr
			}
			// Committed, but gone from the store since (deleted behind the
			// engine's back): leave its swarm and start over.
			e.forget(ref.Digest, ent)
			continue
		default:
		}
		return &swarmBlob{ctx: ctx, ent: ent, closed: make(chan struct{}), unpin: e.pin(ref.Digest)}, nil
	}
}

func (e *Engine) openStored(ctx context.Context, dgst digest.Digest) (blob.Reader, error) {
	unpin := e.pin(dgst)
	b, err := e.store.Open(ctx, dgst)
	if err != nil {
		unpin()
		return nil, err
	}
	return &storedBlob{SectionReader: io.NewSectionReader(b, 0, b.Size()), b: b, unpin: unpin}, nil
}

// download runs one blob's download to its end; it owns ent.
func (e *Engine) download(ent *entry, ref blob.Ref) {
	defer e.wg.Done()
	err := e.runDownload(ent, ref)
	e.metrics.downloadEnded(err, e.ctx.Err() != nil)
	if err != nil {
		e.log.Warn("download failed", "digest", ref.Digest, "err", err)
		ent.doneErr = err
		e.remove(ent, err)
	}
	close(ent.done)
}

func (e *Engine) runDownload(ent *entry, ref blob.Ref) error {
	ctx := e.ctx
	// Metainfo that a Stat left for this download is used once: a later
	// download (after a failure or an eviction) asks a seeder again, which
	// also makes sure a seeder still holds the blob.
	ans, ok := e.metaCache.Peek(ref.Digest)
	switch {
	case ok:
		e.metaCache.Remove(ref.Digest)
	case e.stream != nil:
		return e.streamDownload(ctx, ent, ref, e.stream)
	default:
		var err error
		if ans, err = e.askSeeder(ctx, ref); err != nil {
			return err
		}
	}
	return e.swarmDownload(ctx, ent, ref, ans)
}

// swarmDownload downloads a blob from the swarm that ans leads to.
func (e *Engine) swarmDownload(ctx context.Context, ent *entry, ref blob.Ref, ans seederAnswer) error {
	mi, info, err := ParseMetaInfo(ref.Digest, ans.mi)
	if err != nil {
		return err
	}
	release, err := e.prepare(ctx, ent, ref, info.Length, info.PieceLength)
	if err != nil {
		return err
	}
	defer release()
	ent.data.setChain(newPieceChain(ref.Digest, ans.mi, &info))
	stop, err := e.joinSwarm(ent, ref, ans, mi, &info)
	if err != nil {
		return err
	}
	defer stop()
	close(ent.ready)
	e.log.Debug("download started", "digest", ref.Digest, "size", info.Length, "pieces", info.NumPieces(), "seeder", ans.seeder)
	if err := e.commit(ctx, ent, ref); err != nil {
		return err
	}
	e.keepMetaInfo(ref.Digest, ans.mi)
	e.log.Debug("download complete", "digest", ref.Digest)
	return nil
}

// prepare makes room in the cache for a download of size bytes and gives
// ent its partial file, in pieces of pieceLen. The returned func gives
// back what the cache reserved; committing the blob turns the reservation
// into the blob's own accounting.
func (e *Engine) prepare(ctx context.Context, ent *entry, ref blob.Ref, size, pieceLen int64) (release func(), err error) {
	release = func() {}
	if e.cache != nil {
		if err := e.cache.Reserve(ctx, ref.Digest, size); err != nil {
			return nil, fmt.Errorf("p2p: cache %s: %w", ref.Digest, err)
		}
		release = func() { e.cache.Release(ref.Digest) }
	}
	f, err := os.OpenFile(filepath.Join(partialDir(e.cfg.DataDir), ref.Digest.Encoded()), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		release()
		return nil, fmt.Errorf("p2p: partial file: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(f.Name())
		release()
		return nil, fmt.Errorf("p2p: partial file: %w", err)
	}
	ent.size = size
	ent.data = newPartialData(size, pieceLen, f)
	return release, nil
}

// joinSwarm adds ent's torrent over its data, announces it and starts
// its direct transfers; the returned func stops them.
func (e *Engine) joinSwarm(ent *entry, ref blob.Ref, ans seederAnswer, mi *metainfo.MetaInfo, info *metainfo.Info) (stop func(), err error) {
	if err := e.addToSwarm(ent, ref, ans, mi, false); err != nil {
		return nil, err
	}
	return e.startDirect(ent, ans, info), nil
}

// addToSwarm adds ent's torrent over its data and announces it. With
// hold, the torrent serves its pieces but wants none until DownloadAll
// (anacrolix's DisallowDataDownload panics on its own consistency check
// in v1.61.0).
func (e *Engine) addToSwarm(ent *entry, ref blob.Ref, ans seederAnswer, mi *metainfo.MetaInfo, hold bool) error {
	t, err := e.addTorrent(mi, ent.data, hold)
	if err != nil {
		return err
	}
	ent.t.Store(t)
	// A failed write (a full disk) ends the download with that error; by
	// default anacrolix would only stop downloading and leave readers
	// waiting.
	t.SetOnWriteChunkError(func(err error) {
		ent.data.fail(fmt.Errorf("p2p: write %s: %w", ref.Digest, err))
	})
	ent.setSeeder(ans.seeder)
	// The seeder's own peer address: the swarm is reachable even when no
	// tracker answers. A host with a location takes its peers from the
	// trackers, whose topology policy knows who is near, and keeps the
	// seeder's for when they fail or the download stalls.
	if e.cfg.Location != "" && !hold {
		ent.hold(ans.peers)
	} else {
		addPeers(t, ans.peers)
	}
	e.startAnnouncing(ent)
	return nil
}

// startDirect starts ent's direct transfers, unless they are off; the
// returned func stops them.
func (e *Engine) startDirect(ent *entry, ans seederAnswer, info *metainfo.Info) (stop func()) {
	if e.direct == nil || e.cfg.DisableDirect {
		return func() {}
	}
	dctx, cancel := context.WithCancel(e.ctx)
	given := ans.peers
	if e.cfg.Location != "" {
		// Held back with the wire's (see addToSwarm): once released, the
		// seeder is a connected peer holding every piece, which direct
		// transfers take from too.
		given = nil
	}
	run := &directRun{c: e.direct, ent: ent, info: info, given: given, sources: make(map[netip.AddrPort]*directSource)}
	var wg sync.WaitGroup
	wg.Go(func() { run.run(dctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// commit stores the blob as its verified pieces complete, in order: a
// store that can adopts the partial file once the pieces hash to the
// digest (see adopt); any other gets a copy, whose Commit checks the
// digest. Then it switches the torrent's reads to the committed blob.
func (e *Engine) commit(ctx context.Context, ent *entry, ref blob.Ref) error {
	if a, ok := e.store.(storage.Adopter); ok && a.CanAdopt(partialDir(e.cfg.DataDir)) {
		err := e.adopt(ctx, a, ent, ref)
		if !errors.Is(err, storage.ErrCannotAdopt) {
			if err != nil {
				return err
			}
			return e.switchToStore(ctx, ent)
		}
		e.log.Debug("the store cannot adopt the download; copying it", "digest", ent.dgst, "err", err)
	}
	w, err := e.store.Create(ctx, ent.dgst)
	if err != nil {
		return fmt.Errorf("p2p: store %s: %w", ent.dgst, err)
	}
	defer w.Cancel()
	for i := range ent.data.complete {
		if err := e.waitPiece(ctx, ent, ref, i); err != nil {
			return fmt.Errorf("p2p: download %s: %w", ent.dgst, err)
		}
		if err := ent.data.copyPiece(w, i); err != nil {
			return fmt.Errorf("p2p: store %s: %w", ent.dgst, err)
		}
	}
	if _, err := w.Commit(ctx); err != nil {
		if errors.Is(err, storage.ErrDigestMismatch) {
			return fmt.Errorf("%w: %s: %v", blob.ErrDigestMismatch, ent.dgst, err)
		}
		return fmt.Errorf("p2p: store %s: %w", ent.dgst, err)
	}
	return e.switchToStore(ctx, ent)
}

// adopt hashes the pieces in order as they complete, then hands the
// partial file itself to the store, so the blob is written to disk once.
// Each piece is sealed before it is hashed: it stays complete, and no
// byte is written into a complete piece, so the file holds the bytes that
// were hashed. With a piece chain (see pieceChain) it hashes
// only the pieces that did not pass the chain when they arrived (those
// from the peer wire, checked by their SHA-1), each from the chain's
// state before it, and the last piece from there into the digest.
func (e *Engine) adopt(ctx context.Context, a storage.Adopter, ent *entry, ref blob.Ref) error {
	d := ent.data
	chain := d.pieceChain()
	v, err := storage.NewVerifier(ent.dgst)
	if err != nil {
		return err
	}
	var flushed int64
	for i := range d.complete {
		// Sealed, the piece's bytes are the ones hashed (see seal).
		for sealed := false; !sealed; sealed = d.seal(i) {
			if err := e.waitPiece(ctx, ent, ref, i); err != nil {
				return fmt.Errorf("p2p: download %s: %w", ent.dgst, err)
			}
		}
		switch {
		case chain == nil:
			err = d.copyPiece(v, i)
		case i == len(d.complete)-1:
			if v, err = chain.verifier(); err == nil {
				err = d.copyPiece(v, i)
			}
		case !d.isChained(i):
			h := chain.before(i)
			if err = d.copyPiece(h, i); err == nil && !chain.reached(i, h) {
				return fmt.Errorf("%w: %s: piece %d does not match the blob's SHA-256 at its end", blob.ErrDigestMismatch, ent.dgst, i)
			}
		}
		if err != nil {
			return fmt.Errorf("p2p: hash %s: %w", ent.dgst, err)
		}
		if end := min(int64(i+1)*d.pieceLen, d.size); end-flushed >= writebackEvery {
			d.startWriteback(flushed, end-flushed)
			flushed = end
		}
	}
	if err := v.Verify(); err != nil {
		return fmt.Errorf("%w: %s: %v", blob.ErrDigestMismatch, ent.dgst, err)
	}
	if _, err := a.Adopt(ctx, ent.data.partialName(), v); err != nil {
		if errors.Is(err, storage.ErrCannotAdopt) {
			return err
		}
		return fmt.Errorf("p2p: store %s: %w", ent.dgst, err)
	}
	return nil
}

// writebackEvery is how many hashed bytes of a download pile up before
// the engine asks the kernel to start writing them to disk, so that the
// fsync when the store adopts the file does not wait for a whole large
// blob.
const writebackEvery = 8 << 20

// switchToStore switches the torrent's reads from the partial file to the
// committed blob.
func (e *Engine) switchToStore(ctx context.Context, ent *entry) error {
	blob, err := e.store.Open(ctx, ent.dgst)
	if err != nil {
		return fmt.Errorf("p2p: reopen %s: %w", ent.dgst, err)
	}
	if err := ent.data.commit(blob); err != nil {
		// The blob is committed and served; only the partial file's
		// clean-up failed.
		e.log.Warn("removing partial download", "digest", ent.dgst, "err", err)
	}
	return nil
}

// reaskAfter is how long a download may go without a verified piece
// before the engine asks the seeders again. That is cheap while the seeder
// that holds the blob lives: it answers from its cache, and its peer
// address comes back with the answer, so a node that lost its peers (or
// never heard of any from a tracker) finds the swarm again. When that
// seeder is gone the next one in rank fetches the blob from the origin
// and seeds it: one more origin copy, not one per node.
const reaskAfter = 3 * time.Second

// waitPiece waits for piece i of ent. When the swarm goes quiet (no piece
// for reaskAfter) or the seeder the blob came from stops answering, it
// asks the seeders again, adds the peers they name, and keeps waiting.
func (e *Engine) waitPiece(ctx context.Context, ent *entry, ref blob.Ref, i int) error {
	idle := 0   // reask intervals in a row without a verified piece
	waited := 0 // reask intervals waited on piece i
	for {
		leftBefore := ent.data.left()
		wctx, cancel := context.WithTimeout(ctx, reaskAfter)
		var seederGone atomic.Bool
		hs, ok := e.src.(HealthSource)
		var gone <-chan struct{}
		addr := ent.seeder()
		if ok && addr != "" {
			gone = hs.Unhealthy(addr)
			// A seeder whose loss the download already acted on is not
			// watched while it stays down: its channel is closed, every
			// wait would end at once, and a node whose link is cut would
			// ask the seeders, fail at once and ask again, in a tight
			// loop (or once a piece, for the pieces its peers still
			// bring). The seeders are asked again every reaskAfter
			// instead; once healthy again it is watched again.
			if ent.lost[addr] {
				select {
				case <-gone:
					gone = nil
				default:
					delete(ent.lost, addr)
				}
			}
		}
		if gone != nil {
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				select {
				case <-gone:
					seederGone.Store(true)
					cancel()
				case <-stop:
				}
			}()
			err := ent.data.waitPiece(wctx, i)
			close(stop)
			<-done
			cancel()
			if err == nil || ctx.Err() != nil || !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			if seederGone.Load() {
				if ent.lost == nil {
					ent.lost = make(map[string]bool)
				}
				ent.lost[addr] = true
			}
		} else {
			err := ent.data.waitPiece(wctx, i)
			cancel()
			if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
		}
		t := ent.torrent()
		if t == nil {
			// Streamed from its seeder, which the source watches (see
			// StreamSource).
			continue
		}
		if !ent.data.isClaimed(i) {
			// The piece the commit waits on has had no progress for a
			// while: make sure the wire asks for it first, whatever a
			// direct transfer's reserve or a refusal left its priority at.
			t.Piece(i).SetPriority(torrent.PiecePriorityNow)
		}
		// A connection whose writer missed its wake-up asks for nothing
		// (see nudgeExtension): wake them all.
		nudge(t)
		if n := closeSilentSeeds(t, ent.data); n > 0 {
			e.log.Warn("download stalled: closed the connections to peers that hold the whole blob and sent none of it; reconnecting",
				"digest", ref.Digest, "closed", n)
		}
		if e.src == nil {
			continue
		}
		peers := t.Stats().ActivePeers
		if ent.data.left() < leftBefore {
			idle = 0
		} else {
			idle++
		}
		waited++
		if e.oneWay && (idle > 0 || waited >= 2 && !e.upstream.maskOf(t.InfoHash()).has(i)) && e.upstream.unmask(t.InfoHash()) {
			// A border peer that took its share of the pieces from
			// upstream, and whose location lacks the rest (another
			// border peer gone, or with no upstream peer that holds
			// them): nothing came for a while, or the piece it waits on
			// is outside its share and did not come from its location
			// for two intervals. It takes every piece from now on.
			n := e.upstream.reconnect(ctx, t)
			e.log.Warn("download stalled on a border peer's share of the pieces; taking every piece from its upstream peers",
				"digest", ref.Digest, "reconnected", n)
		}
		if e.cfg.Location != "" && !seederGone.Load() && peers > 0 && idle < 2 {
			// Near peers are connected and either brought other pieces
			// or may still (behind a busy border a first piece can take
			// a while): the seeder would add cross-border traffic, not
			// the missing piece sooner. Two idle intervals in a row, or
			// no peer at all, and it is dialed.
			continue
		}
		if ent.releaseHeld() {
			e.log.Warn("download stalled on near peers; dialing the seeder", "digest", ref.Digest, "peers", peers)
		}
		switch {
		case seederGone.Load():
			e.log.Warn("the seeder of a download stopped answering; asking the others", "digest", ref.Digest, "seeder", addr, "peers", peers)
		case peers == 0:
			e.log.Warn("download stalled with no peers; asking the seeders again", "digest", ref.Digest, "reason", ent.stallReason())
		default:
			e.log.Debug("no piece for a while; asking the seeders again", "digest", ref.Digest, "peers", peers)
		}
		ans, err := e.askSeeder(ctx, ref)
		if err != nil {
			e.log.Warn("asking the seeders again", "digest", ref.Digest, "err", err)
			continue
		}
		ent.setSeeder(ans.seeder)
		addPeers(t, ans.peers)
	}
}

// closeSilentSeeds closes, while the download has not received a single
// useful chunk nor completed a piece any other way (a stream, a relay, a
// direct transfer), the connections to peers that hold every piece: such a
// peer uploads to anyone (every Eagle node seeds what it holds), so a
// download that got nothing from any of them for a whole reask interval
// is stuck (seen: a 1-piece blob, a dozen such peers, no chunk for 5 s; a
// request nobody answered, by the look of it). The announce loop and the
// seeders' answer bring the peers back as new connections, on which
// anacrolix requests afresh. A download that has had bytes is left alone:
// its connections carry on where they were once a cut link is back, where
// new ones would first wait out the dials that failed meanwhile; and one
// whose first pieces came by stream, whose wire may well be quiet for a
// few seconds while a super-seeder serves the others, would otherwise lose
// its seeder every reask interval. It returns how many it closed.
func closeSilentSeeds(t *torrent.Torrent, d *blobData) int {
	if st := t.Stats(); st.ChunksReadUseful.Int64() > 0 || d.left() < d.size {
		return 0
	}
	closed := 0
	for _, pc := range t.PeerConns() {
		if pc.Stats().RemotePieceCount == t.NumPieces() {
			pc.Close()
			closed++
		}
	}
	return closed
}

// storedBlob serves a committed blob from the store.
type storedBlob struct {
	*io.SectionReader
	b     storage.Blob
	unpin func()
}

// Source says the bytes come from the node's store.
func (s *storedBlob) Source() string { return SourceLocal }

func (s *storedBlob) Close() error {
	s.unpin()
	return s.b.Close()
}

// emptyBlob is the zero-length blob.
type emptyBlob struct{}

func (emptyBlob) Read([]byte) (int, error)       { return 0, io.EOF }
func (emptyBlob) Seek(int64, int) (int64, error) { return 0, nil }
func (emptyBlob) Close() error                   { return nil }
func (emptyBlob) Size() int64                    { return 0 }
func (emptyBlob) Source() string                 { return SourceLocal }

// swarmBlob reads a blob that is still downloading.
type swarmBlob struct {
	ctx       context.Context
	ent       *entry
	pos       int64
	unpin     func()
	closeOnce sync.Once
	// closed is closed by Close; it also ends a Read blocked in another
	// goroutine.
	closed chan struct{}
}

func (s *swarmBlob) Size() int64 { return s.ent.size }

// Source says the bytes come from the swarm.
func (s *swarmBlob) Source() string { return SourceSwarm }

// StallReason says why no byte is coming: no tracker answered, no peers,
// or peers but no piece.
func (s *swarmBlob) StallReason() string { return s.ent.stallReason() }

// frontWaitPriority is how long a reader waits on a piece before it asks
// the swarm for that piece first, whatever its size (see wantsPriority).
// Small pieces come roughly in order from a super-seeder; a peer served in
// another order (one the seeder stopped super-seeding because it trades
// with nobody, see ssSwarm.open) would otherwise get its first piece at
// a random point of the download, long after first_byte_timeout.
const frontWaitPriority = time.Second

func (s *swarmBlob) Read(p []byte) (int, error) {
	select {
	case <-s.closed:
		return 0, os.ErrClosed
	default:
	}
	d := s.ent.data
	size := s.ent.size
	if s.pos >= size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	prioritized := false
	// waitSince is when this Read started waiting; nudge fires when it
	// has waited frontWaitPriority.
	var waitSince time.Time
	var nudge <-chan time.Time
	for {
		st := d.state(s.pos)
		avail := st.avail
		if !st.committed && s.pos+avail == size {
			// Hold the last byte back until the whole blob has passed its
			// digest, so a mismatch fails the read before it can end cleanly.
			avail--
		}
		if avail > 0 {
			n, err := d.ReadAt(p[:min(int64(len(p)), avail)], s.pos)
			s.pos += int64(n)
			if n > 0 {
				return n, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if st.failed != nil {
			return 0, st.failed
		}
		select {
		case <-s.ent.done:
			if s.ent.doneErr != nil {
				return 0, s.ent.doneErr
			}
		default:
		}
		if i, t := int(s.pos/d.pieceLen), s.ent.torrent(); !prioritized && !st.committed && t != nil {
			if waitSince.IsZero() {
				waitSince = time.Now()
			}
			waited := time.Since(waitSince)
			if d.isClaimed(i) {
				// A direct transfer is fetching it: asking the peer wire
				// too would fetch it twice.
				if nudge == nil {
					nudge = time.After(frontWaitPriority)
				}
			} else if d.wantsPriority(i) || waited >= frontWaitPriority {
				// Ask the swarm for the piece this reader waits on first.
				t.Piece(i).SetPriority(torrent.PiecePriorityNow)
				prioritized, nudge = true, nil
			} else if nudge == nil {
				nudge = time.After(frontWaitPriority - waited)
			}
		}
		select {
		case <-nudge:
			nudge = nil
		case <-st.changed:
		case <-s.ent.done:
		case <-s.ctx.Done():
			return 0, s.ctx.Err()
		case <-s.closed:
			return 0, os.ErrClosed
		}
	}
}

func (s *swarmBlob) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.pos
	case io.SeekEnd:
		off += s.ent.size
	default:
		return 0, errors.New("p2p: seek: invalid whence")
	}
	if off < 0 {
		return 0, errors.New("p2p: seek: negative position")
	}
	s.pos = off
	return off, nil
}

func (s *swarmBlob) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.unpin()
	})
	return nil
}
