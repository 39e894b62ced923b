package serve_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eagle-p2p/eagle/internal/serve"
)

// failing is a collector whose Collect fails, as a peer store that is down.
type failing struct{ desc *prometheus.Desc }

func (f failing) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }
func (f failing) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(f.desc, errors.New("store down"))
}

func TestHandler(t *testing.T) {
	reg := serve.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "eagle_test_total", Help: "Test."})
	c.Add(3)
	reg.MustRegister(c, failing{prometheus.NewDesc("eagle_test_broken", "Broken.", nil, nil)})
	var appPaths []string
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		appPaths = append(appPaths, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	var notReady error
	ready := func(context.Context) error { return notReady }
	h := serve.Handler(app, reg, ready, slog.New(slog.DiscardHandler))

	do := func(method, target string) (int, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, "http://node"+target, nil)
		req.URL.Path = target // as sent, uncleaned
		h.ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}

	code, body := do(http.MethodGet, "/metrics")
	if code != http.StatusOK || !strings.Contains(body, "eagle_test_total 3") || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_") {
		t.Errorf("/metrics: %d, body lacks the counter or the Go/process collectors:\n%.500s", code, body)
	}
	if strings.Contains(body, "eagle_test_broken") {
		t.Error("/metrics served a metric whose collector failed")
	}
	if code, body := do(http.MethodGet, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := do(http.MethodGet, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready: %d", code)
	}
	notReady = errors.New("engine stopped")
	if code, body := do(http.MethodGet, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "engine stopped") {
		t.Errorf("/readyz when not ready: %d %q", code, body)
	}
	if code, _ := do(http.MethodPost, "/metrics"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d, want 405", code)
	}
	if code, _ := do(http.MethodHead, "/healthz"); code != http.StatusOK {
		t.Errorf("HEAD /healthz: %d", code)
	}
	// Everything else reaches the app exactly as sent.
	for _, p := range []string{"/v2/", "/v2//a/../b/blobs/sha256:x", "/metrics/", "/announce"} {
		if code, _ := do(http.MethodGet, p); code != http.StatusTeapot {
			t.Errorf("GET %s: %d, want the app's 418", p, code)
		}
	}
	want := "GET /v2/,GET /v2//a/../b/blobs/sha256:x,GET /metrics/,GET /announce"
	if got := strings.Join(appPaths, ","); got != want {
		t.Errorf("app saw %s, want %s", got, want)
	}

	// No app: 404.
	rec := httptest.NewRecorder()
	serve.Handler(nil, reg, nil, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("no app: %d, want 404", rec.Code)
	}
}
