package main

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A second seeder or agent on a host, started with a peer port another
// process holds, refuses to start with an error naming the key and the
// flag that set it.
func TestPeerPortInUseNamesKeyAndFlag(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	busy := held.Addr().String()
	dir := t.TempDir()
	ca := testCA(t)
	for _, p := range []struct {
		cmd  string
		args []string
	}{
		{"seeder", []string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--peer-listen", busy,
			"--data-dir", filepath.Join(dir, "seeder"), "--tracker", "https://127.0.0.1:1/announce", "--allow-upstream", "registry.example"}},
		{"agent", []string{"--listen", "127.0.0.1:0", "--peer-listen", busy, "--data-dir", filepath.Join(dir, "agent"),
			"--tracker", "https://127.0.0.1:1/announce", "--seeder", "127.0.0.1:1", "--upstream", "http://127.0.0.1:1"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := commandFunc(t, p.cmd)(ctx, append(p.args, tlsArgs(member(t, ca, p.cmd))...), io.Discard, io.Discard)
		cancel()
		if err == nil {
			t.Fatalf("eagle %s started on a peer port in use", p.cmd)
		}
		for _, want := range []string{"listen_addr", busy, "--peer-listen"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("eagle %s: error %q does not name %s", p.cmd, err, want)
			}
		}
	}
}
