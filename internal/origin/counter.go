package origin

import (
	"io"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/felixge/httpsnoop"
	"github.com/opencontainers/go-digest"
)

// blobPath matches the path of a blob request, /v2/<name>/blobs/<digest>.
var blobPath = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[a-f0-9]{64})$`)

// counter counts the blob GETs a registry answered with 200 or 206 and the
// body bytes they carried.
type counter struct {
	bytes atomic.Int64

	mu   sync.Mutex
	gets map[digest.Digest]int
}

func newCounter() *counter {
	return &counter{gets: make(map[digest.Digest]int)}
}

// middleware wraps next so that blob GETs are counted. A request is counted
// when its 200 or 206 status is written, and its bytes before they are
// handed on, so that a client that has read a whole blob sees it counted.
func (c *counter) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		m := blobPath.FindStringSubmatch(r.URL.Path)
		if m == nil {
			next.ServeHTTP(w, r)
			return
		}
		d := digest.Digest(m[2])
		// The handler's goroutine is the only one that writes to w, so
		// the state needs no lock.
		var headerDone, counted bool
		header := func(code int) {
			if headerDone {
				return
			}
			headerDone = true
			if code == http.StatusOK || code == http.StatusPartialContent {
				counted = true
				c.addGet(d)
			}
		}
		// addBytes counts n bytes about to be written and returns a
		// function that takes back the ones that were not.
		addBytes := func(n int64) func(int64) {
			if !counted {
				return func(int64) {}
			}
			c.bytes.Add(n)
			return func(written int64) { c.bytes.Add(written - n) }
		}
		w = httpsnoop.Wrap(w, httpsnoop.Hooks{
			WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
				return func(code int) {
					// Informational headers (103 Early Hints) precede
					// the real status.
					if code >= 200 {
						header(code)
					}
					next(code)
				}
			},
			Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
				return func(p []byte) (int, error) {
					header(http.StatusOK)
					undo := addBytes(int64(len(p)))
					n, err := next(p)
					undo(int64(n))
					return n, err
				}
			},
			ReadFrom: func(next httpsnoop.ReadFromFunc) httpsnoop.ReadFromFunc {
				return func(src io.Reader) (int64, error) {
					header(http.StatusOK)
					if !counted {
						return next(src)
					}
					// The size is unknown beforehand: count as the
					// bytes are read from src, which is before they
					// are written.
					cr := &countingReader{r: src, n: &c.bytes}
					n, err := next(cr)
					c.bytes.Add(n - cr.read)
					return n, err
				}
			},
		})
		next.ServeHTTP(w, r)
	})
}

func (c *counter) addGet(d digest.Digest) {
	c.mu.Lock()
	c.gets[d]++
	c.mu.Unlock()
}

// countingReader adds the bytes read through it to n.
type countingReader struct {
	r    io.Reader
	n    *atomic.Int64
	read int64
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.read += int64(n)
	cr.n.Add(int64(n))
	return n, err
}

// BlobGETs returns how many GET requests for blob d the registry answered
// with 200 or 206 since Start or the last ResetCounts. HEAD requests and
// answers with any other status are not counted.
func (r *Registry) BlobGETs(d digest.Digest) int {
	r.counts.mu.Lock()
	defer r.counts.mu.Unlock()
	return r.counts.gets[d]
}

// TotalBlobGETs returns how many blob GET requests, for any digest, the
// registry answered with 200 or 206 since Start or the last ResetCounts.
func (r *Registry) TotalBlobGETs() int {
	r.counts.mu.Lock()
	defer r.counts.mu.Unlock()
	total := 0
	for _, n := range r.counts.gets {
		total += n
	}
	return total
}

// BlobBytes returns how many body bytes the registry wrote in answers to the
// blob GETs that BlobGETs counts. A range request contributes the bytes of
// its range.
func (r *Registry) BlobBytes() int64 {
	return r.counts.bytes.Load()
}

// ResetCounts sets all counters to zero. Requests in flight keep counting
// the bytes they write after the reset.
func (r *Registry) ResetCounts() {
	r.counts.mu.Lock()
	clear(r.counts.gets)
	r.counts.bytes.Store(0)
	r.counts.mu.Unlock()
}
