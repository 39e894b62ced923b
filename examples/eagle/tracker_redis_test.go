package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/eagle-p2p/eagle/tracker/redisstore/redistest"
	"github.com/eagle-p2p/eagle/tracker/storetest"
)

// trackerProcess is an "eagle tracker" running as its own process.
type trackerProcess struct {
	cmd  *exec.Cmd
	logs *logBuffer
	addr string // host:port of its HTTPS listener
	done chan struct{}
}

// startTrackerProcess runs "bin tracker --config cfg" on a free port of
// 127.0.0.1 until stop or the end of the test, and waits until it listens.
func startTrackerProcess(t *testing.T, bin, cfg string) *trackerProcess {
	t.Helper()
	p := &trackerProcess{logs: &logBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "tracker", "--config", cfg, "--listen", "127.0.0.1:0")
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	p.addr = waitAddr(t, p.logs, "listening", "addr")
	return p
}

// stop ends the tracker with SIGTERM, as Kubernetes does, and checks that
// it exited cleanly.
func (p *trackerProcess) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			t.Errorf("eagle tracker exited with %v; logs:\n%s", p.cmd.ProcessState, p.logs.String())
		}
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("eagle tracker did not stop on SIGTERM")
	}
}

// announceResponse is the part of a tracker's answer the test reads.
type announceResponse struct {
	FailureReason string `bencode:"failure reason"`
	Complete      int    `bencode:"complete"`
	Incomplete    int    `bencode:"incomplete"`
	Peers         string `bencode:"peers"`
}

// announceTo announces peer n (storetest.ID(n), port 7000+n) of swarm 1
// to the tracker at addr with client, and returns the ports of the peers
// it hands out, sorted.
func announceTo(t *testing.T, client *http.Client, addr string, n int, left int64) []int {
	t.Helper()
	ih, id := storetest.Hash(1), storetest.ID(n)
	q := url.Values{
		"info_hash": {string(ih[:])}, "peer_id": {string(id[:])}, "port": {fmt.Sprint(7000 + n)},
		"left": {fmt.Sprint(left)}, "uploaded": {"0"}, "downloaded": {"0"}, "compact": {"1"}, "numwant": {"50"},
	}
	code, body := getWith(t, client, "https://"+addr+"/announce?"+q.Encode())
	var res announceResponse
	if err := bencode.Unmarshal([]byte(body), &res); err != nil || code != http.StatusOK || res.FailureReason != "" {
		t.Fatalf("announce of peer %d to %s: %d %q (%v)", n, addr, code, body, err)
	}
	var ports []int
	for b := []byte(res.Peers); len(b) >= 6; b = b[6:] {
		ports = append(ports, int(binary.BigEndian.Uint16(b[4:6])))
	}
	slices.Sort(ports)
	return ports
}

// Two "eagle tracker" processes with store: redis on one redis-server are
// one tracker to the cluster: a peer announced to either is handed out by
// the other, and still after the first one stopped.
func TestTrackerRedisReplicas(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	bin := buildEagle(t)
	ca := testCA(t)
	cfg := writeFile(t, fmt.Sprintf("tracker:\n  interval: 1s\n  store: redis\n  redis:\n    addr: %s\n    key_prefix: \"test:%s:\"\n%s",
		srv.Addr, t.Name(), tlsYAML(member(t, ca, "tracker"))))
	a := startTrackerProcess(t, bin, cfg)
	b := startTrackerProcess(t, bin, cfg)
	for name, p := range map[string]*trackerProcess{"A": a, "B": b} {
		line := p.logs.find(func(line map[string]any) bool { return line["msg"] == "peer store" })
		if line == nil || line["store"] != "redis" || line["addr"] != srv.Addr {
			t.Errorf("tracker %s did not log its Redis peer store (%v); logs:\n%s", name, line, p.logs.String())
		}
	}
	client := memberClient(t, member(t, ca, "agent"))

	if got := announceTo(t, client, a.addr, 1, 0); len(got) != 0 {
		t.Errorf("the first peer was handed %v, want nobody", got)
	}
	if got := announceTo(t, client, b.addr, 2, 100); !slices.Equal(got, []int{7001}) {
		t.Errorf("B handed peer 2 the ports %v, want [7001]: peer 1, announced to A", got)
	}
	if got := announceTo(t, client, a.addr, 3, 100); !slices.Equal(got, []int{7001, 7002}) {
		t.Errorf("A handed peer 3 the ports %v, want [7001 7002]", got)
	}
	// One tracker goes away; the other still knows what was announced to it.
	a.stop(t)
	if got := announceTo(t, client, b.addr, 4, 100); !slices.Equal(got, []int{7001, 7002, 7003}) {
		t.Errorf("with A stopped, B handed peer 4 the ports %v, want [7001 7002 7003]", got)
	}
}

// A tracker asked for the Redis store without an address, or for a store
// that does not exist, does not start, and says which key is wrong.
func TestTrackerStoreConfigNamesTheKey(t *testing.T) {
	tlsFlags := tlsArgs(member(t, testCA(t), "tracker"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "redis"}, "redis.addr is required"},
		{[]string{"--store", "etcd"}, `store "etcd"`},
		{[]string{"--config", writeFile(t, "tracker:\n  store: redis\n  redis:\n    addr: redis\n")}, `redis.addr "redis"`},
		{[]string{"--config", writeFile(t, "tracker:\n  store: redis\n  redis:\n    addr: redis:6379\n    timeout: soon\n")}, "tracker.redis.timeout"},
		{[]string{"--config", writeFile(t, "tracker:\n  redis:\n    adress: redis:6379\n")}, "tracker.redis.adress"},
	} {
		var stderr bytes.Buffer
		err := commandFunc(t, "tracker")(t.Context(), slices.Concat([]string{"--listen", "127.0.0.1:0"}, tc.args, tlsFlags), &stderr, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("eagle tracker %q: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}
