package seeder

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"gopkg.in/yaml.v3"

	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
)

func TestParseRequest(t *testing.T) {
	d := digest.FromString("blob")
	r, err := parseRequest(&seederpb.GetMetaInfoRequest{
		Upstream:      "https://Registry.Example.com:5000/",
		Repository:    "library/alpine",
		Digest:        d.String(),
		Authorization: "Bearer abc",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "https://Registry.Example.com:5000/v2/library/alpine/blobs/" + d.String()
	if got := r.blobURL(); got != want {
		t.Errorf("blobURL = %q, want %q", got, want)
	}
	if r.authorization != "Bearer abc" {
		t.Errorf("authorization = %q", r.authorization)
	}

	_, err = parseRequest(&seederpb.GetMetaInfoRequest{Upstream: "http://h", Repository: "a", Digest: "sha256:00"})
	if !errors.Is(err, ErrInvalidRequest) || !errors.Is(err, storage.ErrInvalidDigest) {
		t.Errorf("short digest: %v, want ErrInvalidRequest and storage.ErrInvalidDigest", err)
	}
	long := &seederpb.GetMetaInfoRequest{Upstream: "http://h", Repository: "a", Digest: d.String(),
		Authorization: strings.Repeat("x", maxAuthorizationLen+1)}
	if _, err := parseRequest(long); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("long authorization: %v, want ErrInvalidRequest", err)
	}
}

func FuzzParseRequest(f *testing.F) {
	d := digest.FromString("blob").String()
	f.Add("http://127.0.0.1:5000", "library/alpine", d, "")
	f.Add("https://registry-1.docker.io/", "a/b/c", d, "Bearer x")
	f.Add("http://[::1]:5000", "localhost:5000/x", d, "Basic dTpw")
	f.Add("http://h/../x", "../../etc", "sha256:../x", "a\nb")
	f.Add("http://h:99999", "a", "sha512:"+strings.Repeat("0", 128), "")
	f.Add("http://h?x#y", "a__b", "", "")
	f.Fuzz(func(t *testing.T, upstream, repo, dgst, auth string) {
		r, err := parseRequest(&seederpb.GetMetaInfoRequest{Upstream: upstream, Repository: repo, Digest: dgst, Authorization: auth})
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		if err := storage.ValidateDigest(r.digest); err != nil {
			t.Fatalf("accepted bad digest %q", dgst)
		}
		if strings.ContainsAny(r.authorization, "\r\n\x00") {
			t.Fatalf("accepted authorization %q", auth)
		}
		u, err := url.Parse(r.blobURL())
		if err != nil {
			t.Fatalf("blobURL %q does not parse: %v", r.blobURL(), err)
		}
		wantPath := "/v2/" + repo + "/blobs/" + dgst
		if u.Host != r.upstream.Host || u.Path != wantPath || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("blobURL %q: host %q path %q, want host %q path %q", r.blobURL(), u.Host, u.Path, r.upstream.Host, wantPath)
		}
		if strings.Contains(u.Path, "..") || strings.Contains(u.Path, "//") {
			t.Fatalf("blobURL %q escapes the blob path", r.blobURL())
		}
	})
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{AllowAnyUpstream: true},
		{AllowedUpstreams: []string{"registry.example.com", "127.0.0.1:5000", "[::1]:5000", "::1"}},
		{AllowAnyUpstream: true, OriginTimeout: time.Second, MaxConcurrentFetches: 1, MetaInfoCacheSize: 1},
		{AllowedUpstreams: []string{"r.example.com"}, RedirectHosts: []string{"*.s3.amazonaws.com", "cdn.example.com:443", "10.0.0.7"}},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{AllowedUpstreams: []string{""}}, "allowed_upstreams[0]"},
		{Config{AllowedUpstreams: []string{"ok", "http://registry.example.com"}}, "allowed_upstreams[1]"},
		{Config{AllowedUpstreams: []string{"host:0"}}, "port"},
		{Config{AllowedUpstreams: []string{"host/path"}}, "allowed_upstreams[0]"},
		{Config{}, "allowed_upstreams is empty"},
		{Config{AllowAnyUpstream: true, RedirectHosts: []string{"https://cdn.example.com"}}, "redirect_hosts[0]"},
		{Config{AllowAnyUpstream: true, RedirectHosts: []string{"a.*.example.com"}}, "redirect_hosts[0]"},
		{Config{AllowAnyUpstream: true, OriginIdleTimeout: -time.Second}, "origin_idle_timeout"},
		{Config{AllowAnyUpstream: true, MaxFetchesPerCaller: -1}, "max_fetches_per_caller"},
		{Config{OriginTimeout: -time.Second}, "origin_timeout"},
		{Config{MaxConcurrentFetches: -1}, "max_concurrent_fetches"},
		{Config{MetaInfoCacheSize: -1}, "metainfo_cache_size"},
	} {
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want an error about %s", tc.c, err, tc.want)
		}
	}
}

func TestConfigYAMLAndDefaults(t *testing.T) {
	var c Config
	err := yaml.Unmarshal([]byte(`
allowed_upstreams: [registry.example.com, "127.0.0.1:5000"]
origin_timeout: 5s
max_concurrent_fetches: 4
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	want := Config{
		AllowedUpstreams:     []string{"registry.example.com", "127.0.0.1:5000"},
		OriginTimeout:        5 * time.Second,
		MaxConcurrentFetches: 4,
		MetaInfoCacheSize:    DefaultMetaInfoCacheSize,
	}
	if c.OriginTimeout != want.OriginTimeout || c.MaxConcurrentFetches != want.MaxConcurrentFetches ||
		c.MetaInfoCacheSize != want.MetaInfoCacheSize || strings.Join(c.AllowedUpstreams, ",") != strings.Join(want.AllowedUpstreams, ",") {
		t.Errorf("config %+v, want %+v", c, want)
	}
	if d := (Config{}).WithDefaults(); d.OriginTimeout != DefaultOriginTimeout || d.MaxConcurrentFetches != DefaultMaxConcurrentFetches {
		t.Errorf("defaults %+v", d)
	}
}

func TestAllowed(t *testing.T) {
	list := []string{"Registry.Example.com", "127.0.0.1:5000"}
	for _, tc := range []struct {
		host, hostname string
		want           bool
	}{
		{"registry.example.com", "registry.example.com", true},
		{"registry.example.com:443", "registry.example.com", true},
		{"127.0.0.1:5000", "127.0.0.1", true},
		{"127.0.0.1:5001", "127.0.0.1", false},
		{"evil.example.com", "evil.example.com", false},
	} {
		if got := allowed(list, tc.host, tc.hostname); got != tc.want {
			t.Errorf("allowed(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
	if allowed(nil, "anything", "anything") {
		t.Error("an empty list must allow nothing")
	}
}
