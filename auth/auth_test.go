package auth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/logbuf"
	"github.com/eagle-p2p/eagle/internal/origin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The registry's notification broadcaster, which nothing can stop
		// (see origin.Registry.Close).
		goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"),
	)
}

// registry is an httptest origin that counts the HEADs it gets, per
// request path and in all, and answers them with answer.
type registry struct {
	*httptest.Server
	mu     sync.Mutex
	heads  int
	paths  map[string]int
	authz  []string // Authorization of each HEAD, in order
	answer http.HandlerFunc
}

// newRegistry starts a registry that answers every HEAD with answer (nil:
// 200), and closes it at the end of the test.
func newRegistry(t *testing.T, answer http.HandlerFunc) *registry {
	t.Helper()
	r := &registry{paths: make(map[string]int), answer: answer}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodHead {
			t.Errorf("origin got %s %s, want only HEADs", req.Method, req.URL.Path)
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		r.mu.Lock()
		r.heads++
		r.paths[req.URL.Path]++
		r.authz = append(r.authz, req.Header.Get("Authorization"))
		r.mu.Unlock()
		if r.answer == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		r.answer(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

// HEADs is the number of HEADs the registry got.
func (r *registry) HEADs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.heads
}

// newAuthorizer returns an Authorizer for cfg, closed at the end of the test.
func newAuthorizer(t *testing.T, cfg auth.Config) *auth.Authorizer {
	t.Helper()
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a
}

var (
	dgstA = digest.FromString("layer a")
	dgstB = digest.FromString("layer b")
)

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func wantHEADs(t *testing.T, r *registry, want int, after string) {
	t.Helper()
	if got := r.HEADs(); got != want {
		t.Fatalf("after %s: origin got %d HEADs, want %d", after, got, want)
	}
}

// A yes is reused for the same credential, upstream, repository and
// digest, and for nothing else.
func TestAuthorizeCachesYesPerKey(t *testing.T) {
	reg := newRegistry(t, nil)
	other := newRegistry(t, nil)
	a := newAuthorizer(t, auth.Config{TTL: time.Hour})
	ctx := t.Context()
	ref := blob.Ref{Upstream: reg.URL, Repository: "team/app", Digest: dgstA, Authorization: basic("alice", "s3cret")}

	if err := a.Authorize(ctx, ref); err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	wantHEADs(t, reg, 1, "the first Authorize")
	reg.mu.Lock()
	path, authz := "/v2/team/app/blobs/"+dgstA.String(), reg.authz[0]
	n := reg.paths[path]
	reg.mu.Unlock()
	if n != 1 || authz != ref.Authorization {
		t.Fatalf("origin got HEAD %s %d times with Authorization %q; want once with the client's %q", path, n, authz, ref.Authorization)
	}
	for range 3 {
		if err := a.Authorize(ctx, ref); err != nil {
			t.Fatalf("Authorize (cached): %v", err)
		}
	}
	wantHEADs(t, reg, 1, "repeating the same Authorize")

	steps := []struct {
		name string
		ref  blob.Ref
	}{
		{"another credential", blob.Ref{Upstream: reg.URL, Repository: "team/app", Digest: dgstA, Authorization: basic("bob", "hunter2")}},
		{"no credential", blob.Ref{Upstream: reg.URL, Repository: "team/app", Digest: dgstA}},
		{"another repository", blob.Ref{Upstream: reg.URL, Repository: "team/other", Digest: dgstA, Authorization: ref.Authorization}},
		{"another digest", blob.Ref{Upstream: reg.URL, Repository: "team/app", Digest: dgstB, Authorization: ref.Authorization}},
	}
	for i, s := range steps {
		if err := a.Authorize(ctx, s.ref); err != nil {
			t.Fatalf("%s: Authorize: %v", s.name, err)
		}
		wantHEADs(t, reg, 2+i, s.name)
		if err := a.Authorize(ctx, s.ref); err != nil {
			t.Fatalf("%s: Authorize (cached): %v", s.name, err)
		}
		wantHEADs(t, reg, 2+i, s.name+", asked twice")
	}

	// The same repository and digest at another upstream is another blob.
	otherRef := ref
	otherRef.Upstream = other.URL
	if err := a.Authorize(ctx, otherRef); err != nil {
		t.Fatalf("other upstream: Authorize: %v", err)
	}
	wantHEADs(t, other, 1, "asking about another upstream")
	wantHEADs(t, reg, 1+len(steps), "asking about another upstream")
}

// A yes is reused only for TTL.
func TestAuthorizeAsksAgainAfterTTL(t *testing.T) {
	reg := newRegistry(t, nil)
	const ttl = 50 * time.Millisecond
	a := newAuthorizer(t, auth.Config{TTL: ttl})
	ref := blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstA}
	if err := a.Authorize(t.Context(), ref); err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	time.Sleep(3 * ttl)
	if err := a.Authorize(t.Context(), ref); err != nil {
		t.Fatalf("Authorize after TTL: %v", err)
	}
	wantHEADs(t, reg, 2, "asking again after the TTL")
}

// A negative TTL disables the cache.
func TestAuthorizeNegativeTTLNeverCaches(t *testing.T) {
	reg := newRegistry(t, nil)
	a := newAuthorizer(t, auth.Config{TTL: -1})
	ref := blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstA, Authorization: basic("alice", "s3cret")}
	for i := 1; i <= 3; i++ {
		if err := a.Authorize(t.Context(), ref); err != nil {
			t.Fatalf("Authorize %d: %v", i, err)
		}
		wantHEADs(t, reg, i, fmt.Sprintf("Authorize %d", i))
	}
}

// An origin's refusal comes back as a *blob.OriginError with the headers a
// client needs, is never cached, and carries nothing of the origin's
// answer but its status.
func TestAuthorizeRefusals(t *testing.T) {
	for _, tc := range []struct {
		status                int
		challenge, retryAfter string
	}{
		{http.StatusUnauthorized, `Bearer realm="https://auth.example/token",service="registry",scope="repository:app:pull"`, ""},
		{http.StatusForbidden, "", ""},
		{http.StatusNotFound, "", ""},
		{http.StatusTooManyRequests, "", "120"},
		{http.StatusTeapot, "", ""},
	} {
		t.Run(statusName(tc.status), func(t *testing.T) {
			reg := newRegistry(t, func(w http.ResponseWriter, _ *http.Request) {
				if tc.challenge != "" {
					w.Header().Set("WWW-Authenticate", tc.challenge)
				}
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.Header().Set("X-Origin-Detail", "internal-detail-header")
				w.WriteHeader(tc.status)
			})
			a := newAuthorizer(t, auth.Config{TTL: time.Hour})
			ref := blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstA, Authorization: basic("alice", "wrong")}
			for i := 1; i <= 2; i++ {
				err := a.Authorize(t.Context(), ref)
				var oe *blob.OriginError
				if !errors.As(err, &oe) {
					t.Fatalf("Authorize %d: %v (%T), want a *blob.OriginError", i, err, err)
				}
				if oe.StatusCode != tc.status || oe.WWWAuthenticate != tc.challenge || oe.RetryAfter != tc.retryAfter {
					t.Fatalf("Authorize %d: %+v, want status %d, WWW-Authenticate %q, Retry-After %q", i, oe, tc.status, tc.challenge, tc.retryAfter)
				}
				if errors.Is(err, auth.ErrUnavailable) {
					t.Fatalf("Authorize %d: a refusal %v wraps ErrUnavailable", i, err)
				}
				if strings.Contains(err.Error(), "internal-detail") {
					t.Fatalf("Authorize %d: error %q carries an origin header", i, err)
				}
				wantHEADs(t, reg, i, fmt.Sprintf("refusal %d", i))
			}
		})
	}
}

func statusName(status int) string { return fmt.Sprintf("%d", status) }

// rawOrigin starts a server that answers every request with the raw HTTP
// response resp, byte for byte, whatever the method: an origin that sends
// a body after a HEAD's headers and a reason phrase of its own.
func rawOrigin(t *testing.T, resp string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString(resp)
		_ = buf.Flush()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Nothing the origin wrote besides its status code and the two headers
// reaches the error: not its body, not its reason phrase.
func TestAuthorizeErrorsCarryNoOriginText(t *testing.T) {
	const (
		body   = `{"errors":[{"code":"DENIED","message":"secret-bucket-name","detail":"10.1.2.3:9000"}]}`
		reason = "Denied by internal-policy-engine"
	)
	for _, status := range []int{http.StatusForbidden, http.StatusInternalServerError} {
		t.Run(statusName(status), func(t *testing.T) {
			srv := rawOrigin(t, fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", status, reason, len(body), body))
			a := newAuthorizer(t, auth.Config{})
			err := a.Authorize(t.Context(), blob.Ref{Upstream: srv.URL, Repository: "app", Digest: dgstA})
			if err == nil {
				t.Fatal("Authorize: nil, want a refusal")
			}
			var oe *blob.OriginError
			if status < 500 && (!errors.As(err, &oe) || oe.StatusCode != status) {
				t.Fatalf("Authorize: %v, want a *blob.OriginError with status %d", err, status)
			}
			if status >= 500 && !errors.Is(err, auth.ErrUnavailable) {
				t.Fatalf("Authorize: %v, want ErrUnavailable", err)
			}
			msg := err.Error()
			for _, leak := range []string{"DENIED", "secret-bucket-name", "10.1.2.3", "errors", "internal-policy-engine", "Denied", "application/json"} {
				if strings.Contains(msg, leak) {
					t.Fatalf("error %q carries %q from the origin's answer", msg, leak)
				}
			}
		})
	}
}

// Concurrent checks of one key make one HEAD; a caller that stops waiting
// gets its context's error and does not fail the others.
func TestAuthorizeJoinsConcurrentChecks(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	reg := newRegistry(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusOK)
	})
	// No cache: a caller that did not join the running check would make
	// a HEAD of its own, even after the check ended.
	a := newAuthorizer(t, auth.Config{TTL: -1})
	ref := blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstA, Authorization: basic("alice", "s3cret")}

	const callers = 8
	errs := make(chan error, callers)
	for range callers {
		go func() { errs <- a.Authorize(t.Context(), ref) }()
	}
	<-started
	impatient, stop := context.WithCancel(t.Context())
	impatientErr := make(chan error, 1)
	go func() { impatientErr <- a.Authorize(impatient, ref) }()
	waitForWaiters(t, callers+1)

	stop()
	select {
	case err := <-impatientErr:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("impatient caller: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a caller whose context ended is still waiting for the origin")
	}
	select {
	case err := <-errs:
		t.Fatalf("a caller returned (%v) before the origin answered", err)
	default:
	}

	close(release)
	for range callers {
		if err := <-errs; err != nil {
			t.Errorf("Authorize: %v", err)
		}
	}
	wantHEADs(t, reg, 1, "concurrent checks of one key")
}

// waitForWaiters waits until n goroutines wait in Authorize for a check's
// answer: they have joined a check, cached or not.
func waitForWaiters(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		for {
			m := runtime.Stack(buf, true)
			if m < len(buf) {
				buf = buf[:m]
				break
			}
			buf = make([]byte, 2*len(buf))
		}
		got := 0
		for _, g := range strings.Split(string(buf), "\n\n") {
			header, frames, _ := strings.Cut(g, "\n")
			if strings.Contains(header, "[select") && strings.Contains(frames, "/auth.(*Authorizer).Authorize(") {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines wait for an answer in Authorize, want %d", got, n)
		}
		buf = buf[:cap(buf)]
		time.Sleep(5 * time.Millisecond)
	}
}

// Forget drops the yes of every credential for one blob, and of nothing
// else.
func TestForget(t *testing.T) {
	reg := newRegistry(t, nil)
	a := newAuthorizer(t, auth.Config{TTL: time.Hour})
	ctx := t.Context()
	refs := []blob.Ref{
		{Upstream: reg.URL, Repository: "app", Digest: dgstA, Authorization: basic("alice", "s3cret")},
		{Upstream: reg.URL, Repository: "app", Digest: dgstA, Authorization: basic("bob", "hunter2")},
		{Upstream: reg.URL, Repository: "app", Digest: dgstA},
	}
	kept := []blob.Ref{
		{Upstream: reg.URL, Repository: "app", Digest: dgstB, Authorization: basic("alice", "s3cret")},
		{Upstream: reg.URL, Repository: "other", Digest: dgstA, Authorization: basic("alice", "s3cret")},
	}
	for _, ref := range append(refs, kept...) {
		if err := a.Authorize(ctx, ref); err != nil {
			t.Fatalf("Authorize: %v", err)
		}
	}
	n := len(refs) + len(kept)
	wantHEADs(t, reg, n, "filling the cache")

	a.Forget(reg.URL, "app", dgstA)
	for i, ref := range refs {
		if err := a.Authorize(ctx, ref); err != nil {
			t.Fatalf("Authorize after Forget: %v", err)
		}
		wantHEADs(t, reg, n+i+1, fmt.Sprintf("asking about forgotten answer %d", i))
	}
	for _, ref := range kept {
		if err := a.Authorize(ctx, ref); err != nil {
			t.Fatalf("Authorize: %v", err)
		}
	}
	wantHEADs(t, reg, n+len(refs), "asking about blobs Forget did not name")
}

// An answer that was on its way while Forget ran is not cached, and a
// check after Forget does not join one started before it.
func TestForgetDuringCheck(t *testing.T) {
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	reg := newRegistry(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusOK)
	})
	a := newAuthorizer(t, auth.Config{TTL: time.Hour})
	ref := blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstA, Authorization: basic("alice", "s3cret")}

	before := make(chan error, 1)
	go func() { before <- a.Authorize(t.Context(), ref) }()
	<-arrived // the check is at the origin

	a.Forget(reg.URL, "app", dgstA)
	after := make(chan error, 1)
	go func() { after <- a.Authorize(t.Context(), ref) }()
	select {
	case <-arrived: // a check of its own, not the one from before Forget
	case <-time.After(10 * time.Second):
		t.Fatal("a check after Forget joined the one started before it")
	}
	close(release)
	if err := <-before; err != nil {
		t.Fatalf("Authorize before Forget: %v", err)
	}
	if err := <-after; err != nil {
		t.Fatalf("Authorize after Forget: %v", err)
	}
	wantHEADs(t, reg, 2, "a check before and one after Forget")

	// The check started after Forget cached its answer.
	if err := a.Authorize(t.Context(), ref); err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	wantHEADs(t, reg, 2, "asking again: the answer after Forget is cached")
}

// An answer that arrives after Forget, for a check that started before
// it, is not cached.
func TestForgetDropsAnswerInFlight(t *testing.T) {
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	var gate atomic.Bool
	gate.Store(true)
	reg := newRegistry(t, func(w http.ResponseWriter, r *http.Request) {
		if gate.Load() {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	a := newAuthorizer(t, auth.Config{TTL: time.Hour})
	ref := blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstA, Authorization: basic("alice", "s3cret")}

	done := make(chan error, 1)
	go func() { done <- a.Authorize(t.Context(), ref) }()
	<-arrived
	a.Forget(reg.URL, "app", dgstA)
	gate.Store(false)
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	if err := a.Authorize(t.Context(), ref); err != nil {
		t.Fatalf("Authorize after Forget: %v", err)
	}
	wantHEADs(t, reg, 2, "asking again after an answer that raced Forget")
}

// An origin that fails (5xx) or does not answer makes the check
// ErrUnavailable, with no network detail in the text, and nothing cached.
func TestAuthorizeUnavailable(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable} {
		t.Run(statusName(status), func(t *testing.T) {
			reg := newRegistry(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) })
			a := newAuthorizer(t, auth.Config{TTL: time.Hour})
			ref := blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstA}
			for i := 1; i <= 2; i++ {
				err := a.Authorize(t.Context(), ref)
				var oe *blob.OriginError
				if !errors.Is(err, auth.ErrUnavailable) || errors.As(err, &oe) {
					t.Fatalf("Authorize: %v, want ErrUnavailable and no OriginError", err)
				}
				wantHEADs(t, reg, i, fmt.Sprintf("failure %d", i))
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		// A port nothing listens on: bind one, then let it go.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		a := newAuthorizer(t, auth.Config{})
		err = a.Authorize(t.Context(), blob.Ref{Upstream: "http://" + addr, Repository: "app", Digest: dgstA})
		if !errors.Is(err, auth.ErrUnavailable) {
			t.Fatalf("Authorize: %v, want ErrUnavailable", err)
		}
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			t.Fatalf("Authorize: %v wraps the network error", err)
		}
		for _, leak := range []string{"refused", "connect", "dial", "tcp"} {
			if strings.Contains(strings.ToLower(err.Error()), leak) {
				t.Fatalf("error %q says %q: a client could scan ports with it", err, leak)
			}
		}
	})

	t.Run("timeout", func(t *testing.T) {
		reg := newRegistry(t, func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		})
		a := newAuthorizer(t, auth.Config{Timeout: 100 * time.Millisecond})
		// The caller would wait longer: only Timeout can end the check.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		err := a.Authorize(ctx, blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstA})
		if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			t.Fatalf("Authorize: %v, want ErrUnavailable from the check's timeout", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a hanging origin held Authorize for %v with a 100ms timeout", d)
		}
	})

	t.Run("not a base URL", func(t *testing.T) {
		a := newAuthorizer(t, auth.Config{})
		for _, up := range []string{"", "ftp://example.com", "file:///etc/passwd", "127.0.0.1:5000", "http://"} {
			if err := a.Authorize(t.Context(), blob.Ref{Upstream: up, Repository: "app", Digest: dgstA}); !errors.Is(err, auth.ErrUnavailable) {
				t.Errorf("upstream %q: %v, want ErrUnavailable", up, err)
			}
		}
	})
}

// An upstream the operator did not configure counts only with Vouch's
// yes, asked after the origin's.
func TestAuthorizeUntrustedUpstream(t *testing.T) {
	trusted := newRegistry(t, nil)
	untrusted := newRegistry(t, nil)
	refusing := newRegistry(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	isTrusted := func(up string) bool { return up == trusted.URL }
	ref := func(r *registry) blob.Ref {
		return blob.Ref{Upstream: r.URL, Repository: "app", Digest: dgstA, Authorization: basic("alice", "s3cret")}
	}

	t.Run("no vouch", func(t *testing.T) {
		a := newAuthorizer(t, auth.Config{Trusted: isTrusted})
		before := untrusted.HEADs()
		if err := a.Authorize(t.Context(), ref(untrusted)); !errors.Is(err, auth.ErrUntrusted) {
			t.Fatalf("untrusted upstream that said yes: %v, want ErrUntrusted", err)
		}
		if untrusted.HEADs() != before+1 {
			t.Fatalf("the untrusted origin was not asked")
		}
		if err := a.Authorize(t.Context(), ref(trusted)); err != nil {
			t.Fatalf("trusted upstream: %v", err)
		}
	})

	t.Run("vouch", func(t *testing.T) {
		var (
			mu    sync.Mutex
			calls []blob.Ref
			heads []int // the untrusted origin's HEADs at each call
			veto  error
		)
		errVeto := errors.New("no seeder fetched it from there")
		a := newAuthorizer(t, auth.Config{Trusted: isTrusted, TTL: time.Hour, Vouch: func(ctx context.Context, r blob.Ref) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, r)
			heads = append(heads, untrusted.HEADs())
			return veto
		}})
		vouches := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(calls)
		}

		if err := a.Authorize(t.Context(), ref(trusted)); err != nil {
			t.Fatalf("trusted upstream: %v", err)
		}
		if n := vouches(); n != 0 {
			t.Fatalf("Vouch called %d times for a trusted upstream", n)
		}

		var oe *blob.OriginError
		if err := a.Authorize(t.Context(), ref(refusing)); !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized {
			t.Fatalf("untrusted upstream that said no: %v, want its 401", err)
		}
		if n := vouches(); n != 0 {
			t.Fatalf("Vouch called %d times for an origin that said no", n)
		}

		mu.Lock()
		veto = errVeto
		mu.Unlock()
		before := untrusted.HEADs()
		if err := a.Authorize(t.Context(), ref(untrusted)); !errors.Is(err, errVeto) {
			t.Fatalf("Vouch said no: %v, want Vouch's error", err)
		}
		if n := vouches(); n != 1 || calls[0] != ref(untrusted) {
			t.Fatalf("Vouch calls: %+v, want one with %+v", calls, ref(untrusted))
		}
		if heads[0] != before+1 {
			t.Fatalf("Vouch called before the origin answered (%d HEADs then, %d before the check)", heads[0], before)
		}
		wantHEADs(t, untrusted, before+1, "a vetoed check")

		// Vouch's no is not cached either.
		mu.Lock()
		veto = nil
		mu.Unlock()
		if err := a.Authorize(t.Context(), ref(untrusted)); err != nil {
			t.Fatalf("Vouch said yes: %v", err)
		}
		wantHEADs(t, untrusted, before+2, "asking again after a veto")
		if n := vouches(); n != 2 {
			t.Fatalf("Vouch called %d times, want 2", n)
		}

		// A yes with Vouch's yes is cached: neither is asked again.
		if err := a.Authorize(t.Context(), ref(untrusted)); err != nil {
			t.Fatalf("Authorize (cached): %v", err)
		}
		wantHEADs(t, untrusted, before+2, "a cached vouched yes")
		if n := vouches(); n != 2 {
			t.Fatalf("Vouch called %d times for a cached yes, want 2", n)
		}
	})
}

// A redirect is a yes: the origin accepted the credential and sends the
// client to its storage, which is not contacted.
func TestAuthorizeDoesNotFollowRedirects(t *testing.T) {
	var storageHits atomic.Int32
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		storageHits.Add(1)
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(storage.Close)
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusFound, http.StatusPermanentRedirect} {
		reg := newRegistry(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, storage.URL+"/bucket/blob?sig=x", status)
		})
		a := newAuthorizer(t, auth.Config{})
		if err := a.Authorize(t.Context(), blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstA}); err != nil {
			t.Fatalf("%d redirect: %v, want a yes", status, err)
		}
	}
	if n := storageHits.Load(); n != 0 {
		t.Fatalf("the redirect's Location was contacted %d times", n)
	}
}

// Close cancels the checks under way and makes later ones fail with
// ErrClosed.
func TestClose(t *testing.T) {
	arrived := make(chan struct{}, 1)
	reg := newRegistry(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // hangs until the client goes away
	})
	a, err := auth.New(auth.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ref := blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstA}
	done := make(chan error, 1)
	go func() { done <- a.Authorize(context.Background(), ref) }()
	<-arrived

	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for a check at a hanging origin")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a check cancelled by Close said yes")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a check under way did not end with Close")
	}
	heads := reg.HEADs()
	if err := a.Authorize(t.Context(), blob.Ref{Upstream: reg.URL, Repository: "app", Digest: dgstB}); !errors.Is(err, auth.ErrClosed) {
		t.Fatalf("Authorize after Close: %v, want ErrClosed", err)
	}
	wantHEADs(t, reg, heads, "Authorize after Close")
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []auth.Config{{CacheSize: -1}, {Timeout: -time.Second}} {
		if a, err := auth.New(cfg); err == nil {
			a.Close()
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// Against the real registry with htpasswd: a right password reads, a wrong
// one and none get the registry's Basic challenge, a missing blob its 404.
func TestAuthorizeHtpasswdRegistry(t *testing.T) {
	reg, err := origin.Start(t.Context(), origin.Options{Htpasswd: map[string]string{"alice": "s3cret"}})
	if err != nil {
		t.Fatalf("origin.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := reg.Close(); err != nil {
			t.Errorf("origin Close: %v", err)
		}
	})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: origin.NewAuthTransport(tr, "alice", "s3cret")}
	im, err := origin.PushRandomImage(t.Context(), client, reg.URL, "team/app", "v1", []int64{4096}, 1)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	layer := im.Layers[0].Digest

	a := newAuthorizer(t, auth.Config{})
	ctx := t.Context()
	if err := a.Authorize(ctx, blob.Ref{Upstream: reg.URL, Repository: "team/app", Digest: layer, Authorization: basic("alice", "s3cret")}); err != nil {
		t.Fatalf("alice: %v", err)
	}
	for name, authz := range map[string]string{"wrong password": basic("alice", "guess"), "anonymous": ""} {
		err := a.Authorize(ctx, blob.Ref{Upstream: reg.URL, Repository: "team/app", Digest: layer, Authorization: authz})
		var oe *blob.OriginError
		if !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized || !strings.Contains(oe.WWWAuthenticate, origin.HtpasswdRealm) {
			t.Errorf("%s: %v, want a 401 with the registry's challenge", name, err)
		}
	}
	err = a.Authorize(ctx, blob.Ref{Upstream: reg.URL, Repository: "team/app", Digest: dgstA, Authorization: basic("alice", "s3cret")})
	var oe *blob.OriginError
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusNotFound {
		t.Errorf("missing blob: %v, want a 404", err)
	}
}

// Against the real registry with token auth: a token for one repository
// reads there and not in another, where the same digest also lives.
func TestAuthorizeTokenRegistry(t *testing.T) {
	ts, err := origin.StartTokenServer(t.Context(), map[string]string{"alice": "s3cret", "admin": "root"})
	if err != nil {
		t.Fatalf("StartTokenServer: %v", err)
	}
	t.Cleanup(func() {
		if err := ts.Close(); err != nil {
			t.Errorf("token server Close: %v", err)
		}
	})
	ts.Limit("alice", "team-a/*")
	reg, err := origin.Start(t.Context(), origin.Options{Token: ts.Auth()})
	if err != nil {
		t.Fatalf("origin.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := reg.Close(); err != nil {
			t.Errorf("origin Close: %v", err)
		}
	})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	admin := &http.Client{Transport: origin.NewAuthTransport(tr, "admin", "root")}
	var layer digest.Digest
	for _, repo := range []string{"team-a/app", "team-b/app"} {
		im, err := origin.PushRandomImage(t.Context(), admin, reg.URL, repo, "v1", []int64{4096}, 7)
		if err != nil {
			t.Fatalf("push %s: %v", repo, err)
		}
		layer = im.Layers[0].Digest // same seed: same layer in both
	}

	// alice's token, as a client would get it after the 401.
	q := url.Values{"service": {origin.TokenService}, "scope": {"repository:team-a/app:pull", "repository:team-b/app:pull"}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.Realm+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("alice", "s3cret")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || tok.Token == "" {
		t.Fatalf("token: status %d, %v", resp.StatusCode, err)
	}
	bearer := "Bearer " + tok.Token

	a := newAuthorizer(t, auth.Config{})
	if err := a.Authorize(t.Context(), blob.Ref{Upstream: reg.URL, Repository: "team-a/app", Digest: layer, Authorization: bearer}); err != nil {
		t.Fatalf("team-a: %v", err)
	}
	err = a.Authorize(t.Context(), blob.Ref{Upstream: reg.URL, Repository: "team-b/app", Digest: layer, Authorization: bearer})
	var oe *blob.OriginError
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized || !strings.Contains(oe.WWWAuthenticate, "Bearer") || !strings.Contains(oe.WWWAuthenticate, ts.Realm) {
		t.Fatalf("team-b with a team-a token: %v (%+v), want the registry's 401 Bearer challenge", err, oe)
	}
}

// An origin that takes more than 2 s to answer a check is named in a
// warning, with how long it took: every pull of the blob waited for it.
// A prompt answer logs nothing.
func TestAuthorizeWarnsOfASlowOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 2 s for a slow origin")
	}
	slow := atomic.Bool{}
	reg := newRegistry(t, func(w http.ResponseWriter, _ *http.Request) {
		if slow.Load() {
			time.Sleep(2100 * time.Millisecond)
		}
		w.WriteHeader(http.StatusOK)
	})
	var logs logbuf.Buffer
	a := newAuthorizer(t, auth.Config{TTL: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ref := blob.Ref{Upstream: reg.URL, Repository: "team/app", Digest: dgstA}
	if err := a.Authorize(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	if s := logs.String(); s != "" {
		t.Errorf("a prompt answer logged %q", s)
	}
	slow.Store(true)
	ref.Digest = dgstB
	if err := a.Authorize(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	s := logs.String()
	if !strings.Contains(s, "level=WARN") || !strings.Contains(s, "origin slow to answer") || !strings.Contains(s, "took=2.") || !strings.Contains(s, string(dgstB)) {
		t.Errorf("after a 2.1 s answer the log holds %q, want a warning naming the digest and the time", s)
	}
}
