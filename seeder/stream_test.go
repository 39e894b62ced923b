package seeder

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
)

// gate passes the first at bytes of a body, flushes them, and sends the
// rest only once release is closed.
type gate struct {
	http.ResponseWriter
	at, off int
	release <-chan struct{}
}

func (g *gate) Write(p []byte) (int, error) {
	n := 0
	if g.off < g.at {
		k := min(len(p), g.at-g.off)
		m, err := g.ResponseWriter.Write(p[:k])
		g.off += m
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
		if g.off == g.at {
			http.NewResponseController(g.ResponseWriter).Flush()
		}
	}
	if len(p) == 0 {
		return n, nil
	}
	<-g.release
	m, err := g.ResponseWriter.Write(p)
	g.off += m
	return n + m, err
}

// gatedStream is a cold blob's stream from a seeder with cut-through on,
// behind a gateway that sends the first at bytes of the blob's GET and the
// rest once open is called (the test's cleanup calls it too).
type gatedStream struct {
	ts   *testSeeder
	gw   *gateway
	stub seederpb.MetaInfoServiceClient
	req  *seederpb.GetMetaInfoRequest
	st   grpc.ServerStreamingClient[seederpb.StreamBlobResponse]
	open func()
}

func startGatedStream(t *testing.T, d digest.Digest, at int) *gatedStream {
	t.Helper()
	release := make(chan struct{})
	var once sync.Once
	g := &gatedStream{open: func() { once.Do(func() { close(release) }) }}
	t.Cleanup(g.open)
	g.gw = startGateway(t, getsOnly(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(&gate{ResponseWriter: w, at: at, release: release}, r)
	}))
	g.ts = startSeeder(t, Config{StreamFanout: 1}, nil)
	g.stub = g.ts.dial(t)
	g.req = request(g.gw.URL, testRepo(t), d)
	var err error
	if g.st, err = g.stub.StreamBlob(t.Context(), g.req); err != nil {
		t.Fatal(err)
	}
	return g
}

// recvUntil reads parts of st into blob (data) and hashes until want
// full pieces came with their hashes, or the stream's Done; it checks
// every hash against its piece's bytes.
func recvUntil(t *testing.T, st interface {
	Recv() (*seederpb.StreamBlobResponse, error)
}, pieceLen int64, blob *[]byte, hashes *[]byte, want int) *seederpb.GetMetaInfoResponse {
	t.Helper()
	for len(*hashes)/sha1.Size < want {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("stream after %d bytes: %v", len(*blob), err)
		}
		switch p := m.GetPart().(type) {
		case *seederpb.StreamBlobResponse_Data:
			*blob = append(*blob, p.Data...)
		case *seederpb.StreamBlobResponse_PieceHash:
			i := len(*hashes) / sha1.Size
			if int64(len(*blob)) < int64(i+1)*pieceLen {
				t.Fatalf("hash of piece %d after only %d bytes", i, len(*blob))
			}
			sum := sha1.Sum((*blob)[int64(i)*pieceLen : int64(i+1)*pieceLen])
			if !bytes.Equal(sum[:], p.PieceHash) {
				t.Fatalf("piece %d: hash %x, its bytes hash to %x", i, p.PieceHash, sum)
			}
			*hashes = append(*hashes, p.PieceHash...)
		case *seederpb.StreamBlobResponse_Done:
			return p.Done
		default:
			t.Fatalf("unexpected part %T", p)
		}
	}
	return nil
}

// A cold blob streams to its first caller as the origin sends it: whole
// pieces with their hashes arrive while the origin still holds back the
// rest, and the stream ends with the metainfo once the blob verified. A
// second caller that asked meanwhile (over the fan-out) and a later one
// get the answer alone, and the origin serves the blob once.
func TestStreamBlobCutThrough(t *testing.T) {
	const size = 3<<20 + 4321
	layer := pushImage(t, 60, size)[0]
	pieceLen := p2p.PieceLength(size)
	at := int(4*pieceLen + 100)
	g := startGatedStream(t, layer.Digest, at)
	ts, gw, stub, req, st, open := g.ts, g.gw, g.stub, g.req, g.st, g.open
	ctx := t.Context()

	first, err := st.Recv()
	if err != nil {
		t.Fatalf("first part: %v", err)
	}
	h := first.GetHeader()
	if h == nil || h.GetSize() != size || h.GetPieceLength() != pieceLen {
		t.Fatalf("first part %v, want a header of %d bytes in pieces of %d", first, int64(size), pieceLen)
	}
	// A second caller while the first streams: over the fan-out of 1, it
	// waits for the answer.
	second := make(chan *seederpb.StreamBlobResponse, 1)
	secondErr := make(chan error, 1)
	go func() {
		st2, err := stub.StreamBlob(ctx, req)
		if err == nil {
			var m *seederpb.StreamBlobResponse
			if m, err = st2.Recv(); err == nil {
				second <- m
			}
		}
		secondErr <- err
	}()

	var got, hashes []byte
	if done := recvUntil(t, st, pieceLen, &got, &hashes, 4); done != nil {
		t.Fatal("the stream ended while the origin held back the blob's tail")
	}
	if len(got) > at {
		t.Fatalf("streamed %d bytes, the origin sent %d", len(got), at)
	}
	open()
	done := recvUntil(t, st, pieceLen, &got, &hashes, int(size/pieceLen)+1)
	if done == nil {
		t.Fatal("no answer at the end of the stream")
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the answer: %v, want EOF", err)
	}
	if digest.FromBytes(got) != layer.Digest {
		t.Fatalf("streamed %d bytes that do not match the digest", len(got))
	}
	checkMetaInfo(t, ts.store, layer, done.GetMetainfo())
	_, info, err := p2p.ParseMetaInfo(layer.Digest, done.GetMetainfo())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(info.Pieces, hashes) || len(hashes) != len(info.Pieces)-sha1.Size {
		t.Errorf("streamed %d piece hashes, want every one but the short last piece's, as in the metainfo", len(hashes)/sha1.Size)
	}
	if err := <-secondErr; err != nil {
		t.Fatalf("second caller: %v", err)
	}
	if m := <-second; m.GetDone() == nil || !bytes.Equal(m.GetDone().GetMetainfo(), done.GetMetainfo()) {
		t.Errorf("second caller's first part %T, want the answer alone", m.GetPart())
	}

	// Warm: the answer alone.
	st3, err := stub.StreamBlob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st3.Recv(); err != nil || m.GetDone() == nil {
		t.Fatalf("warm stream: %T, %v; want the answer alone", m.GetPart(), err)
	}
	if n := gw.hits.Load(); n != 1 {
		t.Errorf("origin requests = %d, want 1", n)
	}
	if s := ts.srv.Stats(); s.StreamedBytes != size || s.OriginFetches != 1 {
		t.Errorf("stats %+v, want %d bytes streamed from 1 fetch", s, size)
	}
}

// A caller the origin refuses gets the refusal and not a byte, as from
// GetMetaInfo, even while another caller's fetch of the blob streams.
func TestStreamBlobRefused(t *testing.T) {
	layer := pushImage(t, 61, 1<<20)[0]
	const token = "Bearer ok"
	release := make(chan struct{})
	gw := startGateway(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Header.Get("Authorization") != token {
			http.Error(w, `{"errors":[{"code":"DENIED"}]}`, http.StatusForbidden)
			return
		}
		if r.Method == http.MethodGet {
			next.ServeHTTP(&gate{ResponseWriter: w, at: 64 << 10, release: release}, r)
			return
		}
		next.ServeHTTP(w, r)
	})
	defer close(release)
	ts := startSeeder(t, Config{StreamFanout: 1}, nil)
	stub := ts.dial(t)
	ok := request(gw.URL, testRepo(t), layer.Digest)
	ok.Authorization = token
	st, err := stub.StreamBlob(t.Context(), ok)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.Recv(); err != nil || m.GetHeader() == nil {
		t.Fatalf("authorized caller: %v, %v; want a header", m, err)
	}
	for _, authz := range []string{"", "Bearer stolen"} {
		bad := request(gw.URL, testRepo(t), layer.Digest)
		bad.Authorization = authz
		st, err := stub.StreamBlob(t.Context(), bad)
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.Recv()
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("authorization %q: %v, %v; want PermissionDenied and nothing else", authz, m, err)
		}
	}
}

// A streamed caller that falls behind the origin (it reads nothing until
// the fetch is done) gets the rest of the blob from the stored copy on
// the same stream when it was the fetch's only caller: every byte, every
// piece's hash, then the answer, and the origin serves one copy. When
// another caller waited for the same fetch, it gets the answer at once
// instead, and the swarm the others join gives it the rest.
func TestStreamBlobBehindTheOrigin(t *testing.T) {
	const size = 12<<20 + 777
	pieceLen := p2p.PieceLength(size)
	for _, tc := range []struct {
		name   string
		others bool
	}{{"Alone", false}, {"WithOthers", true}} {
		t.Run(tc.name, func(t *testing.T) {
			seed := int64(62)
			if tc.others {
				seed = 63
			}
			layer := pushImage(t, seed, size)[0]
			g := startGatedStream(t, layer.Digest, int(pieceLen))
			ts, gw, stub, req, st, open := g.ts, g.gw, g.stub, g.req, g.st, g.open
			ctx := t.Context()

			if m, err := st.Recv(); err != nil || m.GetHeader() == nil {
				t.Fatalf("first part: %v, %v; want the header", m, err)
			}
			other := make(chan error, 1)
			if tc.others {
				go func() {
					_, err := stub.GetMetaInfo(ctx, req)
					other <- err
				}()
				waitFor(t, "the second caller to join the fetch", func() bool {
					ts.srv.mu.Lock()
					defer ts.srv.mu.Unlock()
					for _, f := range ts.srv.flights {
						return f.waiters == 2
					}
					return false
				})
			}
			open()
			waitFor(t, "the fetch to be done", func() bool { return ts.srv.cache.Contains(layer.Digest) })
			time.Sleep(50 * time.Millisecond) // for the stream to see the answer

			var got, hashes []byte
			done := recvUntil(t, st, pieceLen, &got, &hashes, int(size/pieceLen)+1)
			if done == nil {
				t.Fatal("no answer at the end of the stream")
			}
			if tc.others {
				if err := <-other; err != nil {
					t.Fatalf("the other caller: %v", err)
				}
				if len(got) >= size {
					t.Fatalf("with another caller waiting, the caller that fell behind was streamed all %d bytes, want the answer at once", len(got))
				}
				t.Logf("with another caller: %d of %d bytes streamed, then the answer", len(got), size)
			} else {
				if digest.FromBytes(got) != layer.Digest {
					t.Fatalf("streamed %d of %d bytes, or bytes that do not match the digest", len(got), size)
				}
				if want := size / pieceLen; int64(len(hashes)/sha1.Size) != want {
					t.Fatalf("streamed %d piece hashes, want %d: every full piece's", len(hashes)/sha1.Size, want)
				}
			}
			checkMetaInfo(t, ts.store, layer, done.GetMetainfo())
			if n := gw.hits.Load(); n != 1 {
				t.Errorf("origin requests = %d, want 1", n)
			}
		})
	}
}

// waitFor polls cond every 10 ms for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Cut-through is on by default (DefaultStreamFanout) and off with a
// negative stream_fanout: then a cold blob's caller gets the answer alone,
// once the whole fetch is done.
func TestStreamFanoutDefaultAndOff(t *testing.T) {
	if got := (Config{}).WithDefaults().StreamFanout; got != 1 {
		t.Errorf("default stream_fanout %d, want 1", got)
	}
	off := Config{StreamFanout: -1, AllowedUpstreams: []string{"127.0.0.1"}}
	if err := off.Validate(); err != nil {
		t.Errorf("stream_fanout -1: %v, want valid (off)", err)
	}
	layer := pushImage(t, 64, 1<<20)[0]
	ts := startSeeder(t, off, nil)
	st, err := ts.dial(t).StreamBlob(t.Context(), request(testOrigin.URL, testRepo(t), layer.Digest))
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil || m.GetDone() == nil {
		t.Fatalf("cold blob with stream_fanout -1: first part %T, %v; want the answer alone", m.GetPart(), err)
	}
	checkMetaInfo(t, ts.store, layer, m.GetDone().GetMetainfo())
	if s := ts.srv.Stats(); s.StreamedBytes != 0 {
		t.Errorf("streamed %d bytes with cut-through off", s.StreamedBytes)
	}
}
