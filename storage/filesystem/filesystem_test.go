package filesystem

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/storage/storagetest"
	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newStore(t *testing.T, root string) *Store {
	t.Helper()
	s, err := New(root)
	if err != nil {
		t.Fatalf("New(%s): %v", root, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return newStore(t, t.TempDir())
	})
}

func put(t *testing.T, s *Store, data []byte) digest.Digest {
	t.Helper()
	dgst := digest.FromBytes(data)
	w, err := s.Create(t.Context(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	return dgst
}

func TestLayout(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	data := []byte("layer bytes")
	dgst := put(t, s, data)
	hex := dgst.Encoded()
	got, err := os.ReadFile(filepath.Join(root, "blobs", "sha256", hex[:2], hex))
	if err != nil {
		t.Fatalf("committed blob is not where the layout says: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("blob file holds %q, want %q", got, data)
	}
	if s.Root() != root {
		t.Fatalf("Root() = %q, want %q", s.Root(), root)
	}
	tmp, err := os.ReadDir(filepath.Join(root, "tmp"))
	if err != nil || len(tmp) != 0 {
		t.Fatalf("tmp/ after a commit holds %v (err %v), want nothing", tmp, err)
	}
}

func TestNewRemovesStaleWrites(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	data := bytes.Repeat([]byte("partial "), 1000)
	w, err := s.Create(t.Context(), digest.FromBytes(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:4000]); err != nil {
		t.Fatal(err)
	}
	// What a crashed process leaves: its open write, and whatever else
	// was in tmp/.
	tmp := filepath.Join(root, "tmp")
	if err := os.WriteFile(filepath.Join(tmp, "sha256-0123456789ab-LEFTOVER"), data[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "dir", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "dir", "sub", "f"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Pending(t.Context()); err != nil || n != 3 {
		t.Fatalf("Pending before restart = %d, %v; want 3", n, err)
	}
	kept := put(t, s, []byte("committed before the crash"))

	s2 := newStore(t, root)
	left, err := os.ReadDir(tmp)
	if err != nil || len(left) != 0 {
		t.Fatalf("tmp/ after New holds %v (err %v), want nothing", left, err)
	}
	if _, err := s2.Stat(t.Context(), digest.FromBytes(data)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat of the interrupted write = %v, want ErrNotFound", err)
	}
	if _, err := s2.Stat(t.Context(), kept); err != nil {
		t.Fatalf("a committed blob did not survive the restart: %v", err)
	}
	// The old writer lost its temporary file; it must not commit anything.
	if _, err := w.Write(data[4000:]); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(t.Context()); err == nil {
		t.Fatal("Commit of a write whose temporary file was cleared succeeded")
	}
	var all []digest.Digest
	if err := s2.Walk(t.Context(), func(i storage.Info) error { all = append(all, i.Digest); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(all, []digest.Digest{kept}) {
		t.Fatalf("Walk after restart = %v, want only %s", all, kept)
	}
}

func TestWalkSkipsStrays(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	real := put(t, s, []byte("the only blob"))
	hex := real.Encoded()
	other := digest.FromString("stray").Encoded()
	blobs := filepath.Join(root, "blobs")
	files := []string{
		filepath.Join("sha256", hex[:2], "not-a-digest"),
		filepath.Join("sha256", hex[:2], strings.ToUpper(other)),
		filepath.Join("sha256", hex[:2], other[:63]),
		filepath.Join("sha256", "zz", other),
		filepath.Join("sha256", "stray-file"),
		filepath.Join("sha384", other[:2], other),
		filepath.Join("md5", other[:2], other[:32]),
		"stray-at-top",
	}
	if other[:2] != hex[:2] {
		// A valid name in the wrong prefix directory.
		files = append(files, filepath.Join("sha256", hex[:2], other))
	}
	for _, f := range files {
		p := filepath.Join(blobs, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("stray"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A directory and a symbolic link where a blob would be.
	dirBlob := digest.FromString("a directory")
	if err := os.MkdirAll(filepath.Join(blobs, "sha256", dirBlob.Encoded()[:2], dirBlob.Encoded()), 0o700); err != nil {
		t.Fatal(err)
	}
	linkBlob := digest.FromString("a link")
	linkPath := filepath.Join(blobs, "sha256", linkBlob.Encoded()[:2], linkBlob.Encoded())
	if err := os.MkdirAll(filepath.Dir(linkPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(blobs, "sha256", hex[:2], hex), linkPath); err != nil {
		t.Fatal(err)
	}

	var all []digest.Digest
	if err := s.Walk(t.Context(), func(i storage.Info) error { all = append(all, i.Digest); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(all, []digest.Digest{real}) {
		t.Fatalf("Walk = %v, want only %s", all, real)
	}
	for _, d := range []digest.Digest{dirBlob, linkBlob} {
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%s) of a non-regular file = %v, want ErrNotFound", d, err)
		}
		if b, err := s.Open(t.Context(), d); !errors.Is(err, storage.ErrNotFound) {
			if err == nil {
				b.Close()
			}
			t.Errorf("Open(%s) of a non-regular file = %v, want ErrNotFound", d, err)
		}
	}
}

// TestCraftedDigestsStayInside plants files next to the root where
// path-traversal digests would lead, and checks that no operation with such
// a digest reads, writes or removes them.
func TestCraftedDigestsStayInside(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "store")
	s := newStore(t, root)
	victim := filepath.Join(parent, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := digest.FromString("x").Encoded()
	crafted := []digest.Digest{
		"sha256:../../../victim",
		"sha256:../../../../victim",
		"sha256:" + digest.Digest(filepath.Join("..", "..", "..", "..", "victim")),
		digest.Digest("sha256:" + victim),
		digest.Digest("../../../victim:" + sum),
		digest.Digest("sha256:" + sum + "/../../../../../victim"),
	}
	for _, d := range crafted {
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, storage.ErrInvalidDigest) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidDigest", d, err)
		}
		if err := s.Delete(t.Context(), d); !errors.Is(err, storage.ErrInvalidDigest) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidDigest", d, err)
		}
		if _, err := s.Create(t.Context(), d); !errors.Is(err, storage.ErrInvalidDigest) {
			t.Errorf("Create(%q) = %v, want ErrInvalidDigest", d, err)
		}
	}
	got, err := os.ReadFile(victim)
	if err != nil || string(got) != "keep me" {
		t.Fatalf("victim file = %q, %v; want it untouched", got, err)
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"store", "victim"}) {
		t.Fatalf("parent of the root holds %v, want [store victim]", names)
	}
}

func TestNewErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := New(file); err == nil {
		s.Close()
		t.Fatal("New on a regular file succeeded")
	}
	if s, err := New(filepath.Join(file, "below")); err == nil {
		s.Close()
		t.Fatal("New below a regular file succeeded")
	}
}

func TestClosedStore(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dgst := put(t, s, []byte("still readable"))
	b, err := s.Open(t.Context(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), dgst); err == nil {
		t.Fatal("Stat on a closed store succeeded")
	}
	p := make([]byte, b.Size())
	if _, err := b.ReadAt(p, 0); err != nil || string(p) != "still readable" {
		t.Fatalf("a Blob opened before Close read %q, %v", p, err)
	}
}

// FuzzDigestPath checks that no string, used as a digest, yields a path
// outside the blobs tree, and that the store's methods refuse it cleanly.
func FuzzDigestPath(f *testing.F) {
	hex := digest.FromString("x").Encoded()
	for _, seed := range []string{
		"sha256:" + hex,
		"sha512:" + digest.SHA512.FromString("x").Encoded(),
		"", "sha256:", ":", "sha256:../../etc/passwd", "sha256:" + strings.ToUpper(hex),
		"sha256:" + hex[:63], "md5:d41d8cd98f00b204e9800998ecf8427e",
		"sha256:" + hex[:10] + "\x00" + hex[11:], "sha256:" + hex[:2] + "/" + hex[3:],
		"../sha256:" + hex, "sha256:" + hex + "/..", "sha384:" + hex + hex[:32],
	} {
		f.Add(seed)
	}
	s, err := New(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, in string) {
		dgst := digest.Digest(in)
		p, err := blobPath(dgst)
		if err != nil {
			if !errors.Is(err, storage.ErrInvalidDigest) {
				t.Fatalf("blobPath(%q) error %v does not wrap ErrInvalidDigest", in, err)
			}
		} else {
			if !fs.ValidPath(p) || !strings.HasPrefix(p, blobsDir+"/") || strings.Contains(p, "..") {
				t.Fatalf("blobPath(%q) = %q, outside %s/", in, p, blobsDir)
			}
			parts := strings.Split(p, "/")
			if len(parts) != 4 || parts[3] != dgst.Encoded() || parts[2] != parts[3][:2] {
				t.Fatalf("blobPath(%q) = %q, not blobs/<alg>/<xx>/<hex>", in, p)
			}
		}
		_, serr := s.Stat(t.Context(), dgst)
		switch {
		case err != nil && !errors.Is(serr, storage.ErrInvalidDigest):
			t.Fatalf("Stat(%q) = %v, want ErrInvalidDigest", in, serr)
		case err == nil && !errors.Is(serr, storage.ErrNotFound):
			t.Fatalf("Stat(%q) = %v, want ErrNotFound", in, serr)
		}
	})
}

func TestAdopterConformance(t *testing.T) {
	storagetest.RunAdopter(t, func(t *testing.T) (storage.Store, string) {
		return newStore(t, t.TempDir()), t.TempDir()
	})
}

// TestAdoptAcrossFilesystems checks that a file on another filesystem is
// refused with storage.ErrCannotAdopt and left where it was.
func TestAdoptAcrossFilesystems(t *testing.T) {
	s := newStore(t, t.TempDir())
	other, err := os.MkdirTemp("/dev/shm", "eagle-adopt-")
	if err != nil {
		t.Skipf("no /dev/shm to put a file on another filesystem: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	var st, so syscall.Statfs_t
	if syscall.Statfs(s.Root(), &st) != nil || syscall.Statfs(other, &so) != nil || st.Fsid == so.Fsid {
		t.Skip("/dev/shm is on the store's filesystem")
	}
	if s.CanAdopt(other) {
		t.Error("CanAdopt is true for a directory on another filesystem")
	}
	data := []byte("bytes on another filesystem")
	dgst := digest.FromBytes(data)
	path, v := storagetest.FileToAdopt(t, other, dgst, data)
	if _, err := s.Adopt(t.Context(), path, v); !errors.Is(err, storage.ErrCannotAdopt) {
		t.Fatalf("Adopt across filesystems: %v, want ErrCannotAdopt", err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the refused file changed: %q, %v", got, err)
	}
	if _, err := s.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat after a refused adoption: %v", err)
	}
}

// TestInstallFailureLeavesNothing makes the last step of a commit and of an
// adoption fail (a directory squats where the blob belongs, so the rename
// onto it fails) and checks that neither leaves a file behind in tmp/ or
// reports the blob as stored.
func TestInstallFailureLeavesNothing(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	data := []byte("bytes that cannot be installed")
	dgst := digest.FromBytes(data)
	hex := dgst.Encoded()
	squat := filepath.Join(root, "blobs", "sha256", hex[:2], hex)
	if err := os.MkdirAll(filepath.Join(squat, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	checkClean := func(t *testing.T) {
		t.Helper()
		tmp, err := os.ReadDir(filepath.Join(root, "tmp"))
		if err != nil || len(tmp) != 0 {
			t.Errorf("tmp/ holds %v (err %v), want nothing", tmp, err)
		}
		if _, err := s.Stat(t.Context(), dgst); err == nil {
			t.Error("Stat reports the blob as stored")
		}
		if fi, err := os.Stat(squat); err != nil || !fi.IsDir() {
			t.Errorf("the squatting directory changed: %v", err)
		}
	}
	t.Run("commit", func(t *testing.T) {
		w, err := s.Create(t.Context(), dgst)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(t.Context()); err == nil {
			t.Fatal("Commit onto a directory succeeded")
		}
		checkClean(t)
	})
	t.Run("adopt", func(t *testing.T) {
		path, v := storagetest.FileToAdopt(t, t.TempDir(), dgst, data)
		if !s.CanAdopt(filepath.Dir(path)) {
			t.Skip("the test's temporary directories are on different filesystems")
		}
		if _, err := s.Adopt(t.Context(), path, v); err == nil {
			t.Fatal("Adopt onto a directory succeeded")
		}
		checkClean(t)
	})
}
