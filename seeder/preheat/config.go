package preheat

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/platforms"
)

// Defaults of Config; see the fields of the same names.
const (
	DefaultConcurrency = 4
	DefaultMaxJobs     = 256
	DefaultJobTimeout  = 30 * time.Minute
	DefaultMaxBody     = 1 << 20
)

// ErrInvalidConfig is wrapped by Config.Validate's errors.
var ErrInvalidConfig = errors.New("preheat: invalid config")

// Registry holds what the preheater needs to read images from one origin
// registry: whether it speaks plain HTTP, and the operator's credentials
// for it. Preheating reads manifests with these credentials and passes the
// authorization they obtain to the seeders, whose origin fetch and
// per-caller check use it. It never lets anyone else read a blob.
type Registry struct {
	// Host is the registry's "host" or "host:port", as in image
	// references and in the seeder's allowed_upstreams. Required.
	Host string `yaml:"host"`
	// PlainHTTP reaches the registry over http:// instead of https://.
	// Default false. (A notification's target URL carries its own scheme.)
	PlainHTTP bool `yaml:"plain_http"`
	// Username and Password answer the registry's Basic challenge, or are
	// sent to its token service for a Bearer token with pull scope.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// PasswordFile, instead of Password, is a file holding the password,
	// read at each use (so a rotated secret is picked up).
	PasswordFile string `yaml:"password_file"`
	// TokenFile is a file holding a ready bearer token (for example an
	// identity token refreshed by another process), sent as
	// "Authorization: Bearer <token>" without a challenge flow. It is read
	// at each use. Exclusive with Username.
	TokenFile string `yaml:"token_file"`
}

// Config configures a Service. Zero fields take their defaults.
type Config struct {
	// Secret is the shared secret every request to the Handler must carry
	// as "Authorization: Bearer <secret>" (what distribution's
	// notifications endpoint headers and Harbor's webhook "auth header"
	// send). Empty: no secret is asked for, which is acceptable only when
	// the listener requires client certificates (mutual TLS).
	Secret string `yaml:"-"`
	// AllowedUpstreams lists the registries that may be preheated from:
	// "host" (any port) or "host:port". The seeder's own
	// allowed_upstreams. Required.
	AllowedUpstreams []string `yaml:"-"`
	// Registries holds per-registry settings: scheme and credentials.
	// A registry not listed is read anonymously over https.
	Registries []Registry `yaml:"registries"`
	// Platforms is the default platform filter for image indexes
	// ("linux/amd64", "linux/arm64/v8"); empty preheats every platform.
	// A request's own platforms replace it.
	Platforms []string `yaml:"platforms"`
	// Concurrency caps the blobs warmed at once over all jobs. Default 4.
	Concurrency int `yaml:"concurrency"`
	// MaxJobs is how many jobs are remembered for GET /preheat/<id>
	// (least recently started forgotten first), and how many may run at
	// once: past that, new ones get 503. Default 256.
	MaxJobs int `yaml:"max_jobs"`
	// JobTimeout bounds one job, manifests and every blob. Default 30m.
	JobTimeout time.Duration `yaml:"job_timeout"`
	// MaxBody caps a request body in bytes; a larger one gets 413.
	// Default 1 MiB.
	MaxBody int64 `yaml:"max_body"`
	// HTTPClient reads manifests and tokens. Default: a client with
	// connect and header timeouts that follows redirects only on the
	// same host.
	HTTPClient *http.Client `yaml:"-"`
	// Logger receives the jobs' logs; a blob that fails is logged at warn.
	// Nil discards them.
	Logger *slog.Logger `yaml:"-"`
}

// Validate reports every invalid field, naming its YAML key (under
// preheat.), in an error wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	if len(c.AllowedUpstreams) == 0 {
		errs = append(errs, errors.New("allowed_upstreams is empty: preheating needs the seeder's allowed upstreams"))
	}
	seen := map[string]bool{}
	for i, r := range c.Registries {
		key := "registries[" + strconv.Itoa(i) + "]"
		switch {
		case r.Host == "":
			errs = append(errs, fmt.Errorf("%s.host is empty", key))
		case strings.ContainsAny(r.Host, "/?#@ "):
			errs = append(errs, fmt.Errorf("%s.host %q: want \"host\" or \"host:port\", without scheme or path", key, r.Host))
		case seen[strings.ToLower(r.Host)]:
			errs = append(errs, fmt.Errorf("%s.host %q is listed twice", key, r.Host))
		}
		seen[strings.ToLower(r.Host)] = true
		if r.Password != "" && r.PasswordFile != "" {
			errs = append(errs, fmt.Errorf("%s: password and password_file are exclusive", key))
		}
		if r.TokenFile != "" && (r.Username != "" || r.Password != "" || r.PasswordFile != "") {
			errs = append(errs, fmt.Errorf("%s: token_file excludes username, password and password_file", key))
		}
		if (r.Password != "" || r.PasswordFile != "") && r.Username == "" {
			errs = append(errs, fmt.Errorf("%s.username is empty but a password is set", key))
		}
		for _, f := range []struct{ key, path string }{{"password_file", r.PasswordFile}, {"token_file", r.TokenFile}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: %w", key, f.key, err))
			}
		}
	}
	for i, p := range c.Platforms {
		if _, err := platforms.Parse(p); err != nil {
			errs = append(errs, fmt.Errorf("platforms[%d] %q: %w", i, p, err))
		}
	}
	for _, n := range []struct {
		key string
		v   int64
	}{{"concurrency", int64(c.Concurrency)}, {"max_jobs", int64(c.MaxJobs)}, {"max_body", c.MaxBody}} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d is negative", n.key, n.v))
		}
	}
	if c.JobTimeout < 0 {
		errs = append(errs, fmt.Errorf("job_timeout %v is negative", c.JobTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// WithDefaults returns a copy of c with every zero field that has a
// default set to it; New applies it.
func (c Config) WithDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxJobs == 0 {
		c.MaxJobs = DefaultMaxJobs
	}
	if c.JobTimeout == 0 {
		c.JobTimeout = DefaultJobTimeout
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
				TLSHandshakeTimeout:   30 * time.Second,
				ResponseHeaderTimeout: 30 * time.Second,
				IdleConnTimeout:       90 * time.Second,
				MaxIdleConnsPerHost:   4,
			},
			CheckRedirect: sameHostRedirect,
		}
	}
	return c
}

// sameHostRedirect follows a manifest redirect only on the registry's own
// host: manifests are small and served by the registry itself, and a
// redirect elsewhere would carry the operator's Authorization there.
func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("preheat: too many redirects")
	}
	if !strings.EqualFold(req.URL.Host, via[0].URL.Host) {
		return fmt.Errorf("preheat: redirect to another host %s refused", req.URL.Host)
	}
	return nil
}

// registry returns the settings for host ("host:port"), matched
// case-insensitively by host:port and then by host name.
func (c Config) registry(host string) Registry {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	for _, r := range c.Registries {
		if strings.EqualFold(r.Host, host) {
			return r
		}
	}
	for _, r := range c.Registries {
		if strings.EqualFold(r.Host, name) {
			return r
		}
	}
	return Registry{Host: host}
}

// allowed reports whether host ("host" or "host:port") is an allowed
// upstream, as the seeder decides it.
func (c Config) allowed(host string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	for _, a := range c.AllowedUpstreams {
		if strings.EqualFold(a, host) || strings.EqualFold(a, name) {
			return true
		}
	}
	return false
}
