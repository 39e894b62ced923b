package tracker_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eagle-p2p/eagle/tracker"
)

func TestConfigDefaults(t *testing.T) {
	got := tracker.Config{}.WithDefaults()
	want := tracker.Config{
		Interval:    10 * time.Second,
		MinInterval: 5 * time.Second,
		PeerTTL:     30 * time.Second,
		MaxNumWant:  50,

		SeedInterval: 5 * time.Minute,
		SeedPeerTTL:  10 * time.Minute,
		NumWant:      50,
		Policy:       tracker.CompletenessPolicy{},

		MaxSwarms:        100_000,
		MaxPeers:         1_000_000,
		MaxPeersPerSwarm: 20_000,
	}
	if got.Logger == nil {
		t.Error("no default Logger")
	}
	got.Logger = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	if err := (tracker.Config{}).Validate(); err != nil {
		t.Errorf("zero Config does not validate: %v", err)
	}
	// PeerTTL follows Interval; NumWant follows a smaller MaxNumWant;
	// SeedPeerTTL follows SeedInterval, and SeedInterval a longer Interval.
	got = tracker.Config{Interval: 20 * time.Second, MaxNumWant: 10, SeedInterval: time.Minute}.WithDefaults()
	if got.PeerTTL != time.Minute || got.NumWant != 10 || got.SeedPeerTTL != 2*time.Minute {
		t.Errorf("derived defaults: PeerTTL %v NumWant %d SeedPeerTTL %v, want 1m0s, 10 and 2m0s", got.PeerTTL, got.NumWant, got.SeedPeerTTL)
	}
	if got = (tracker.Config{Interval: 10 * time.Minute}).WithDefaults(); got.SeedInterval != 10*time.Minute || got.SeedPeerTTL != 30*time.Minute {
		t.Errorf("Interval 10m: SeedInterval %v SeedPeerTTL %v, want 10m0s and 30m0s (never below Interval and PeerTTL)", got.SeedInterval, got.SeedPeerTTL)
	}
	// The store a Server builds takes the TTL and limits of its Config.
	sc := tracker.Config{Interval: 20 * time.Second, MaxPeers: 7}.StoreConfig()
	if want := (tracker.StoreConfig{PeerTTL: time.Minute, SeedTTL: 10 * time.Minute, MaxSwarms: 100_000, MaxPeers: 7, MaxPeersPerSwarm: 20_000}); sc != want {
		t.Errorf("StoreConfig = %+v, want %+v", sc, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  tracker.Config
		want string // in the error
	}{
		{tracker.Config{Interval: 500 * time.Millisecond, MinInterval: time.Second}, "interval 500ms"},
		{tracker.Config{Interval: -time.Second}, "interval -1s"},
		{tracker.Config{MinInterval: time.Millisecond}, "min_interval 1ms: must be at least 1s"},
		{tracker.Config{MinInterval: time.Minute}, "min_interval 1m0s: must not exceed interval"},
		{tracker.Config{PeerTTL: 10 * time.Second}, "peer_ttl 10s: must exceed interval"},
		{tracker.Config{MaxNumWant: -1}, "max_num_want -1"},
		{tracker.Config{NumWant: -5}, "num_want -5"},
		{tracker.Config{NumWant: 60}, "num_want 60: must not exceed max_num_want 50"},
		{tracker.Config{MaxSwarms: -1}, "max_swarms -1: must be positive"},
		{tracker.Config{MaxPeers: -2}, "max_peers -2: must be positive"},
		{tracker.Config{MaxPeersPerSwarm: -3}, "max_peers_per_swarm -3: must be positive"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
		if !errors.Is(err, tracker.ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, does not wrap ErrInvalidConfig", tc.cfg, err)
		}
		if _, nerr := tracker.New(tc.cfg, nil); !errors.Is(nerr, tracker.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want an error wrapping ErrInvalidConfig", tc.cfg, nerr)
		}
	}
}

func TestConfigYAML(t *testing.T) {
	const doc = `
interval: 15s
min_interval: 3s
peer_ttl: 1m
max_num_want: 80
num_want: 30
trust_client_ip: true
max_swarms: 5000
max_peers: 200000
max_peers_per_swarm: 3000
`
	var cfg tracker.Config
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	want := tracker.Config{
		Interval: 15 * time.Second, MinInterval: 3 * time.Second, PeerTTL: time.Minute,
		MaxNumWant: 80, NumWant: 30, TrustClientIP: true,
		MaxSwarms: 5000, MaxPeers: 200_000, MaxPeersPerSwarm: 3000,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("YAML gave %+v, want %+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
