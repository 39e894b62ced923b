package preheat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/pull"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/proxy"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/seeder/preheat"
)

func TestMain(m *testing.M) {
	// containerd logs each fallback to its next host through logrus.
	logrus.SetLevel(logrus.WarnLevel)
	goleak.VerifyTestMain(m,
		// The registry's notification broadcaster and its endpoints'
		// queues, which nothing can stop (see origin.Registry.Close).
		goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"),
		goleak.IgnoreAnyFunction("github.com/distribution/distribution/v3/notifications.(*eventQueue).run"),
	)
}

const (
	secret = "s3cret-preheat"
	mib    = 1 << 20
)

// env is a cluster whose origin notifies every seeder's preheat endpoint.
type env struct {
	c        *cluster.Cluster
	services []*preheat.Service
	urls     []string // the preheat APIs' base URLs
}

type envOptions struct {
	agents    int
	platforms []string
	origin    origin.Options
	registry  preheat.Registry // credentials for the origin; Host and PlainHTTP are filled in
}

// startEnv starts the origin with a notification endpoint per seeder, the
// cluster, and one preheat service per seeder, each warming through a
// seeder.Client over the whole cluster, as the eagle seeder binary wires it.
func startEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	const seeders = 2
	var (
		lns []net.Listener
		e   = &env{}
	)
	for i := range seeders {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		e.urls = append(e.urls, "http://"+ln.Addr().String())
		o.origin.Notifications.Endpoints = append(o.origin.Notifications.Endpoints, configuration.Endpoint{
			Name:      fmt.Sprintf("seeder-%d", i),
			URL:       e.urls[i] + "/notifications",
			Headers:   http.Header{"Authorization": {"Bearer " + secret}},
			Timeout:   5 * time.Second,
			Threshold: 3,
			Backoff:   200 * time.Millisecond,
			// As README advises: the agents' and seeders' reads make
			// pull events, which would be queued and retried forever
			// once this test's endpoints are gone.
			Ignore: configuration.Ignore{Actions: []string{"pull"}},
		})
	}
	// The agents wait for bytes longer than in production: on 2 busy
	// cores (CI runs packages in parallel) a 503 would send containerd to
	// the origin, which is what the tests count.
	c, err := cluster.Start(t.Context(), cluster.Options{Dir: t.TempDir(), Seeders: seeders, Agents: o.agents, AnnounceInterval: time.Second, Origin: o.origin,
		ProxyConfig: proxy.Config{FirstByteTimeout: time.Minute, StallTimeout: time.Minute}})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		t.Fatal(err)
	}
	e.c = c
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	reg := o.registry
	reg.Host, reg.PlainHTTP = c.Origin.Host, true
	for i := range seeders {
		member, err := c.Member(fmt.Sprintf("preheat-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		creds, err := mtls.Load(member)
		if err != nil {
			t.Fatal(err)
		}
		client, err := seeder.NewClient(seeder.ClientConfig{Seeders: c.SeederAddrs(), Credentials: creds, HealthTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := preheat.New(preheat.Config{
			Secret: secret, AllowedUpstreams: []string{c.Origin.Host}, Registries: []preheat.Registry{reg}, Platforms: o.platforms,
		}, client)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Serve(lns[i])
		}()
		e.services = append(e.services, svc)
		t.Cleanup(func() {
			_ = srv.Close()
			<-done
			_ = svc.Close()
			_ = client.Close()
		})
	}
	return e
}

// waitJobs waits until every service has ended a job for image (as
// Job.Image names it) and returns them; each must be done.
func (e *env) waitJobs(t *testing.T, image string) []preheat.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out := make([]preheat.Job, len(e.services))
	for i, svc := range e.services {
		for {
			var found *preheat.Job
			for _, j := range svc.Jobs() {
				if j.Image == image {
					found = &j
					break
				}
			}
			if found != nil {
				j, err := svc.Wait(ctx, found.ID)
				if err != nil {
					t.Fatalf("seeder %d: %v", i, err)
				}
				if j.State != preheat.StateDone {
					t.Fatalf("seeder %d: job %s ended %s: %s %+v", i, j.ID, j.State, j.Error, j.Blobs)
				}
				out[i] = j
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("seeder %d: no preheat job for %s; jobs: %+v", i, image, svc.Jobs())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return out
}

// checkOneCopy checks that the origin served each of blobs exactly once
// and served nothing else.
func checkOneCopy(t *testing.T, reg *origin.Registry, blobs []ocispec.Descriptor) {
	t.Helper()
	var want int64
	for _, b := range blobs {
		if n := reg.BlobGETs(b.Digest); n != 1 {
			t.Errorf("origin served %s (%d bytes) %d times during the preheat, want once", b.Digest, b.Size, n)
		}
		want += b.Size
	}
	if got := reg.BlobBytes(); got != want {
		t.Errorf("origin served %d blob bytes during the preheat, want %d (one copy of each)", got, want)
	}
}

// pullThrough pulls ref through each agent at once and checks every blob.
func pullThrough(t *testing.T, agents []*cluster.Agent, ref string, platform ocispec.Platform, want []ocispec.Descriptor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	results := make([]pull.Result, len(agents))
	errs := make([]error, len(agents))
	for i, a := range agents {
		hosts := t.TempDir()
		if err := pull.WriteHostsTOML(hosts, strings.SplitN(ref, "/", 2)[0], a.URL); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = pull.Pull(ctx, ref, pull.Options{HostsDir: hosts, Platform: platform})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull through %s: %v", agents[i].Name, err)
		}
		if got := digests(results[i].Blobs); !equal(got, digests(want)) {
			t.Fatalf("pull through %s got blobs %v, want %v", agents[i].Name, got, digests(want))
		}
	}
}

func digests(ds []ocispec.Descriptor) []digest.Digest {
	out := make([]digest.Digest, len(ds))
	for i, d := range ds {
		out[i] = d.Digest
	}
	return out
}

func equal(a, b []digest.Digest) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPreheatOnPush: the registry notifies both seeders of a push; they
// preheat with one origin copy of each blob between them, and 4 agents
// then pull the image without the origin serving a blob byte.
func TestPreheatOnPush(t *testing.T) {
	e := startEnv(t, envOptions{agents: 4})
	reg := e.c.Origin
	im, err := origin.PushRandomImage(t.Context(), nil, reg.URL, "preheat/app", "v1", []int64{3 * mib, 2*mib + 123, 700 * 1024}, 17)
	if err != nil {
		t.Fatal(err)
	}
	jobs := e.waitJobs(t, reg.Host+"/preheat/app@"+im.Manifest.Digest.String())
	for i, j := range jobs {
		if j.Source != "notification" || len(j.Blobs) != len(im.Blobs()) {
			t.Fatalf("seeder %d: job %+v, want a notification job of %d blobs", i, j, len(im.Blobs()))
		}
		for k, b := range j.Blobs {
			if b.Digest != im.Blobs()[k].Digest || b.Size != im.Blobs()[k].Size || b.State != preheat.StateDone {
				t.Errorf("seeder %d: blob %d is %+v, want %s (%d bytes) done", i, k, b, im.Blobs()[k].Digest, im.Blobs()[k].Size)
			}
		}
	}
	checkOneCopy(t, reg, im.Blobs())

	reg.ResetCounts()
	pullThrough(t, e.c.Agents, reg.Host+"/preheat/app:v1", ocispec.Platform{}, im.Blobs())
	if n, b := reg.TotalBlobGETs(), reg.BlobBytes(); n != 0 || b != 0 {
		t.Errorf("origin served %d blob GETs (%d bytes) during the pull, want 0", n, b)
	}
}

// TestPreheatIndexPlatformFilter: with a platform filter, a pushed index
// warms only that platform's blobs.
func TestPreheatIndexPlatformFilter(t *testing.T) {
	e := startEnv(t, envOptions{agents: 1, platforms: []string{"linux/arm64"}})
	reg := e.c.Origin
	plats := []ocispec.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}
	idx, err := origin.PushRandomIndex(t.Context(), nil, reg.URL, "preheat/multi", "v2", plats, []int64{mib, 300 * 1024}, 21)
	if err != nil {
		t.Fatal(err)
	}
	jobs := e.waitJobs(t, reg.Host+"/preheat/multi@"+idx.Descriptor.Digest.String())
	if want := []string{"linux/arm64"}; len(jobs[0].Platforms) != 1 || jobs[0].Platforms[0] != want[0] {
		t.Errorf("job platforms %v, want %v", jobs[0].Platforms, want)
	}
	amd, arm := idx.Images[0], idx.Images[1]
	checkOneCopy(t, reg, arm.Blobs())
	for _, b := range amd.Blobs() {
		if n := reg.BlobGETs(b.Digest); n != 0 {
			t.Errorf("linux/amd64 blob %s fetched %d times; the filter is linux/arm64", b.Digest, n)
		}
	}
	for _, svc := range e.services {
		if n := len(svc.Jobs()); n != 1 {
			t.Errorf("%d jobs, want only the index's (platform manifests pushed by digest are left to it): %+v", n, svc.Jobs())
		}
	}
	reg.ResetCounts()
	pullThrough(t, e.c.Agents, reg.Host+"/preheat/multi:v2", plats[1], arm.Blobs())
	if n := reg.TotalBlobGETs(); n != 0 {
		t.Errorf("origin served %d blob GETs during the arm64 pull, want 0", n)
	}
}

// post sends body to url with the secret (or authz when not empty).
func post(t *testing.T, url, contentType, authz string, body []byte) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if authz != "-" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("POST %s: %d with a body that is not JSON: %v", url, resp.StatusCode, err)
	}
	return resp.StatusCode, v
}

// TestPreheatHarborPayload: a Harbor PUSH_ARTIFACT webhook preheats the
// artifact it names.
func TestPreheatHarborPayload(t *testing.T) {
	e := startEnv(t, envOptions{agents: 1, origin: origin.Options{}})
	reg := e.c.Origin
	// The push notifies the seeders too; this test's own jobs come from
	// the webhook, and warm no second copy.
	im, err := origin.PushRandomImage(t.Context(), nil, reg.URL, "library/harbor-app", "1.0", []int64{mib}, 5)
	if err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf(`{"type":"PUSH_ARTIFACT","occur_at":1733450000,"operator":"admin",
	 "event_data":{"resources":[{"digest":"%s","tag":"1.0","resource_url":"%s/library/harbor-app:1.0"}],
	 "repository":{"date_created":1733440000,"name":"harbor-app","namespace":"library","repo_full_name":"library/harbor-app","repo_type":"private"}}}`,
		im.Manifest.Digest, reg.Host)
	code, v := post(t, e.urls[0]+"/notifications/harbor", "application/json", "Bearer "+secret, []byte(payload))
	if code != http.StatusAccepted {
		t.Fatalf("Harbor webhook: %d %v", code, v)
	}
	ids, _ := v["jobs"].([]any)
	if len(ids) != 1 {
		t.Fatalf("Harbor webhook answered %v, want one job", v)
	}
	j, err := e.services[0].Wait(t.Context(), ids[0].(string))
	if err != nil || j.State != preheat.StateDone || len(j.Blobs) != 2 {
		t.Fatalf("Harbor job %+v, %v", j, err)
	}
	// The same payload on /notifications is told apart from an envelope.
	if code, v := post(t, e.urls[1]+"/notifications", "application/json", "Bearer "+secret, []byte(payload)); code != http.StatusAccepted {
		t.Fatalf("Harbor webhook on /notifications: %d %v", code, v)
	}
	e.waitJobs(t, reg.Host+"/library/harbor-app@"+im.Manifest.Digest.String())
	checkOneCopy(t, reg, im.Blobs())

	// Other Harbor events are ignored.
	code, v = post(t, e.urls[0]+"/notifications/harbor", "application/json", "Bearer "+secret,
		[]byte(`{"type":"PULL_ARTIFACT","event_data":{"resources":[],"repository":{"repo_full_name":"library/harbor-app"}}}`))
	if code != http.StatusAccepted || v["ignored"] != float64(1) {
		t.Errorf("PULL_ARTIFACT: %d %v, want 202 ignored", code, v)
	}
}

// TestPreheatBadPayloadAndSecret: malformed or unwanted requests get a
// clear 4xx, start no job and fetch nothing.
func TestPreheatBadPayloadAndSecret(t *testing.T) {
	e := startEnv(t, envOptions{})
	reg := e.c.Origin
	u := e.urls[0]
	good := "Bearer " + secret
	evType := "application/vnd.docker.distribution.events.v2+json"
	envelope := fmt.Sprintf(`{"events":[{"id":"x","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%064d","repository":"a/b","url":"%s/v2/a/b/manifests/sha256:%064d","tag":"t"}}]}`, 0, reg.URL, 0)
	for _, c := range []struct {
		name, path, ctype, authz, body string
		code                           int
		msg                            string
	}{
		{"no secret", "/notifications", evType, "-", envelope, 401, "secret"},
		{"wrong secret", "/notifications", evType, "Bearer nope", envelope, 401, "secret"},
		{"secret without Bearer", "/preheat", "application/json", secret, `{"image":"` + reg.Host + `/a/b:t"}`, 401, "secret"},
		{"not JSON", "/notifications", evType, good, `{"events":[`, 400, "envelope"},
		{"no events", "/notifications", evType, good, `{"id":"x"}`, 400, `no "events"`},
		{"events of the wrong type", "/notifications", evType, good, `{"events":{"a":1}}`, 400, "events"},
		{"wrong content type", "/notifications", "text/plain", good, envelope, 415, "Content-Type"},
		{"too large", "/notifications", evType, good, `{"events":[` + strings.Repeat(" ", 2<<20) + `]}`, 413, "body over"},
		{"unknown field", "/preheat", "application/json", good, `{"image":"` + reg.Host + `/a/b:t","platform":"linux/amd64"}`, 400, `unknown field "platform"`},
		{"no image", "/preheat", "application/json", good, `{}`, 400, "image is empty"},
		{"bad image", "/preheat", "application/json", good, `{"image":"` + reg.Host + `/A B"}`, 400, "image"},
		{"upstream not allowed", "/preheat", "application/json", good, `{"image":"registry.example.com/a/b:t"}`, 400, "allowed_upstreams"},
		{"bad platform", "/preheat", "application/json", good, `{"image":"` + reg.Host + `/a/b:t","platforms":["linux/"]}`, 400, "platforms[0]"},
		{"platforms of the wrong type", "/preheat", "application/json", good, `{"image":"` + reg.Host + `/a/b:t","platforms":"linux/amd64"}`, 400, `"platforms"`},
		{"Harbor without resources", "/notifications/harbor", "application/json", good, `{"type":"PUSH_ARTIFACT","event_data":{"repository":{"repo_full_name":"a/b"}}}`, 400, "resources"},
		{"Harbor bad digest", "/notifications/harbor", "application/json", good, `{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"digest":"sha256:zz","resource_url":"` + reg.Host + `/a/b:t"}],"repository":{"repo_full_name":"a/b"}}}`, 400, "resources[0].digest"},
		{"Harbor foreign host", "/notifications/harbor", "application/json", good, fmt.Sprintf(`{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"digest":"sha256:%064d","resource_url":"evil.example.com/a/b:t"}],"repository":{"repo_full_name":"a/b"}}}`, 0), 400, "allowed_upstreams"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, v := post(t, u+c.path, c.ctype, c.authz, []byte(c.body))
			msg, _ := v["error"].(string)
			if code != c.code || !strings.Contains(msg, c.msg) {
				t.Errorf("%d %q, want %d with %q", code, msg, c.code, c.msg)
			}
		})
	}
	// GETs need the secret too, and an unknown job is a 404.
	for _, c := range []struct {
		authz string
		code  int
	}{{"", 401}, {good, 404}} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u+"/preheat/nope", nil)
		req.Header.Set("Authorization", c.authz)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("GET /preheat/nope with %q: %d, want %d", c.authz, resp.StatusCode, c.code)
		}
	}
	// Pull events (and other events that are not manifest pushes) are
	// ignored.
	pullEnv := strings.Replace(strings.Replace(envelope, `"action":"push"`, `"action":"pull"`, 1), "application/vnd.oci.image.manifest.v1+json", "application/octet-stream", 1)
	if code, v := post(t, u+"/notifications", evType, good, []byte(pullEnv)); code != http.StatusAccepted || v["ignored"] != float64(1) {
		t.Errorf("pull event: %d %v, want 202 with one ignored", code, v)
	}
	// A push event for a registry not allowed is skipped, not refused:
	// distribution would retry a refused envelope forever.
	foreign := strings.ReplaceAll(envelope, reg.URL, "http://registry.example.com")
	code, v := post(t, u+"/notifications", evType, good, []byte(foreign))
	if code != http.StatusAccepted || len(v["skipped"].([]any)) != 1 {
		t.Errorf("envelope for a foreign registry: %d %v, want 202 with one skipped", code, v)
	}
	if n := len(e.services[0].Jobs()); n != 0 {
		t.Errorf("%d jobs started by bad requests: %+v", n, e.services[0].Jobs())
	}
	if n := reg.TotalBlobGETs(); n != 0 {
		t.Errorf("origin served %d blob GETs", n)
	}
}

// TestPreheatAPIAndAuthOrigin: POST /preheat with the eagle preheat
// client against an origin that requires bearer tokens; the operator's
// credentials warm the image, and warming widens nobody's access: an agent
// without credentials is still refused, one with them pulls it warm.
func TestPreheatAPIAndAuthOrigin(t *testing.T) {
	users := map[string]string{"ops": "ops-pass", "dev": "dev-pass"}
	ts, err := origin.StartTokenServer(t.Context(), users)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ts.Close() })
	e := startEnv(t, envOptions{agents: 2, origin: origin.Options{Token: ts.Auth()}, registry: preheat.Registry{Username: "ops", Password: "ops-pass"}})
	reg := e.c.Origin
	push := &http.Client{Transport: origin.NewAuthTransport(nil, "dev", "dev-pass")}
	im, err := origin.PushRandomImage(t.Context(), push, reg.URL, "private/app", "v1", []int64{2 * mib, 64 * 1024}, 99)
	if err != nil {
		t.Fatal(err)
	}
	// The push notified the seeders too; wait for those jobs so that the
	// counts below are the API's.
	e.waitJobs(t, reg.Host+"/private/app@"+im.Manifest.Digest.String())
	checkOneCopy(t, reg, im.Blobs())

	cl := &preheat.Client{URL: e.urls[1], Secret: secret}
	j, err := cl.Submit(t.Context(), preheat.Request{Image: reg.Host + "/private/app:v1"})
	if err != nil {
		t.Fatal(err)
	}
	var seen []preheat.State
	j, err = cl.Wait(t.Context(), j.ID, 20*time.Millisecond, func(j preheat.Job) { seen = append(seen, j.State) })
	if err != nil || j.State != preheat.StateDone || len(j.Blobs) != len(im.Blobs()) || j.Source != "api" {
		t.Fatalf("API job %+v (states %v), %v", j, seen, err)
	}
	if n := reg.TotalBlobGETs(); n != len(im.Blobs()) {
		t.Errorf("origin served %d blob GETs, want %d: the API job found the blobs warm", n, len(im.Blobs()))
	}
	// A manifest the origin does not have fails the job, saying so.
	nj, err := cl.Submit(t.Context(), preheat.Request{Image: reg.Host + "/private/none:v1"})
	if err != nil {
		t.Fatal(err)
	}
	if nj, err = cl.Wait(t.Context(), nj.ID, 20*time.Millisecond, nil); err != nil || nj.State != preheat.StateFailed || !strings.Contains(nj.Error, "not found") {
		t.Errorf("job for a missing image: %+v, %v", nj, err)
	}
	wrong := &preheat.Client{URL: e.urls[1], Secret: "wrong"}
	if _, err := wrong.Job(t.Context(), j.ID); !errors.Is(err, preheat.ErrAPI) || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong secret: %v, want a 401 ErrAPI", err)
	}

	reg.ResetCounts()
	ref := reg.Host + "/private/app:v1"
	hosts := t.TempDir()
	if err := pull.WriteHostsTOML(hosts, reg.Host, e.c.Agents[0].URL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := pull.Pull(ctx, ref, pull.Options{HostsDir: hosts}); err == nil {
		t.Fatal("an anonymous pull of a private, preheated image succeeded")
	}
	// And straight at the agent's blob endpoint, past containerd.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.c.Agents[0].URL+"/v2/private/app/blobs/"+im.Layers[0].Digest.String()+"?ns="+reg.Host, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		t.Errorf("anonymous blob GET of a preheated private layer: %d, want 401 or 403", resp.StatusCode)
	}
	hosts1 := t.TempDir()
	if err := pull.WriteHostsTOML(hosts1, reg.Host, e.c.Agents[1].URL); err != nil {
		t.Fatal(err)
	}
	creds := func(string) (string, string, error) { return "dev", "dev-pass", nil }
	if _, err := pull.Pull(ctx, ref, pull.Options{HostsDir: hosts1, Credentials: creds}); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if n := reg.TotalBlobGETs(); n != 0 {
		t.Errorf("origin served %d blob GETs during the pulls, want 0", n)
	}
}

// TestPreheatJoinAndBusy: the same image asked for again while its job
// runs joins that job; past max_jobs running jobs, a new one gets 503.
func TestPreheatJoinAndBusy(t *testing.T) {
	// A registry that accepts connections and never answers keeps the
	// job running until Close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	host := ln.Addr().String()
	svc, err := preheat.New(preheat.Config{Secret: secret, AllowedUpstreams: []string{host}, MaxJobs: 1,
		Registries: []preheat.Registry{{Host: host, PlainHTTP: true}}}, unreachable{})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(api)
	}()
	defer func() {
		_ = srv.Close()
		<-done
		_ = svc.Close()
	}()
	cl := &preheat.Client{URL: "http://" + api.Addr().String(), Secret: secret}
	a, err := cl.Submit(t.Context(), preheat.Request{Image: host + "/a/b:1"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.Submit(t.Context(), preheat.Request{Image: host + "/a/b:1"})
	if err != nil || b.ID != a.ID {
		t.Fatalf("second request for the same image: %+v, %v; want to join job %s", b, err, a.ID)
	}
	if _, err := cl.Submit(t.Context(), preheat.Request{Image: host + "/a/b:2"}); !errors.Is(err, preheat.ErrAPI) || !strings.Contains(err.Error(), "503") {
		t.Errorf("a second image past max_jobs 1: %v, want 503", err)
	}
	if j, err := cl.Job(t.Context(), a.ID); err != nil || j.Ended() {
		t.Errorf("job %+v, %v: want it running", j, err)
	}
}
