package main

import (
	"path/filepath"
	"testing"

	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/tracker"
)

// The example configurations in the repository's testdata/ load into the
// binaries' config structs (unknown keys refused) and pass validation, so
// the files operators copy stay in step with the code.
func TestExampleConfigs(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata")

	var tc trackerConfig
	if err := loadYAML(filepath.Join(dir, "tracker.yaml"), &tc); err != nil {
		t.Fatal(err)
	}
	if err := tc.Tracker.WithDefaults().Validate(); err != nil {
		t.Errorf("tracker.yaml: %v", err)
	}
	if tc.Tracker.Policy != tracker.PolicyCompleteness {
		t.Errorf("tracker.yaml policy %q", tc.Tracker.Policy)
	}

	var sc seederConfig
	if err := loadYAML(filepath.Join(dir, "seeder.yaml"), &sc); err != nil {
		t.Fatal(err)
	}
	if err := sc.Seeder.Validate(); err != nil {
		t.Errorf("seeder.yaml: seeder: %v", err)
	}
	sc.P2P.DataDir = t.TempDir()
	if err := sc.P2P.Validate(); err != nil {
		t.Errorf("seeder.yaml: p2p: %v", err)
	}
	if sc.CacheSize != 100<<30 || sc.Seeder.OriginLimit != 200<<20 || sc.P2P.UploadLimit != p2p.Rate(1e9/8) {
		t.Errorf("seeder.yaml read as cache %v, origin limit %v, upload %v", sc.CacheSize, sc.Seeder.OriginLimit, sc.P2P.UploadLimit)
	}

	var ac agentConfig
	if err := loadYAML(filepath.Join(dir, "agent.yaml"), &ac); err != nil {
		t.Fatal(err)
	}
	ac.Node.DataDir = t.TempDir()
	if err := ac.Node.Validate(); err != nil {
		t.Errorf("agent.yaml: %v", err)
	}
	if ac.Node.P2P.DownloadLimit != p2p.Rate(400e6/8) || len(ac.Node.Seeders) != 2 {
		t.Errorf("agent.yaml read as download limit %v, seeders %v", ac.Node.P2P.DownloadLimit, ac.Node.Seeders)
	}
}
