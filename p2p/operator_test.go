package p2p_test

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/eagle-p2p/eagle/internal/testenv"
	"github.com/eagle-p2p/eagle/internal/testtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/storage/memory"
)

// A second engine on a port another one holds fails with an error that
// names the key to change.
func TestListenAddrInUseNamesTheKey(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	addr := "127.0.0.1:" + strconv.Itoa(lis.Addr().(*net.TCPAddr).Port)
	_, err = p2p.New(p2p.Config{TLS: testtls.Member(t, "node"), SkipAuthorization: true,
		ListenAddr: addr, DataDir: t.TempDir(), Trackers: []string{"https://127.0.0.1:1/announce"}, Logger: quiet,
	}, memory.New(), nil)
	if !errors.Is(err, p2p.ErrAddrInUse) || !strings.Contains(err.Error(), "listen_addr") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("err = %v, want ErrAddrInUse naming listen_addr and %s", err, addr)
	}
}

// A tracker URL given without a path is announced to at /announce.
func TestTrackerURLWithoutPath(t *testing.T) {
	trk := testenv.NewTracker(t, nil)
	var announces atomic.Int64
	base, _ := testtls.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/announce" {
			announces.Add(1)
		}
		trk.ServeHTTP(w, r)
	}))
	content := randomBytes(t, 100<<10)
	store := memory.New()
	d := putBlob(t, store, content)
	e := newEngine(t, p2p.RoleSeeder, base, store, nil)
	if err := e.Seed(t.Context(), d, metaInfoFor(t, d, content)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an announce at /announce", func() bool { return announces.Load() > 0 })
}
