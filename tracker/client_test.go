package tracker_test

import (
	"context"
	"math"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	atracker "github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/eagle-p2p/eagle/tracker"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

// TestAnacrolixTrackerClient announces and scrapes with the tracker client
// our p2p engine uses, so the wire format is checked by a real decoder.
func TestAnacrolixTrackerClient(t *testing.T) {
	ts := httptest.NewServer(newServer(t, tracker.Config{Interval: 7 * time.Second, MinInterval: 2 * time.Second, SeedInterval: 70 * time.Second}))
	defer ts.Close()
	cl, err := atracker.NewClient(ts.URL+"/announce", atracker.NewClientOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ih := infohash.T(storetest.Hash(1))
	announce := func(n int, left int64, ev atracker.AnnounceEvent) atracker.AnnounceResponse {
		t.Helper()
		res, err := cl.Announce(ctx, atracker.AnnounceRequest{
			InfoHash: ih, PeerId: types.PeerID(storetest.ID(n)), Port: uint16(7000 + n), Left: left, Event: ev,
		}, atracker.AnnounceOpt{})
		if err != nil {
			t.Fatalf("announce of peer %d: %v", n, err)
		}
		return res
	}

	res := announce(1, 0, atracker.Started)
	if res.Interval != 70 || res.Seeders != 1 || res.Leechers != 0 || len(res.Peers) != 0 {
		t.Errorf("first seeder got %+v, want the seed interval 70, itself as the only seeder, no peers", res)
	}
	announce(2, 1000, atracker.Started)
	announce(3, -1, atracker.Started) // anacrolix sends MaxInt64 before it has the info
	res = announce(4, 500, atracker.Started)
	if res.Seeders != 1 || res.Leechers != 3 || len(res.Peers) != 3 {
		t.Fatalf("fourth peer got %+v, want 1 seeder, 3 leechers, 3 peers", res)
	}
	// Completeness order: the seeder, then the leecher with least left, then
	// the one that does not know yet.
	for i, port := range []int{7001, 7002, 7003} {
		if p, _ := res.Peers[i].ToNetipAddrPort(); p != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)) {
			t.Errorf("peer %d is %v, want 127.0.0.1:%d", i, p, port)
		}
	}
	announce(2, 0, atracker.Completed)
	res = announce(3, math.MaxInt64, atracker.Stopped)
	if res.Seeders != 2 || res.Leechers != 1 || len(res.Peers) != 0 {
		t.Errorf("stopped peer got %+v, want 2 seeders, 1 leecher, no peers", res)
	}

	scrape, err := cl.Scrape(ctx, []infohash.T{ih, infohash.T(storetest.Hash(2))})
	if err != nil {
		t.Fatal(err)
	}
	if len(scrape) != 2 || scrape[0].Seeders != 2 || scrape[0].Leechers != 1 || scrape[0].Completed != 1 ||
		scrape[1].Seeders != 0 || scrape[1].Leechers != 0 {
		t.Errorf("scrape = %+v, want [2 seeders 1 leecher 1 completed, empty]", scrape)
	}

	// A failure reason reaches the client as an error naming the field.
	_, err = cl.Announce(ctx, atracker.AnnounceRequest{InfoHash: ih, PeerId: types.PeerID(storetest.ID(9)), Port: 0}, atracker.AnnounceOpt{})
	if err == nil || !strings.Contains(err.Error(), "port: must be 1-65535") {
		t.Errorf("announce with port 0: %v, want the tracker's failure reason", err)
	}
}
