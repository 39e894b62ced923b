package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
)

// exampleConfigs are the example configurations in the repository's
// testdata/, the files operators copy.
var exampleConfigs = []string{"tracker.yaml", "seeder.yaml", "agent.yaml"}

func exampleConfigPath(name string) string { return filepath.Join("..", "..", "testdata", name) }

// The example configurations load into the binaries' config structs
// (unknown keys refused) and pass validation, so that they stay in step
// with the code, and every part in them is a cluster member: certificates,
// not insecure, and https trackers.
func TestExampleConfigs(t *testing.T) {
	var tc trackerConfig
	if err := loadYAML(exampleConfigPath("tracker.yaml"), &tc); err != nil {
		t.Fatal(err)
	}
	if err := tc.Validate(); err != nil {
		t.Errorf("tracker.yaml: %v", err)
	}
	if tc.Tracker.Policy != "completeness" {
		t.Errorf("tracker.yaml policy %q", tc.Tracker.Policy)
	}

	var sc seederConfig
	if err := loadYAML(exampleConfigPath("seeder.yaml"), &sc); err != nil {
		t.Fatal(err)
	}
	if err := sc.Seeder.Validate(); err != nil {
		t.Errorf("seeder.yaml: seeder: %v", err)
	}
	// As runSeeder does: the peer is a member with the seeder's files.
	sc.P2P.TLS = sc.TLS
	sc.P2P.DataDir = t.TempDir()
	if err := sc.P2P.Validate(); err != nil {
		t.Errorf("seeder.yaml: p2p: %v", err)
	}
	if err := sc.Validate(); err != nil {
		t.Errorf("seeder.yaml: %v", err)
	}
	if sc.CacheSize != 100<<30 || sc.Seeder.OriginLimit != 200<<20 || sc.P2P.UploadLimit != p2p.Rate(1e9/8) {
		t.Errorf("seeder.yaml read as cache %v, origin limit %v, upload %v", sc.CacheSize, sc.Seeder.OriginLimit, sc.P2P.UploadLimit)
	}

	var ac agentConfig
	if err := loadYAML(exampleConfigPath("agent.yaml"), &ac); err != nil {
		t.Fatal(err)
	}
	ac.Node.DataDir = t.TempDir()
	if err := ac.Node.Validate(); err != nil {
		t.Errorf("agent.yaml: %v", err)
	}
	if ac.Node.P2P.DownloadLimit != p2p.Rate(400e6/8) || len(ac.Node.Seeders) != 2 {
		t.Errorf("agent.yaml read as download limit %v, seeders %v", ac.Node.P2P.DownloadLimit, ac.Node.Seeders)
	}

	for name, m := range map[string]mtls.Config{"tracker.yaml": tc.TLS, "seeder.yaml": sc.TLS, "agent.yaml": ac.Node.TLS} {
		if m.Insecure || m.CA == "" || m.Cert == "" || m.Key == "" {
			t.Errorf("%s: tls %+v, want the CA, certificate and key, not insecure", name, m)
		}
	}
	for name, trackers := range map[string][]string{"seeder.yaml": sc.P2P.Trackers, "agent.yaml": ac.Node.P2P.Trackers} {
		for _, u := range trackers {
			if !strings.HasPrefix(u, "https://") {
				t.Errorf("%s: tracker %q is not https", name, u)
			}
		}
	}
}

// FuzzLoadConfig feeds arbitrary YAML to the three configs' loading and
// validation: any input is refused with an error or accepted, never a
// panic. The corpus starts from the example configurations.
func FuzzLoadConfig(f *testing.F) {
	for _, name := range exampleConfigs {
		b, err := os.ReadFile(exampleConfigPath(name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("tls:\n  insecure: true\n"))
	f.Add([]byte("tls: {ca: a, cert: b, key: c, insecure: true}\n"))
	f.Add([]byte("p2p:\n  upload_limit: 5 parsecs\n  trackers: [ftp://x]\n"))
	f.Add([]byte("seeder:\n  allowed_upstreams: [\"http://bad/\"]\n  origin_timeout: [1s]\n"))
	f.Add([]byte("a: &a [*a]\nb: *a\n"))
	f.Add([]byte("cache_size: -1\nstorage: {driver: floppy}\n"))
	f.Add([]byte("tracker:\n  policy: topology\n  topology: {remote: -1, sample: 5}\n  locations: [{cidr: 10.0.0.0/33, location: \"a//b\"}, {cidr: \"::/0\"}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 16<<10 {
			return // the configs are small; long inputs only slow the search
		}
		var tc trackerConfig
		if decodeYAML("fuzz.yaml", b, &tc) == nil {
			_ = tc.Validate()
		}
		var sc seederConfig
		if decodeYAML("fuzz.yaml", b, &sc) == nil {
			_ = sc.Validate()
		}
		var ac agentConfig
		if decodeYAML("fuzz.yaml", b, &ac) == nil {
			_ = ac.Node.Validate()
		}
	})
}
