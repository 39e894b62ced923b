package p2p_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
)

// gatedReadStore's blobs, once armed, hold every read until release and
// then fail it, as a store does whose blob went away.
type gatedReadStore struct {
	storage.Store
	armed   atomic.Bool
	reading chan struct{} // closed by the first held read
	release chan struct{}
	once    sync.Once
}

func (s *gatedReadStore) Open(ctx context.Context, d digest.Digest) (storage.Blob, error) {
	b, err := s.Store.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	return gatedBlob{b, s}, nil
}

type gatedBlob struct {
	storage.Blob
	s *gatedReadStore
}

func (b gatedBlob) ReadAt(p []byte, off int64) (int, error) {
	if !b.s.armed.Load() {
		return b.Blob.ReadAt(p, off)
	}
	b.s.once.Do(func() { close(b.s.reading) })
	<-b.s.release
	return 0, errors.New("the blob went away")
}

// TestSeederClosedWhileServingAPiece closes a seeder while it reads a
// piece a peer asked for over the wire, and the read then fails. anacrolix
// (v1.61.0) left the request in the connection's queue when the torrent
// was closed by then, and its check that every request is answered or
// buffered panicked: the process died. The seeder closes instead.
func TestSeederClosedWhileServingAPiece(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	store := &gatedReadStore{Store: newFSStore(t), reading: make(chan struct{}), release: make(chan struct{})}
	seed := newEngine(t, p2p.RoleSeeder, trk, store, nil)
	_, addr := serveSeeder(t, store, seed)
	ref, _ := pushBlob(t, o, "close/serving", 1<<20)
	if _, err := newSeederClient(t, addr).MetaInfo(ctx, ref); err != nil {
		t.Fatal(err)
	}
	store.armed.Store(true)
	agent := newEngineWith(t, trk, newFSStore(t), newSeederClient(t, addr), func(c *p2p.Config) { c.DisableDirect = true })
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		if b, err := agent.Fetch(ctx, ref); err == nil {
			io.Copy(io.Discard, b)
			b.Close()
		}
	}()
	select {
	case <-store.reading:
	case <-ctx.Done():
		t.Fatal("the seeder read no piece for the agent")
	}
	closed := make(chan error, 1)
	go func() { closed <- seed.Close() }()
	time.Sleep(200 * time.Millisecond)
	close(store.release)
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("the seeder's Close did not return")
	}
	cancel()
	<-fetched
}
