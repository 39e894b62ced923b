// Package preheat puts an image's blobs into the seeders before the first
// node asks for them: when a registry tells of a push (distribution's
// notifications, Harbor's webhook) or an operator asks (POST /preheat, the
// eagle preheat command).
//
// A preheat warms each blob exactly as an agent's first request would: it
// asks the seeder cluster for the blob's metainfo (seeder.Client ranks the
// seeders by rendezvous hashing of the digest, so the same seeder owns the
// blob whichever seeder runs the preheat). The owner fetches the blob from
// the origin once (concurrent askers join its fetch), verifies it, stores
// it and seeds it. Several seeders that receive the same notification thus
// cost the origin one copy of each blob, and the agents later find the
// owner warm.
//
// Preheating reads with the operator's credentials for the registry
// (Registry) and never hands out a byte: its HTTP API answers job ids and
// progress. Who may read a blob is unchanged, since the seeder still
// authorizes every agent's request with the agent's own credentials.
package preheat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/eagle-p2p/eagle/blob"
)

// Errors a caller branches on; the Handler maps them to HTTP statuses.
var (
	// ErrBadRequest: the request names no valid image, platform or
	// upstream (400).
	ErrBadRequest = errors.New("preheat: bad request")
	// ErrNotFound: no such job (404), or the origin has no such manifest.
	ErrNotFound = errors.New("preheat: not found")
	// ErrUnauthorized: the origin refused the operator's credentials.
	ErrUnauthorized = errors.New("preheat: origin refused the credentials")
	// ErrBadManifest: a manifest or index the origin served could not be
	// read.
	ErrBadManifest = errors.New("preheat: bad manifest")
	// ErrNoPlatform: an index has no manifest for the platforms asked for.
	ErrNoPlatform = errors.New("preheat: no manifest for the platforms")
	// ErrClosed: the Service is closed.
	ErrClosed = errors.New("preheat: closed")
	// ErrBusy: Config.MaxJobs jobs are running already (503; a registry
	// sends its notification again later).
	ErrBusy = errors.New("preheat: too many jobs running")
)

// Retries of a blob whose warming failed for a reason that may pass.
const (
	warmAttempts = 3
	warmBackoff  = time.Second
)

// MetaInfoSource is what warms a blob: asking for its metainfo makes the
// seeder that owns it fetch, verify, store and seed it. *seeder.Client
// (which picks the owner among the cluster's seeders) and *seeder.Server
// satisfy it.
type MetaInfoSource interface {
	MetaInfo(ctx context.Context, ref blob.Ref) ([]byte, error)
}

// State is a job's or a blob's progress.
type State string

// The states. A job is running until every blob is done or failed; it is
// done when every blob is, failed otherwise.
const (
	StatePending State = "pending"
	StateRunning State = "running"
	StateDone    State = "done"
	StateFailed  State = "failed"
)

// Request asks for an image to be preheated.
type Request struct {
	// Image is "host[:port]/repository:tag" or ".../repository@sha256:…"
	// (a name without a host is Docker Hub's, as docker pull reads it).
	Image string `json:"image"`
	// Platforms filters an index's manifests ("linux/amd64"); empty
	// takes the Service's default (Config.Platforms).
	Platforms []string `json:"platforms,omitempty"`
}

// Job is a preheat job's state, as GET /preheat/<id> answers it.
type Job struct {
	ID string `json:"id"`
	// Image is the image as host/repository:tag or @digest.
	Image string `json:"image"`
	// Platforms is the filter applied (empty: all).
	Platforms []string `json:"platforms,omitempty"`
	// Source is "api", "notification" or "harbor".
	Source string `json:"source"`
	State  State  `json:"state"`
	// Error says why the job failed before its blobs were known (a
	// manifest that could not be read), or how many blobs failed.
	Error    string    `json:"error,omitempty"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	// Blobs are the configs and layers, each once, in manifest order.
	Blobs []BlobStatus `json:"blobs"`
}

// BlobStatus is one blob's progress in a job.
type BlobStatus struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType,omitempty"`
	Size      int64         `json:"size"`
	State     State         `json:"state"`
	Error     string        `json:"error,omitempty"`
}

// Ended reports whether the job has ended (done or failed).
func (j Job) Ended() bool { return j.State == StateDone || j.State == StateFailed }

// job is a job in the Service; mu guards view.
type job struct {
	key  string
	t    target
	plat platforms.Matcher
	done chan struct{}

	mu   sync.Mutex
	view Job
}

func (j *job) snapshot() Job {
	j.mu.Lock()
	defer j.mu.Unlock()
	v := j.view
	v.Platforms = slices.Clone(v.Platforms)
	v.Blobs = slices.Clone(v.Blobs)
	return v
}

// Service runs preheat jobs. It is safe for concurrent use; Close stops
// its jobs.
type Service struct {
	cfg Config
	src MetaInfoSource
	sem chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	jobs    *lru.Cache[string, *job]
	running map[string]*job // by key, while running
}

// New returns a Service that warms blobs through src.
func New(cfg Config, src MetaInfoSource) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, fmt.Errorf("%w: no metainfo source", ErrInvalidConfig)
	}
	cfg = cfg.WithDefaults()
	jobs, err := lru.New[string, *job](cfg.MaxJobs)
	if err != nil {
		return nil, fmt.Errorf("preheat: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{
		cfg: cfg, src: src, sem: make(chan struct{}, cfg.Concurrency),
		ctx: ctx, cancel: cancel, jobs: jobs, running: map[string]*job{},
	}, nil
}

// Close cancels the running jobs and waits for them to end.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Preheat starts a job for req and returns its state, or joins the job
// already running for the same image and platforms. The job runs in the
// background (see Job and Wait). Errors wrap ErrBadRequest for an invalid
// image or platform, or an upstream that is not allowed.
func (s *Service) Preheat(req Request) (Job, error) {
	t, err := s.parseImage(req.Image)
	if err != nil {
		return Job{}, err
	}
	return s.submit(t, req.Platforms, "api")
}

// parseImage reads an image reference into a target.
func (s *Service) parseImage(image string) (target, error) {
	if image == "" {
		return target{}, fmt.Errorf("%w: image is empty", ErrBadRequest)
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return target{}, fmt.Errorf("%w: image %q: %w", ErrBadRequest, image, err)
	}
	host := reference.Domain(named)
	if host == "docker.io" {
		host = "registry-1.docker.io"
	}
	t := target{host: host, repo: reference.Path(named)}
	switch r := named.(type) {
	case reference.Digested:
		t.reference = r.Digest().String()
	case reference.Tagged:
		t.reference = r.Tag()
	default:
		t.reference = "latest"
	}
	scheme := "https://"
	if s.cfg.registry(host).PlainHTTP {
		scheme = "http://"
	}
	t.upstream = scheme + host
	if !s.cfg.allowed(host) {
		return target{}, fmt.Errorf("%w: image %q: registry %s is not in the seeder's allowed_upstreams", ErrBadRequest, image, host)
	}
	return t, nil
}

// submit starts (or joins) the job for t.
func (s *Service) submit(t target, plats []string, source string) (Job, error) {
	if len(plats) == 0 {
		plats = s.cfg.Platforms
	}
	match, err := parsePlatforms(plats)
	if err != nil {
		return Job{}, err
	}
	norm := make([]string, len(plats))
	for i, p := range plats {
		pp, _ := platforms.Parse(p)
		norm[i] = platforms.Format(platforms.Normalize(pp))
	}
	slices.Sort(norm)
	norm = slices.Compact(norm)
	key := t.upstream + "/" + t.repo + "@" + t.reference + "|" + strings.Join(norm, ",")

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Job{}, ErrClosed
	}
	if j, ok := s.running[key]; ok {
		return j.snapshot(), nil
	}
	if len(s.running) >= s.cfg.MaxJobs {
		return Job{}, fmt.Errorf("%w (%d)", ErrBusy, len(s.running))
	}
	id, err := newID()
	if err != nil {
		return Job{}, err
	}
	j := &job{key: key, t: t, plat: match, done: make(chan struct{}), view: Job{
		ID: id, Image: t.String(), Platforms: norm, Source: source, State: StatePending, Created: time.Now().UTC(), Blobs: []BlobStatus{},
	}}
	s.running[key] = j
	s.jobs.Add(id, j)
	s.wg.Add(1)
	go s.run(j)
	return j.snapshot(), nil
}

func newID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("preheat: job id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Job returns the state of the job with id; the error wraps ErrNotFound
// when there is none (or it was forgotten, see Config.MaxJobs).
func (s *Service) Job(id string) (Job, error) {
	j, ok := s.jobs.Get(id)
	if !ok {
		return Job{}, fmt.Errorf("%w: job %q", ErrNotFound, id)
	}
	return j.snapshot(), nil
}

// Jobs returns the jobs remembered, the newest first.
func (s *Service) Jobs() []Job {
	js := s.jobs.Values() // oldest first
	out := make([]Job, 0, len(js))
	for i := len(js) - 1; i >= 0; i-- {
		out = append(out, js[i].snapshot())
	}
	return out
}

// Wait waits for the job with id to end and returns its final state.
func (s *Service) Wait(ctx context.Context, id string) (Job, error) {
	j, ok := s.jobs.Peek(id)
	if !ok {
		return Job{}, fmt.Errorf("%w: job %q", ErrNotFound, id)
	}
	select {
	case <-j.done:
		return j.snapshot(), nil
	case <-ctx.Done():
		return j.snapshot(), fmt.Errorf("preheat: wait for job %s: %w", id, ctx.Err())
	}
}

// run runs job j to its end.
func (s *Service) run(j *job) {
	defer s.wg.Done()
	defer close(j.done)
	defer func() {
		s.mu.Lock()
		delete(s.running, j.key)
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.JobTimeout)
	defer cancel()
	log := s.cfg.Logger.With("job", j.view.ID, "image", j.view.Image)
	j.mu.Lock()
	j.view.State = StateRunning
	j.mu.Unlock()

	az := &authorizer{reg: s.cfg.registry(j.t.host), client: s.cfg.HTTPClient, t: j.t}
	descs, err := resolve(ctx, s.cfg.HTTPClient, az, j.t, j.plat)
	if err != nil {
		log.Warn("preheat: cannot read the image's manifests", "err", err)
		s.finish(j, err.Error())
		return
	}
	j.mu.Lock()
	for _, d := range descs {
		j.view.Blobs = append(j.view.Blobs, BlobStatus{Digest: d.Digest, MediaType: d.MediaType, Size: d.Size, State: StatePending})
	}
	j.mu.Unlock()
	log.Info("preheat: warming", "blobs", len(descs))

	var wg sync.WaitGroup
	for i, d := range descs {
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			s.setBlob(j, i, StateFailed, ctx.Err().Error())
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.sem }()
			s.warm(ctx, log, j, i, d, az)
		}()
	}
	wg.Wait()
	s.finish(j, "")
}

// warm asks for d's metainfo with the operator's authorization, which
// makes the seeder that owns d fetch it from the origin (once) and seed it.
// A failure that may pass (no seeder reachable for a moment, a seeder's
// internal error) is tried again, up to warmAttempts times in all; the
// origin's refusal, a missing blob or a digest mismatch is final.
func (s *Service) warm(ctx context.Context, log *slog.Logger, j *job, i int, d ocispec.Descriptor, az *authorizer) {
	s.setBlob(j, i, StateRunning, "")
	var err error
	refreshed := false
	for attempt := 1; ; attempt++ {
		var authz string
		if authz, err = az.header(ctx); err != nil {
			break
		}
		_, err = s.src.MetaInfo(ctx, blob.Ref{Upstream: j.t.upstream, Repository: j.t.repo, Digest: d.Digest, Authorization: authz})
		var oe *blob.OriginError
		if errors.As(err, &oe) && oe.StatusCode == 401 && !refreshed {
			// The token expired between the manifest and this blob.
			az.invalidate(authz)
			refreshed = true
			continue
		}
		if err == nil || oe != nil || attempt >= warmAttempts || ctx.Err() != nil ||
			errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrDigestMismatch) {
			break
		}
		log.Debug("preheat: blob not warmed, trying again", "digest", d.Digest, "attempt", attempt, "err", err)
		select {
		case <-time.After(time.Duration(attempt) * warmBackoff):
		case <-ctx.Done():
		}
	}
	if err != nil {
		log.Warn("preheat: blob not warmed", "digest", d.Digest, "err", err)
		s.setBlob(j, i, StateFailed, err.Error())
		return
	}
	s.setBlob(j, i, StateDone, "")
}

func (s *Service) setBlob(j *job, i int, st State, msg string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.view.Blobs[i].State, j.view.Blobs[i].Error = st, msg
}

// finish sets j's final state: failed with msg, or from its blobs.
func (s *Service) finish(j *job, msg string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.view.Finished = time.Now().UTC()
	failed := 0
	for _, b := range j.view.Blobs {
		if b.State != StateDone {
			failed++
		}
	}
	switch {
	case msg != "":
		j.view.State, j.view.Error = StateFailed, msg
	case failed > 0:
		j.view.State, j.view.Error = StateFailed, fmt.Sprintf("%d of %d blobs failed", failed, len(j.view.Blobs))
	default:
		j.view.State = StateDone
	}
}
