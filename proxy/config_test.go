package proxy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for valid
	}{
		{"default only", Config{DefaultUpstream: "http://127.0.0.1:5000"}, ""},
		{"docker hub", Config{DefaultUpstream: "docker.io"}, ""},
		{"upstreams only", Config{Upstreams: []string{"https://ghcr.io", "quay.io"}}, ""},
		{"any only", Config{AllowAnyUpstream: true}, ""},
		{"nothing", Config{}, "no upstream"},
		{"ftp", Config{DefaultUpstream: "ftp://x"}, "scheme"},
		{"path", Config{DefaultUpstream: "http://h:5000/v2"}, "only scheme://host"},
		{"user", Config{DefaultUpstream: "http://u:p@h"}, "only scheme://host"},
		{"query", Config{Upstreams: []string{"http://h?x=1"}}, "upstreams[0]"},
		{"bad host", Config{DefaultUpstream: "http://ho st"}, "default_upstream"},
		{"empty upstream", Config{Upstreams: []string{""}}, "empty"},
		{"scheme conflict", Config{DefaultUpstream: "http://h:1", Upstreams: []string{"https://h:1"}}, "both"},
		{"negative size", Config{AllowAnyUpstream: true, AuthCacheSize: -1}, "auth_cache_size"},
		{"negative timeout", Config{AllowAnyUpstream: true, AuthTimeout: -time.Second}, "auth_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want ErrInvalidConfig mentioning %q", err, tc.want)
			}
			if _, err := New(tc.cfg, newMemSource(t)); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := New(Config{AllowAnyUpstream: true}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with nil source: %v", err)
	}
}

func TestConfigYAML(t *testing.T) {
	var cfg Config
	err := yaml.Unmarshal([]byte(`
default_upstream: docker.io
upstreams: [http://127.0.0.1:5000]
allow_any_upstream: false
authorize_blobs: false
auth_cache_ttl: 30s
auth_cache_size: 10
auth_timeout: 5s
trust_forwarded_headers: true
`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultUpstream != "docker.io" || len(cfg.Upstreams) != 1 || cfg.AuthorizeBlobsEnabled() ||
		cfg.AuthCacheTTL != 30*time.Second || cfg.AuthCacheSize != 10 || cfg.AuthTimeout != 5*time.Second || !cfg.TrustForwardedHeaders {
		t.Fatalf("decoded %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !(&Config{}).AuthorizeBlobsEnabled() {
		t.Fatal("AuthorizeBlobs must default to true")
	}
}

func TestUpstreamResolve(t *testing.T) {
	cfg := Config{DefaultUpstream: "http://127.0.0.1:5000", Upstreams: []string{"index.docker.io", "HTTPS://GHCR.IO"}}
	ups, err := cfg.upstreams()
	if err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]string{
		"":                     "http://127.0.0.1:5000",
		"127.0.0.1:5000":       "http://127.0.0.1:5000",
		"docker.io":            "https://registry-1.docker.io",
		"index.docker.io":      "https://registry-1.docker.io",
		"Registry-1.Docker.IO": "https://registry-1.docker.io",
		"ghcr.io":              "https://ghcr.io",
	} {
		u, err := ups.resolve(ns)
		if err != nil || u.String() != want {
			t.Errorf("resolve(%q) = %v, %v; want %s", ns, u, err, want)
		}
	}
	for _, ns := range []string{"quay.io", "127.0.0.1:5001", "a/b", "h h", "-bad-", strings.Repeat("a", 300), "host:port"} {
		if u, err := ups.resolve(ns); !errors.Is(err, errUnknownUpstream) {
			t.Errorf("resolve(%q) = %v, %v; want errUnknownUpstream", ns, u, err)
		}
	}

	anyCfg := Config{AllowAnyUpstream: true}
	ups, err = anyCfg.upstreams()
	if err != nil {
		t.Fatal(err)
	}
	if u, err := ups.resolve("quay.io"); err != nil || u.String() != "https://quay.io" {
		t.Errorf("allow any: resolve(quay.io) = %v, %v", u, err)
	}
	if u, err := ups.resolve("docker.io"); err != nil || u.String() != "https://registry-1.docker.io" {
		t.Errorf("allow any: resolve(docker.io) = %v, %v", u, err)
	}
	if _, err := ups.resolve(""); !errors.Is(err, errUnknownUpstream) {
		t.Errorf("allow any without a default: resolve(\"\") = %v", err)
	}
	if _, err := ups.resolve("evil.example/../x"); !errors.Is(err, errUnknownUpstream) {
		t.Errorf("allow any: a path in ns was accepted: %v", err)
	}
}
