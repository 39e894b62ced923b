package origin

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/internal/logbuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// handlers.NewApp starts a notification broadcaster that its App
		// never closes and that cannot be reached from outside; it idles
		// (no endpoints). See Registry.Close.
		goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"),
	)
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

// startRegistry starts a registry that the test closes at its end, and a
// client whose idle connections are closed then too.
func startRegistry(t *testing.T, opts Options) (*Registry, *http.Client) {
	t.Helper()
	reg, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		if err := reg.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return reg, client
}

// get sends a GET (or HEAD) with the given headers and returns the status,
// the response headers, the body's digest and its length, never holding the
// body in memory.
func get(t *testing.T, client *http.Client, method, url string, header http.Header) (int, http.Header, digest.Digest, int64) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, digest.NewDigest(digest.SHA256, h), n
}

func TestPushPullAndCount(t *testing.T) {
	reg, client := startRegistry(t, Options{})
	if !strings.HasPrefix(reg.Host, "127.0.0.1:") || reg.URL != "http://"+reg.Host {
		t.Fatalf("URL %q, Host %q: want http://127.0.0.1:<port>", reg.URL, reg.Host)
	}
	sizes := []int64{1 * mib, 5 * mib, 17*mib + 123}
	im, err := PushRandomImage(t.Context(), client, reg.URL, "eagle/app", "v1", sizes, 42)
	if err != nil {
		t.Fatalf("PushRandomImage: %v", err)
	}
	if reg.TotalBlobGETs() != 0 || reg.BlobBytes() != 0 {
		t.Fatalf("a push counted as GETs: %d GETs, %d bytes", reg.TotalBlobGETs(), reg.BlobBytes())
	}

	// The manifest the registry serves is the one described.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL+"/v2/eagle/app/manifests/v1", nil)
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest: status %d, %v", resp.StatusCode, err)
	}
	if d := digest.FromBytes(raw); d != im.Manifest.Digest || int64(len(raw)) != im.Manifest.Size {
		t.Fatalf("manifest served as %s (%d bytes), pushed as %s (%d bytes)", d, len(raw), im.Manifest.Digest, im.Manifest.Size)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest Content-Type %q", ct)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Config.Digest != im.Config.Digest || len(m.Layers) != len(sizes) {
		t.Fatalf("manifest %+v does not match image %+v", m, im)
	}
	for i, l := range m.Layers {
		if l.Digest != im.Layers[i].Digest || l.Size != sizes[i] || l.MediaType != ocispec.MediaTypeImageLayer {
			t.Errorf("layer %d: manifest has %+v, image %+v, size asked %d", i, l, im.Layers[i], sizes[i])
		}
	}

	// Every blob comes back with its digest and size, counted once.
	var total int64
	for _, b := range im.Blobs() {
		code, _, d, n := get(t, client, http.MethodGet, reg.URL+"/v2/eagle/app/blobs/"+b.Digest.String(), nil)
		if code != http.StatusOK || d != b.Digest || n != b.Size {
			t.Fatalf("GET blob %s: status %d, got %s, %d bytes, want %d bytes", b.Digest, code, d, n, b.Size)
		}
		total += n
		if got := reg.BlobGETs(b.Digest); got != 1 {
			t.Errorf("BlobGETs(%s) = %d after one GET", b.Digest, got)
		}
	}
	if got := reg.TotalBlobGETs(); got != len(sizes)+1 {
		t.Errorf("TotalBlobGETs = %d, want %d", got, len(sizes)+1)
	}
	if got := reg.BlobBytes(); got != total {
		t.Errorf("BlobBytes = %d, want %d", got, total)
	}

	layer := im.Layers[1]
	blobURL := reg.URL + "/v2/eagle/app/blobs/" + layer.Digest.String()
	// A HEAD, a miss and a manifest GET are not blob GETs.
	if code, _, _, _ := get(t, client, http.MethodHead, blobURL, nil); code != http.StatusOK {
		t.Fatalf("HEAD blob: status %d", code)
	}
	missing := digest.FromString("not pushed")
	if code, _, _, _ := get(t, client, http.MethodGet, reg.URL+"/v2/eagle/app/blobs/"+missing.String(), nil); code != http.StatusNotFound {
		t.Fatalf("GET missing blob: status %d", code)
	}
	if reg.BlobGETs(missing) != 0 || reg.BlobGETs(layer.Digest) != 1 || reg.BlobBytes() != total {
		t.Fatalf("HEAD or 404 counted: %d, %d GETs, %d bytes", reg.BlobGETs(missing), reg.BlobGETs(layer.Digest), reg.BlobBytes())
	}

	// A range GET counts as a GET of the bytes of its range, and they are
	// the right bytes.
	code, hdr, d, n := get(t, client, http.MethodGet, blobURL, http.Header{"Range": {"bytes=1000-1999"}})
	if code != http.StatusPartialContent || n != 1000 {
		t.Fatalf("range GET: status %d, %d bytes", code, n)
	}
	if cr := hdr.Get("Content-Range"); cr != fmt.Sprintf("bytes 1000-1999/%d", layer.Size) {
		t.Errorf("Content-Range %q", cr)
	}
	full, err := randomLayer("eagle-layer-1.bin", layerSeed(42, 1), layer.Size)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 2000)
	if _, err := io.ReadFull(full, want); err != nil {
		t.Fatal(err)
	}
	if d != digest.FromBytes(want[1000:]) {
		t.Errorf("range GET returned other bytes than the layer's 1000-1999")
	}
	if reg.BlobGETs(layer.Digest) != 2 || reg.BlobBytes() != total+1000 {
		t.Errorf("after a range GET: %d GETs, %d bytes; want 2, %d", reg.BlobGETs(layer.Digest), reg.BlobBytes(), total+1000)
	}

	reg.ResetCounts()
	if reg.TotalBlobGETs() != 0 || reg.BlobGETs(layer.Digest) != 0 || reg.BlobBytes() != 0 {
		t.Errorf("ResetCounts left %d GETs, %d bytes", reg.TotalBlobGETs(), reg.BlobBytes())
	}
}

// TestConcurrentGETs checks the counters under concurrent requests (run
// with -race to check the counter's locking).
func TestConcurrentGETs(t *testing.T) {
	reg, client := startRegistry(t, Options{})
	im, err := PushRandomImage(t.Context(), client, reg.URL, "eagle/conc", "latest", []int64{256 * kib, 3*kib + 7}, 7)
	if err != nil {
		t.Fatal(err)
	}
	const perBlob = 8
	var wg sync.WaitGroup
	for _, b := range im.Blobs() {
		for range perBlob {
			wg.Go(func() {
				code, _, d, _ := get(t, client, http.MethodGet, reg.URL+"/v2/eagle/conc/blobs/"+b.Digest.String(), nil)
				if code != http.StatusOK || d != b.Digest {
					t.Errorf("GET %s: status %d, digest %s", b.Digest, code, d)
				}
			})
		}
	}
	wg.Wait()
	var want int64
	for _, b := range im.Blobs() {
		if got := reg.BlobGETs(b.Digest); got != perBlob {
			t.Errorf("BlobGETs(%s) = %d, want %d", b.Digest, got, perBlob)
		}
		want += perBlob * b.Size
	}
	if reg.TotalBlobGETs() != perBlob*3 || reg.BlobBytes() != want {
		t.Errorf("TotalBlobGETs %d, BlobBytes %d; want %d, %d", reg.TotalBlobGETs(), reg.BlobBytes(), perBlob*3, want)
	}
}

func TestImageContent(t *testing.T) {
	reg, client := startRegistry(t, Options{})
	// Sizes around the smallest tar, a multiple of the block size, and none.
	sizes := []int64{0, 100, minTarLayer - 1, minTarLayer, 4 * tarBlock, 64*kib + 1}
	im, err := PushRandomImage(t.Context(), client, reg.URL, "eagle/content", "t", sizes, -5)
	if err != nil {
		t.Fatal(err)
	}

	// The config describes the platform and the layers.
	var cfg ocispec.Image
	if err := json.Unmarshal(fetch(t, client, reg.URL+"/v2/eagle/content/blobs/"+im.Config.Digest.String()), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || cfg.RootFS.Type != "layers" {
		t.Errorf("config platform %s/%s, rootfs %q", cfg.OS, cfg.Architecture, cfg.RootFS.Type)
	}
	if len(cfg.RootFS.DiffIDs) != len(sizes) || len(cfg.History) != len(sizes) {
		t.Fatalf("config has %d diff IDs, %d history entries, want %d", len(cfg.RootFS.DiffIDs), len(cfg.History), len(sizes))
	}
	for i, l := range im.Layers {
		if cfg.RootFS.DiffIDs[i] != l.Digest {
			t.Errorf("diff ID %d is %s, layer digest %s", i, cfg.RootFS.DiffIDs[i], l.Digest)
		}
		blob := fetch(t, client, reg.URL+"/v2/eagle/content/blobs/"+l.Digest.String())
		if int64(len(blob)) != sizes[i] {
			t.Fatalf("layer %d is %d bytes, want %d", i, len(blob), sizes[i])
		}
		if sizes[i] >= minTarLayer {
			checkTar(t, blob, fmt.Sprintf("eagle-layer-%d.bin", i), layerSeed(-5, i))
		}
	}
	if im.Layers[0].Digest != digest.FromBytes(nil) {
		t.Errorf("empty layer has digest %s", im.Layers[0].Digest)
	}

	// The same seed makes the same image; another seed another.
	again, err := PushRandomImage(t.Context(), client, reg.URL, "eagle/other", "t", sizes, -5)
	if err != nil {
		t.Fatal(err)
	}
	if again.Manifest.Digest != im.Manifest.Digest {
		t.Errorf("same seed, manifests %s and %s", im.Manifest.Digest, again.Manifest.Digest)
	}
	other, err := PushRandomImage(t.Context(), client, reg.URL, "eagle/other", "t2", sizes[1:2], -6)
	if err != nil {
		t.Fatal(err)
	}
	if other.Layers[0].Digest == im.Layers[1].Digest {
		t.Errorf("seeds -5 and -6 made the same layer")
	}
}

// fetch GETs a small blob whole.
func fetch(t *testing.T, client *http.Client, url string) []byte {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, %v", url, resp.StatusCode, err)
	}
	return b
}

// checkTar checks that blob is a tar of one file, name, holding the random
// bytes of seed.
func checkTar(t *testing.T, blob []byte, name string, seed uint64) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(blob))
	hdr, err := tr.Next()
	if err != nil {
		t.Fatalf("layer %s: %v", name, err)
	}
	if hdr.Name != name || hdr.Typeflag != tar.TypeReg || hdr.Size > int64(len(blob)) {
		t.Fatalf("tar entry %q type %c size %d", hdr.Name, hdr.Typeflag, hdr.Size)
	}
	got, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(RandomReader(seed, hdr.Size))
	if !bytes.Equal(got, want) {
		t.Errorf("layer %s: file content differs from RandomReader", name)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("layer %s: after the file: %v, want io.EOF", name, err)
	}
}

func TestPushErrors(t *testing.T) {
	reg, client := startRegistry(t, Options{})
	for _, tc := range []struct {
		name, base, repo, tag string
		sizes                 []int64
	}{
		{"upper-case repo", reg.URL, "Eagle/App", "v1", nil},
		{"empty repo", reg.URL, "", "v1", nil},
		{"repo with port", reg.URL, "127.0.0.1:5000/app", "v1", nil},
		{"bad tag", reg.URL, "eagle/app", "-v1", nil},
		{"empty tag", reg.URL, "eagle/app", "", nil},
		{"negative size", reg.URL, "eagle/app", "v1", []int64{1, -1}},
		{"no scheme", reg.Host, "eagle/app", "v1", nil},
		{"ftp", "ftp://" + reg.Host, "eagle/app", "v1", nil},
		{"query", reg.URL + "?x=1", "eagle/app", "v1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PushRandomImage(t.Context(), client, tc.base, tc.repo, tc.tag, tc.sizes, 1)
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
		})
	}

	// A registry that refuses answers with its status and error.
	_, err := PushRandomImage(t.Context(), client, reg.URL+"/nope", "eagle/app", "v1", []int64{10}, 1)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || se.Method != http.MethodPost {
		t.Fatalf("push under a wrong path: %v, want a 404 StatusError for the POST", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := PushRandomImage(ctx, client, reg.URL, "eagle/app", "v1", []int64{mib}, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("push with a canceled context: %v", err)
	}
	if reg.TotalBlobGETs() != 0 {
		t.Errorf("failed pushes counted %d GETs", reg.TotalBlobGETs())
	}
}

func TestCloseAndDir(t *testing.T) {
	reg, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	tmp := reg.Dir
	if _, err := PushRandomImage(t.Context(), nil, reg.URL, "eagle/tmp", "v1", []int64{10 * kib}, 1); err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary storage %s left behind: %v", tmp, err)
	}
	if _, err := http.Get(reg.URL + "/v2/"); err == nil {
		t.Errorf("registry still answers after Close")
	}

	// A given directory is kept, and a new registry on it serves what the
	// first one stored.
	dir := filepath.Join(t.TempDir(), "store")
	reg, client := startRegistry(t, Options{Dir: dir})
	im, err := PushRandomImage(t.Context(), client, reg.URL, "eagle/kept", "v1", []int64{10 * kib}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	reg2, client2 := startRegistry(t, Options{Dir: dir})
	code, _, d, _ := get(t, client2, http.MethodGet, reg2.URL+"/v2/eagle/kept/blobs/"+im.Layers[0].Digest.String(), nil)
	if code != http.StatusOK || d != im.Layers[0].Digest {
		t.Fatalf("blob from the kept directory: status %d, digest %s", code, d)
	}
}

func TestLogging(t *testing.T) {
	// The registry logs through the global logrus logger; capture what
	// reaches its output.
	std := logrus.StandardLogger()
	var logrusOut logbuf.Buffer
	oldOut := std.Out
	std.SetOutput(&logrusOut)
	t.Cleanup(func() { std.SetOutput(oldOut) })

	var slogOut logbuf.Buffer
	logged, loggedClient := startRegistry(t, Options{Logger: slog.New(slog.NewTextHandler(&slogOut, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	quiet, quietClient := startRegistry(t, Options{})
	get(t, loggedClient, http.MethodGet, logged.URL+"/v2/", nil)
	get(t, quietClient, http.MethodGet, quiet.URL+"/v2/nope/blobs/"+digest.FromString("x").String(), nil)
	logrus.Info("someone else's message")

	if s := slogOut.String(); !strings.Contains(s, "level=DEBUG") || !strings.Contains(s, "/v2/") {
		t.Errorf("the registry's request log did not reach its logger:\n%s", s)
	}
	if s := slogOut.String(); strings.Contains(s, "/v2/nope") {
		t.Errorf("another registry's log reached this logger:\n%s", s)
	}
	s := logrusOut.String()
	if strings.Contains(s, "/v2/") || strings.Contains(s, logIDPrefix) {
		t.Errorf("registry log entries reached logrus' output:\n%s", s)
	}
	if !strings.Contains(s, "someone else's message") {
		t.Errorf("other logrus users were silenced: %q", s)
	}
}

func TestLargePush(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 256 MiB")
	}
	reg, client := startRegistry(t, Options{})

	// Sample the heap while the push runs.
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	var peak uint64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
	}()

	const size = 256 * mib
	start := time.Now()
	im, err := PushRandomImage(t.Context(), client, reg.URL, "eagle/large", "v1", []int64{size}, 9)
	elapsed := time.Since(start)
	if err == nil {
		code, _, d, n := get(t, client, http.MethodGet, reg.URL+"/v2/eagle/large/blobs/"+im.Layers[0].Digest.String(), nil)
		if code != http.StatusOK || d != im.Layers[0].Digest || n != size {
			t.Errorf("GET large blob: status %d, digest %s, %d bytes", code, d, n)
		}
	}
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	growth := int64(peak) - int64(before)
	t.Logf("256 MiB push in %v (%.0f MB/s), heap growth %d KiB", elapsed, size/elapsed.Seconds()/1e6, growth/kib)
	if elapsed > 30*time.Second {
		t.Errorf("256 MiB push took %v", elapsed)
	}
	if growth > 32*mib {
		t.Errorf("heap grew by %d MiB during a 256 MiB push and pull", growth/mib)
	}
	if reg.BlobBytes() != size {
		t.Errorf("BlobBytes = %d, want %d", reg.BlobBytes(), size)
	}
}

// TestCounterKeepsFlusher checks that the counting wrapper still lets a
// handler flush (streamed blobs depend on it) and counts what it writes.
func TestCounterKeepsFlusher(t *testing.T) {
	c := newCounter()
	d := digest.FromString("blob")
	h := c.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(http.Flusher); !ok {
			t.Error("wrapped ResponseWriter is not an http.Flusher")
		}
		w.WriteHeader(http.StatusPartialContent)
		for range 3 {
			if _, err := w.Write([]byte("12345")); err != nil {
				t.Error(err)
			}
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/a/b/blobs/"+d.String(), nil))
	if !rec.Flushed || rec.Body.String() != "123451234512345" {
		t.Fatalf("flushed %v, body %q", rec.Flushed, rec.Body.String())
	}
	if c.gets[d] != 1 || c.bytes.Load() != 15 {
		t.Errorf("counted %d GETs, %d bytes; want 1, 15", c.gets[d], c.bytes.Load())
	}
	// Not a blob path, not a GET, not a 2xx: not counted.
	for _, req := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/v2/a/b/manifests/"+d.String(), nil),
		httptest.NewRequest(http.MethodHead, "/v2/a/b/blobs/"+d.String(), nil),
		httptest.NewRequest(http.MethodGet, "/v2/a/b/blobs/sha256:abc", nil),
	} {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	notFound := c.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "blob unknown", http.StatusNotFound)
	}))
	notFound.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v2/a/blobs/"+d.String(), nil))
	if len(c.gets) != 1 || c.gets[d] != 1 || c.bytes.Load() != 15 {
		t.Errorf("other requests counted: %v, %d bytes", c.gets, c.bytes.Load())
	}
}
