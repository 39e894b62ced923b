package p2p_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage/filesystem"
)

// locationSwarm is a seeder announcing to one tracker, and the tracker
// the agents use, which does not know the seeder: an agent finds the
// seeder only through the seeder's own answer.
type locationSwarm struct {
	seeder, agentTracker string
}

func newLocationSwarm(t *testing.T) locationSwarm {
	t.Helper()
	seederTracker := testenv.Tracker(t, nil)
	addr, _, _ := startSeeder(t, seederTracker)
	return locationSwarm{seeder: addr, agentTracker: testenv.Tracker(t, nil)}
}

func (s locationSwarm) agent(t *testing.T, trackerURL, location string) *p2p.Engine {
	t.Helper()
	store, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newEngineWith(t, trackerURL, store, newSeederClient(t, s.seeder), func(c *p2p.Config) { c.Location = location })
}

// TestLocationTakesPeersFromTheTracker: a node with a location does not
// dial the seeder its answer names while the trackers hand it a peer that
// holds the blob; a node without one does.
func TestLocationTakesPeersFromTheTracker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testenv.Origin(t)
	s := newLocationSwarm(t)
	ref, want := pushBlob(t, o, "location/app", 3<<20+777)

	// The first node has no location: it dials the seeder.
	warm := s.agent(t, s.agentTracker, "")
	if got := readAll(t, ctx, warm, ref); !bytes.Equal(got, want) {
		t.Fatal("the first node read bytes that differ from the origin's")
	}
	if st := warm.Stats(); st.BytesFromSeeders == 0 {
		t.Fatalf("a node without a location got nothing from the seeder its answer named: %+v", st)
	}

	near := s.agent(t, s.agentTracker, "dc1/a")
	if got := readAll(t, ctx, near, ref); !bytes.Equal(got, want) {
		t.Fatal("the node with a location read bytes that differ from the origin's")
	}
	st := near.Stats()
	if st.BytesFromSeeders != 0 || st.BytesFromAgents < int64(len(want)) {
		t.Errorf("the node with a location got %d bytes from the seeder and %d from agents; want 0 and at least %d",
			st.BytesFromSeeders, st.BytesFromAgents, len(want))
	}
	if n := o.BlobGETs(ref.Digest); n != 1 {
		t.Errorf("origin served the blob %d times, want 1", n)
	}
}

// TestLocationFallsBackToTheSeeder: a node with a location whose trackers
// do not answer, or answer with nobody, dials the seeder it held back and
// completes.
func TestLocationFallsBackToTheSeeder(t *testing.T) {
	o := testenv.Origin(t)
	s := newLocationSwarm(t)

	// A port nothing listens on: every announce fails at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "https://" + l.Addr().String() + "/announce"
	l.Close()

	for _, tc := range []struct{ name, tracker string }{
		{"TrackerDown", down},
		{"TrackerKnowsNobody", s.agentTracker},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ref, want := pushBlob(t, o, "location/"+strings.ToLower(tc.name), 2<<20+99)
			e := s.agent(t, tc.tracker, "dc1/a")
			if got := readAll(t, ctx, e, ref); !bytes.Equal(got, want) {
				t.Fatal("read bytes that differ from the origin's")
			}
			if st := e.Stats(); st.BytesFromSeeders < int64(len(want)) {
				t.Errorf("got %d bytes from the seeder, want at least %d", st.BytesFromSeeders, len(want))
			}
		})
	}
}
