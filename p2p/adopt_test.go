package p2p_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/lru"
)

// TestDownloadIsWrittenOnce checks that a filesystem store, alone or behind
// an LRU cache, adopts the file a blob was downloaded into (the stored blob
// is that very file) and, when the download lives on another filesystem,
// that the engine copies it instead. Either way the bytes are the origin's and no partial file is
// left.
func TestDownloadIsWrittenOnce(t *testing.T) {
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	ref, want := pushBlob(t, o, "adopt/app", 4<<20+321)

	shm, err := os.MkdirTemp("/dev/shm", "eagle-p2p-")
	if err != nil {
		shm = ""
	} else {
		t.Cleanup(func() { os.RemoveAll(shm) })
	}
	for _, tc := range []struct {
		name    string
		dataDir string
		inLRU   bool // the filesystem store behind an LRU cache
		adopted bool
	}{
		{"same filesystem", t.TempDir(), false, true},
		{"same filesystem, in a cache", t.TempDir(), true, true},
		{"other filesystem", shm, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFSStore(t)
			if !tc.adopted && !otherFilesystem(tc.dataDir, fs.Root()) {
				t.Skip("no directory on another filesystem (/dev/shm)")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var store storage.Store = fs
			if tc.inLRU {
				var err error
				if store, err = lru.New(ctx, fs, 1<<30); err != nil {
					t.Fatal(err)
				}
			}
			// Slow enough (0.5 s) that the partial file is still there
			// when Fetch returns.
			e, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), Authorizer: testAuthorizer(t), ListenAddr: "127.0.0.1:0", DataDir: tc.dataDir, Trackers: []string{trk}, Logger: quiet, DownloadLimit: 8 << 20},
				store, newSeederClient(t, addr))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			b, err := e.Fetch(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			partial, err := os.Stat(filepath.Join(tc.dataDir, "partial", ref.Digest.Encoded()))
			if err != nil {
				t.Fatalf("no partial file while downloading: %v", err)
			}
			got, err := io.ReadAll(b)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes (err %v) that differ from the origin's %d", len(got), err, len(want))
			}
			hex := ref.Digest.Encoded()
			stored, err := os.Stat(filepath.Join(fs.Root(), "blobs", "sha256", hex[:2], hex))
			if err != nil {
				t.Fatalf("blob not in the store after the read: %v", err)
			}
			if same := os.SameFile(partial, stored); same != tc.adopted {
				t.Errorf("stored blob is the downloaded file: %v, want %v", same, tc.adopted)
			}
			if ents, _ := os.ReadDir(filepath.Join(tc.dataDir, "partial")); len(ents) != 0 {
				t.Errorf("partial download left behind: %v", ents)
			}
			if got := readAll(t, ctx, e, ref); !bytes.Equal(got, want) {
				t.Error("a second read, from the store, differs")
			}
		})
	}
}

// otherFilesystem reports whether directories a and b are on different
// filesystems.
func otherFilesystem(a, b string) bool {
	var sa, sb syscall.Statfs_t
	if a == "" || syscall.Statfs(a, &sa) != nil || syscall.Statfs(b, &sb) != nil {
		return false
	}
	return sa.Fsid != sb.Fsid
}
