package p2p_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

// mountTmpfs mounts a tmpfs of size bytes at a new directory: a real disk
// that fills up.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	return dir
}

// A node whose disk fills up during a download fails that download with a
// clear error, leaves nothing partial behind, and keeps serving the blobs
// it has.
func TestDiskFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	disk := mountTmpfs(t, "12m")
	o := testenv.Origin(t)
	trk := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, trk)
	refA, wantA := pushBlob(t, o, "full/small", 2<<20)
	refB, _ := pushBlob(t, o, "full/big", 16<<20)

	store, err := filesystem.New(filepath.Join(disk, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	dataDir := filepath.Join(disk, "p2p")
	agent, err := p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), Authorizer: testAuthorizer(t), ListenAddr: "127.0.0.1:0", DataDir: dataDir, Trackers: []string{trk}, Logger: quiet},
		store, newSeederClient(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	if got := readAll(t, ctx, agent, refA); !bytes.Equal(got, wantA) {
		t.Fatal("a differs")
	}

	b, err := agent.Fetch(ctx, refB)
	if err == nil {
		_, err = io.ReadAll(b)
		b.Close()
	}
	if err == nil {
		t.Fatal("a 16 MiB blob was read whole from a 12 MiB disk")
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("error %q does not say the disk is full", err)
	}
	t.Logf("error for the blob that did not fit: %v", err)
	if _, err := store.Stat(ctx, refB.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the blob that did not fit is in the store: %v", err)
	}
	waitFor(t, "the partial download to be removed", func() bool {
		ents, _ := os.ReadDir(filepath.Join(dataDir, "partial"))
		return len(ents) == 0
	})
	waitFor(t, "the store's unfinished write to be discarded", func() bool {
		n, err := store.Pending(ctx)
		return err == nil && n == 0
	})
	if got := readAll(t, ctx, agent, refA); !bytes.Equal(got, wantA) {
		t.Fatal("the node stopped serving the blob it had")
	}
}
