package p2p

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eagle-p2p/eagle/internal/directio"
	"github.com/eagle-p2p/eagle/internal/pace"
)

// Relays. A seeder streams a cold blob's bytes to the first node that asks
// (see StreamSource); the nodes that ask after it form a chain behind it,
// each taking the bytes from the node before it as that node verifies
// them, and the piece hashes from the seeder. So a whole wave of nodes
// gets a cold blob at about the origin's pace, where without relays all
// but the first would wait for the seeder's whole fetch before the swarm
// starts. A relay is served on the peer port, in the direct-transfer
// protocol (ALPN eagle-direct/1 under mutual TLS), under a key only the
// seeder's authorized callers learn.
const (
	// relayPath is where a node relays a blob: relayPath + key (hex).
	relayPath = "/eagle/v1/relay/"
	// relayKeyLen is the length of a relay key.
	relayKeyLen = 16
	// relayStall ends a relay that delivers no byte for this long; the
	// node then waits for the seeder's answer and takes the rest from the
	// swarm. It is longer than directStall: a relay's bytes come at the
	// origin's pace, hiccups included.
	relayStall = 10 * time.Second
	// relayRetry is how soon a node asks its source again that does not
	// relay the blob yet.
	relayRetry = 50 * time.Millisecond
	// relayIdle is how long, once the seeder has answered, a relayed
	// download that gets no byte from its relay waits before it takes the
	// rest from the swarm.
	relayIdle = 500 * time.Millisecond
)

// relayPort is the port the engine relays streamed blobs on, 0 when it
// does not (no direct-transfer server, or direct transfers off).
func (e *Engine) relayPort() int {
	if e.directSrv == nil || e.cfg.DisableDirect || e.listener == nil {
		return 0
	}
	if a, ok := e.listener.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// setRelayKey makes ent's download relay under key too: a download
// streamed again from another seeder relays under both fetches' keys.
func (e *Engine) setRelayKey(ent *entry, key []byte) {
	if len(key) != relayKeyLen {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ent.relayKeys = append(ent.relayKeys, bytes.Clone(key))
}

// relaying returns the entry that relays under key, if any.
func (e *Engine) relaying(key []byte) *entry {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ent := range e.blobs {
		for _, k := range ent.relayKeys {
			if subtle.ConstantTimeCompare(k, key) == 1 {
				return ent
			}
		}
	}
	return nil
}

// serveRelay sends the blob relayed under the key in the path, from its
// first byte, each piece once it is verified, paced by the upload limit.
func (s *directServer) serveRelay(w http.ResponseWriter, r *http.Request, hexKey string) {
	e := s.e
	key, err := hex.DecodeString(hexKey)
	if err != nil || len(key) != relayKeyLen {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ent := e.relaying(key)
	if ent == nil {
		http.Error(w, "not relayed here", http.StatusNotFound)
		return
	}
	if e.cfg.DisableDirect {
		http.Error(w, "direct transfers are off", http.StatusServiceUnavailable)
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	d := ent.data
	w.Header().Set("Content-Length", strconv.FormatInt(d.size, 10))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := make([]byte, directChunk)
	for i := range d.complete {
		if err := d.waitPiece(r.Context(), i); err != nil {
			panic(http.ErrAbortHandler)
		}
		end := min(int64(i+1)*d.pieceLen, d.size)
		for off := int64(i) * d.pieceLen; off < end; {
			n := int(min(int64(len(buf)), end-off))
			if err := pace.Wait(r.Context(), e.agentUpload, n); err != nil {
				panic(http.ErrAbortHandler)
			}
			if m, err := d.ReadAt(buf[:n], off); m < n {
				e.log.Warn("relay: reading the blob", "digest", ent.dgst, "err", err)
				panic(http.ErrAbortHandler)
			}
			rc.SetWriteDeadline(time.Now().Add(2 * relayStall))
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			e.directUploaded.Add(int64(n))
			off += int64(n)
		}
		rc.Flush()
	}
}

// pieceHashes are the piece hashes a relayed download checks its bytes
// against: the seeder's, as its stream brings them, then the metainfo's.
type pieceHashes struct {
	mu      sync.Mutex
	hashes  []byte
	changed chan struct{}
}

func newPieceHashes() *pieceHashes { return &pieceHashes{changed: make(chan struct{})} }

// set replaces the hashes known with hs, which starts with them.
func (p *pieceHashes) set(hs []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hashes = bytes.Clone(hs)
	close(p.changed)
	p.changed = make(chan struct{})
}

// add appends the next piece's hash.
func (p *pieceHashes) add(h []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hashes = append(p.hashes, h...)
	close(p.changed)
	p.changed = make(chan struct{})
}

// wait returns piece i's hash once it is known.
func (p *pieceHashes) wait(ctx context.Context, i int) ([]byte, error) {
	for {
		p.mu.Lock()
		hs, ch := p.hashes, p.changed
		p.mu.Unlock()
		if len(hs) >= (i+1)*sha1.Size {
			return hs[i*sha1.Size : (i+1)*sha1.Size], nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// relayFrom takes ent's blob from the node at src, which relays it under
// key, writing each piece once it matches its hash in hs; got counts the
// bytes it received. It returns when
// the blob is whole, the relay fails or stalls for relayStall, a piece
// fails its hash, or ctx ends; pieces written stay.
func (e *Engine) relayFrom(ctx context.Context, ent *entry, src netip.AddrPort, key []byte, hs *pieceHashes, got *atomic.Int64) error {
	c := e.direct
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(relayStall, func() { cancel(fmt.Errorf("no byte for %v", relayStall)) })
	defer stall.Stop()
	var resp *http.Response
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s%x", c.scheme, src, relayPath, key), nil)
		if err != nil {
			return err
		}
		if resp, err = c.http.Do(req); err != nil {
			return directErr(ctx, err)
		}
		if resp.StatusCode != http.StatusNotFound {
			break
		}
		// The source heard from the seeder at the same moment as this
		// node, and may not relay yet: ask again shortly, until the
		// stall bound.
		resp.Body.Close()
		select {
		case <-time.After(relayRetry):
		case <-ctx.Done():
			return directErr(ctx, ctx.Err())
		}
	}
	defer resp.Body.Close()
	d := ent.data
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("p2p: relay: %s", resp.Status)
	}
	if resp.ContentLength != d.size {
		return fmt.Errorf("p2p: relay: %d bytes, want %d", resp.ContentLength, d.size)
	}
	buf := directio.Buffer(int(d.pieceLen))
	for i := range d.complete {
		b := buf[:min(d.pieceLen, d.size-int64(i)*d.pieceLen)]
		for n := 0; n < len(b); {
			m, err := resp.Body.Read(b[n:min(len(b), n+directChunk)])
			n += m
			if m > 0 {
				stall.Reset(relayStall)
				got.Add(int64(m))
			}
			if err != nil && n < len(b) {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return directErr(ctx, err)
			}
		}
		h, err := hs.wait(ctx, i)
		if err != nil {
			return err
		}
		if sum := sha1.Sum(b); !bytes.Equal(sum[:], h) {
			return pieceHashMismatch{i}
		}
		wrote, spare, err := d.writeVerified(i, b, false)
		buf = spare
		if err != nil {
			return err
		}
		if wrote {
			if t := ent.torrent(); t != nil {
				t.Piece(i).UpdateCompletion()
			}
			e.fromAgents.Add(int64(len(b)))
			e.relayed.Add(int64(len(b)))
		}
	}
	return nil
}
