package preheat

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/distribution/distribution/v3/notifications"
	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"
)

// Handler returns the preheat API:
//
//	POST /notifications         a distribution registry's notification envelope, or a Harbor webhook
//	POST /notifications/harbor  a Harbor webhook (PUSH_ARTIFACT, or its CloudEvents form)
//	POST /preheat               {"image": "...", "platforms": [...]} → 202 {"id": ...}
//	GET  /preheat/{id}          the job's state, per blob
//	GET  /preheat               the jobs remembered, newest first
//
// Every request must carry "Authorization: Bearer <Config.Secret>" when a
// secret is set (401 otherwise). Answers are JSON; errors are
// {"error": "..."} with a 4xx for the caller's mistakes. No answer carries
// a blob's bytes.
func (s *Service) Handler() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/notifications", s.serveNotifications).Methods(http.MethodPost)
	r.HandleFunc("/notifications/harbor", s.serveHarbor).Methods(http.MethodPost)
	r.HandleFunc("/preheat", s.servePreheat).Methods(http.MethodPost)
	r.HandleFunc("/preheat", s.serveJobs).Methods(http.MethodGet)
	r.HandleFunc("/preheat/{id}", s.serveJob).Methods(http.MethodGet)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	})
	return s.authenticate(r)
}

// authenticate refuses requests without the shared secret. The compare is
// of hashes, in constant time, so neither the secret's bytes nor its length
// leak through timing.
func (s *Service) authenticate(next http.Handler) http.Handler {
	if s.cfg.Secret == "" {
		return next
	}
	want := sha256.Sum256([]byte("Bearer " + s.cfg.Secret))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="eagle-preheat"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong shared secret (Authorization: Bearer <secret>)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// readBody reads a request body of at most MaxBody bytes, answering 413
// (or 400) itself when it cannot.
func (s *Service) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", s.cfg.MaxBody))
		} else {
			writeError(w, http.StatusBadRequest, "cannot read body")
		}
		return nil, false
	}
	return b, true
}

// jsonType checks that the body is JSON (or distribution's events type).
func jsonType(w http.ResponseWriter, r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || (err == nil && (mt == "application/json" || mt == notifications.EventsMediaType || strings.HasSuffix(mt, "+json"))) {
		return true
	}
	writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: want application/json or %s", ct, notifications.EventsMediaType))
	return false
}

// submitted is the answer to a notification: the jobs started (or
// joined), the events ignored (not manifest pushes) and those skipped,
// with why.
type submitted struct {
	Jobs    []string `json:"jobs"`
	Ignored int      `json:"ignored"`
	Skipped []string `json:"skipped,omitempty"`
}

// serveNotifications takes a distribution registry's notification
// envelope. Events that are not manifest pushes (blob pushes, pulls —
// the seeders' own manifest reads make pull events —, deletes) are
// ignored, and so are manifests pushed by digest alone while a platform
// filter is set (see below). A push that cannot be preheated (a registry not allowed) is
// skipped and logged, not refused: distribution retries a refused
// envelope forever, which would hold back every later notification.
func (s *Service) serveNotifications(w http.ResponseWriter, r *http.Request) {
	if !jsonType(w, r) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	if looksHarbor(body) {
		s.harbor(w, body)
		return
	}
	var env struct {
		Events *[]notifications.Event `json:"events"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		writeError(w, http.StatusBadRequest, "body is not a notification envelope: "+jsonErr(err))
		return
	}
	if env.Events == nil {
		writeError(w, http.StatusBadRequest, `body is not a notification envelope: no "events"`)
		return
	}
	var out submitted
	out.Jobs = []string{}
	for i, e := range *env.Events {
		if e.Action != notifications.EventActionPush || !(isManifest(e.Target.MediaType) || isIndex(e.Target.MediaType)) {
			out.Ignored++
			continue
		}
		if len(s.cfg.Platforms) > 0 && isManifest(e.Target.MediaType) && e.Target.Tag == "" {
			// A manifest pushed by digest alone is an index's platform
			// manifest (buildx and PushRandomIndex push them before
			// their index). Its event cannot tell its platform; the
			// index's own event applies the filter.
			out.Ignored++
			continue
		}
		t, err := s.eventTarget(e)
		if err == nil {
			var j Job
			if j, err = s.submit(t, nil, "notification"); err == nil {
				out.Jobs = append(out.Jobs, j.ID)
				continue
			}
		}
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrBusy) {
			unavailable(w, err)
			return
		}
		s.cfg.Logger.Warn("preheat: notification skipped", "event", e.ID, "err", err)
		out.Skipped = append(out.Skipped, fmt.Sprintf("events[%d]: %v", i, err))
	}
	writeJSON(w, http.StatusAccepted, out)
}

// eventTarget reads a manifest push event's image: its repository and
// digest, and the registry from its target URL.
func (s *Service) eventTarget(e notifications.Event) (target, error) {
	if e.Target.Repository == "" {
		return target{}, fmt.Errorf("%w: target.repository is empty", ErrBadRequest)
	}
	if err := e.Target.Digest.Validate(); err != nil {
		return target{}, fmt.Errorf("%w: target.digest %q: %w", ErrBadRequest, e.Target.Digest, err)
	}
	u, err := url.Parse(e.Target.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return target{}, fmt.Errorf("%w: target.url %q is not an http(s) URL", ErrBadRequest, e.Target.URL)
	}
	if !s.cfg.allowed(u.Host) {
		return target{}, fmt.Errorf("%w: target.url: registry %s is not in the seeder's allowed_upstreams", ErrBadRequest, u.Host)
	}
	return target{upstream: u.Scheme + "://" + u.Host, host: u.Host, repo: e.Target.Repository, reference: e.Target.Digest.String()}, nil
}

// harborPayload is Harbor's webhook body, in its default form
// ({"type": "PUSH_ARTIFACT", "event_data": …}) or its CloudEvents form
// ({"specversion": "1.0", "type": "harbor.artifact.pushed", "data": …}).
type harborPayload struct {
	Type        string      `json:"type"`
	SpecVersion string      `json:"specversion"`
	EventData   *harborData `json:"event_data"`
	Data        *harborData `json:"data"`
}

type harborData struct {
	Resources []struct {
		Digest      string `json:"digest"`
		Tag         string `json:"tag"`
		ResourceURL string `json:"resource_url"`
	} `json:"resources"`
	Repository struct {
		Name         string `json:"name"`
		Namespace    string `json:"namespace"`
		RepoFullName string `json:"repo_full_name"`
	} `json:"repository"`
}

// looksHarbor tells a Harbor webhook from a distribution envelope.
func looksHarbor(body []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(body, &probe) != nil {
		return false
	}
	_, ed := probe["event_data"]
	_, sv := probe["specversion"]
	return ed || sv
}

func (s *Service) serveHarbor(w http.ResponseWriter, r *http.Request) {
	if !jsonType(w, r) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	s.harbor(w, body)
}

// harbor takes a Harbor webhook: an artifact push names the artifact's
// digest and its resource URL (host/project/repository:tag), from which
// the registry comes. Other event types are ignored.
func (s *Service) harbor(w http.ResponseWriter, body []byte) {
	var p harborPayload
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&p); err != nil {
		writeError(w, http.StatusBadRequest, "body is not a Harbor webhook: "+jsonErr(err))
		return
	}
	data := p.EventData
	if p.SpecVersion != "" {
		data = p.Data
	}
	if p.Type == "" || data == nil {
		writeError(w, http.StatusBadRequest, `body is not a Harbor webhook: want "type" and "event_data" (or CloudEvents "data")`)
		return
	}
	out := submitted{Jobs: []string{}}
	if p.Type != "PUSH_ARTIFACT" && p.Type != "harbor.artifact.pushed" {
		out.Ignored = 1
		writeJSON(w, http.StatusAccepted, out)
		return
	}
	repo := data.Repository.RepoFullName
	if repo == "" && data.Repository.Namespace != "" && data.Repository.Name != "" {
		repo = data.Repository.Namespace + "/" + data.Repository.Name
	}
	if repo == "" || len(data.Resources) == 0 {
		writeError(w, http.StatusBadRequest, "Harbor webhook: event_data.repository.repo_full_name and event_data.resources are required")
		return
	}
	for i, res := range data.Resources {
		field := fmt.Sprintf("event_data.resources[%d]", i)
		dgst, err := digest.Parse(res.Digest)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s.digest %q: %v", field, res.Digest, err))
			return
		}
		host, _, _ := strings.Cut(res.ResourceURL, "/")
		if host == "" || !strings.HasPrefix(res.ResourceURL, host+"/"+repo) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s.resource_url %q does not name host/%s", field, res.ResourceURL, repo))
			return
		}
		t, err := s.parseImage(host + "/" + repo + "@" + dgst.String())
		if err == nil {
			var j Job
			if j, err = s.submit(t, nil, "harbor"); err == nil {
				out.Jobs = append(out.Jobs, j.ID)
				continue
			}
		}
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrBusy) {
			unavailable(w, err)
			return
		}
		// Harbor does not retry forever: a refusal is the clearer answer.
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: %v", field, err))
		return
	}
	writeJSON(w, http.StatusAccepted, out)
}

// servePreheat starts (or joins) a job.
func (s *Service) servePreheat(w http.ResponseWriter, r *http.Request) {
	if !jsonType(w, r) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+jsonErr(err))
		return
	}
	j, err := s.Preheat(req)
	switch {
	case errors.Is(err, ErrClosed) || errors.Is(err, ErrBusy):
		unavailable(w, err)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrBadRequest.Error()+": "))
		return
	}
	w.Header().Set("Location", "/preheat/"+j.ID)
	writeJSON(w, http.StatusAccepted, j)
}

func (s *Service) serveJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.Job(mux.Vars(r)["id"])
	if err != nil {
		writeError(w, http.StatusNotFound, "no such job")
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (s *Service) serveJobs(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]Job{"jobs": s.Jobs()})
}

// unavailable answers 503 for a closed or busy Service; a registry sends
// its notification again later.
func unavailable(w http.ResponseWriter, err error) {
	w.Header().Set("Retry-After", "10")
	writeError(w, http.StatusServiceUnavailable, err.Error())
}

// jsonErr describes a JSON decoding error, naming the field when it can.
func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %q: want %s, got %s", te.Field, te.Type, te.Value)
	}
	return err.Error()
}
