package storage_test

import (
	"context"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/opencontainers/go-digest"
)

// fakeStage records what a Writer made by NewWriter asks of it.
type fakeStage struct {
	written    []byte
	short      bool  // Write stores one byte less than it is given
	writeErr   error // returned by Write
	publishErr error // returned by Publish
	published  []storage.Info
	discards   int
}

func (st *fakeStage) Write(p []byte) (int, error) {
	if st.writeErr != nil {
		return 0, st.writeErr
	}
	if st.short {
		p = p[:len(p)-1]
	}
	st.written = append(st.written, p...)
	return len(p), nil
}

func (st *fakeStage) Publish(_ context.Context, info storage.Info) (storage.Info, error) {
	st.published = append(st.published, info)
	if st.publishErr != nil {
		return storage.Info{}, st.publishErr
	}
	info.ModTime = time.Unix(1, 0)
	return info, nil
}

func (st *fakeStage) Discard() error {
	st.discards++
	return nil
}

func newTestWriter(t *testing.T, dgst digest.Digest, st *fakeStage) storage.Writer {
	t.Helper()
	v, err := storage.NewVerifier(dgst)
	if err != nil {
		t.Fatal(err)
	}
	return storage.NewWriter("fake", v, st)
}

func TestNewWriterCommit(t *testing.T) {
	data := []byte("hello, stage")
	st := &fakeStage{}
	w := newTestWriter(t, digest.FromBytes(data), st)
	if n, err := w.Write(data[:5]); n != 5 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n, err := w.Write(nil); n != 0 || err != nil {
		t.Fatalf("empty Write = %d, %v", n, err)
	}
	if _, err := w.Write(data[5:]); err != nil {
		t.Fatal(err)
	}
	info, err := w.Commit(t.Context())
	if err != nil || info.Digest != digest.FromBytes(data) || info.Size != int64(len(data)) || info.ModTime.IsZero() {
		t.Fatalf("Commit = %+v, %v", info, err)
	}
	again, err := w.Commit(t.Context())
	if err != nil || again != info {
		t.Fatalf("second Commit = %+v, %v; want %+v", again, err, info)
	}
	if err := w.Cancel(); err != nil {
		t.Fatalf("Cancel after Commit: %v", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Write after Commit: %v, want fs.ErrClosed", err)
	}
	if string(st.written) != string(data) || len(st.published) != 1 || st.discards != 0 {
		t.Fatalf("stage saw %q, %d publishes, %d discards", st.written, len(st.published), st.discards)
	}
}

func TestNewWriterFailures(t *testing.T) {
	data := []byte("hello, stage")
	dgst := digest.FromBytes(data)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	errWrite, errPublish := errors.New("disk on fire"), errors.New("rename refused")
	for _, tc := range []struct {
		name    string
		st      *fakeStage
		ctx     context.Context
		data    []byte
		want    error
		publish int // Publish calls expected
	}{
		{"mismatch", &fakeStage{}, t.Context(), []byte("something else"), storage.ErrDigestMismatch, 0},
		{"write error", &fakeStage{writeErr: errWrite}, t.Context(), data, errWrite, 0},
		{"short write", &fakeStage{short: true}, t.Context(), data, nil, 0},
		{"context", &fakeStage{}, cancelled, data, context.Canceled, 0},
		{"publish", &fakeStage{publishErr: errPublish}, t.Context(), data, errPublish, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTestWriter(t, dgst, tc.st)
			_, werr := w.Write(tc.data)
			if tc.st.writeErr != nil || tc.st.short {
				if werr == nil {
					t.Fatal("failed Write returned no error")
				}
				// The first write error sticks.
				if _, again := w.Write(tc.data); again == nil || again.Error() != werr.Error() {
					t.Fatalf("Write after a failure = %v, want %v", again, werr)
				}
			}
			_, err := w.Commit(tc.ctx)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Commit error = %v, want %v", err, tc.want)
			}
			if _, again := w.Commit(t.Context()); again == nil || again.Error() != err.Error() {
				t.Fatalf("second Commit error = %v, want %v", again, err)
			}
			if err := w.Cancel(); err != nil {
				t.Fatalf("Cancel after a failed Commit: %v", err)
			}
			if len(tc.st.published) != tc.publish || tc.st.discards != 1 {
				t.Fatalf("stage saw %d publishes and %d discards; want %d and 1", len(tc.st.published), tc.st.discards, tc.publish)
			}
		})
	}
}

func TestNewWriterCancel(t *testing.T) {
	data := []byte("hello, stage")
	st := &fakeStage{}
	w := newTestWriter(t, digest.FromBytes(data), st)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := w.Cancel(); err != nil {
		t.Fatalf("second Cancel: %v", err)
	}
	if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Commit after Cancel: %v, want fs.ErrClosed", err)
	}
	if len(st.published) != 0 || st.discards != 1 {
		t.Fatalf("stage saw %d publishes and %d discards; want 0 and 1", len(st.published), st.discards)
	}
}
