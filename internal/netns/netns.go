// Package netns makes network namespaces for tests that need hosts the
// way an attacker or a failure would see them: a namespace joined to the
// root namespace by a veth pair, with an address on each end, and a dialer
// whose sockets live inside the namespace. It needs root and iproute2;
// every namespace and link it makes is removed by Close.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnavailable reports a machine where namespaces cannot be made: not
// root, or no ip command.
var ErrUnavailable = errors.New("netns: network namespaces unavailable")

// Check reports whether namespaces can be made here, and why not.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root", ErrUnavailable)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// NS is a network namespace joined to the root namespace by a veth pair.
type NS struct {
	// Name is the namespace's name (ip netns).
	Name string
	// HostAddr is the root namespace's end of the pair; servers that the
	// namespace must reach listen there.
	HostAddr string
	// Addr is the namespace's own address.
	Addr string
	link string
}

var seq atomic.Int64

// New makes a namespace and a /30 veth link to it from the root
// namespace, in 10.233.0.0/16, named after the process and a counter so
// that parallel test processes do not collide.
func New(ctx context.Context) (*NS, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	n := seq.Add(1)
	id := (os.Getpid()*7 + int(n)) % 16000
	ns := &NS{
		Name:     fmt.Sprintf("eagle-t%d-%d", os.Getpid(), n),
		HostAddr: fmt.Sprintf("10.233.%d.%d", id/64, (id%64)*4+1),
		Addr:     fmt.Sprintf("10.233.%d.%d", id/64, (id%64)*4+2),
		link:     fmt.Sprintf("et%dh%d", os.Getpid()%100000, n),
	}
	peer := fmt.Sprintf("et%dn%d", os.Getpid()%100000, n)
	steps := [][]string{
		{"ip", "netns", "add", ns.Name},
		{"ip", "link", "add", ns.link, "type", "veth", "peer", "name", peer, "netns", ns.Name},
		{"ip", "addr", "add", ns.HostAddr + "/30", "dev", ns.link},
		{"ip", "link", "set", ns.link, "up"},
		{"ip", "-n", ns.Name, "addr", "add", ns.Addr + "/30", "dev", peer},
		{"ip", "-n", ns.Name, "link", "set", peer, "up"},
		{"ip", "-n", ns.Name, "link", "set", "lo", "up"},
	}
	for i, s := range steps {
		if err := run(ctx, s...); err != nil {
			if i > 0 {
				ns.Close()
			}
			return nil, err
		}
	}
	return ns, nil
}

// Close removes the namespace and the link.
func (ns *NS) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Deleting the namespace deletes its end of the pair, and with it ours.
	err := run(ctx, "ip", "netns", "del", ns.Name)
	// The pair may still be going away with the namespace: "No such device".
	if lerr := run(ctx, "ip", "link", "del", ns.link); lerr != nil && !strings.Contains(lerr.Error(), "Cannot find device") && !strings.Contains(lerr.Error(), "No such device") {
		err = errors.Join(err, lerr)
	}
	return err
}

// DialContext dials addr from inside the namespace: the socket is made
// there, and stays there whichever thread later uses it.
func (ns *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := ns.Do(func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// Do runs fn on an OS thread switched into the namespace, so that every
// socket fn makes belongs to the namespace. fn must not start goroutines
// that make sockets (they run on other threads).
func (ns *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: %w", err)
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + ns.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: enter %s: %w", ns.Name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and is thrown away when this goroutine
		// ends, rather than run other goroutines in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("netns: leave %s: %w", ns.Name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

func run(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Lab is a private network of hosts: a bridge in the root namespace and,
// per host, a namespace joined to it by a veth pair, all in one /16. The
// root namespace (the test process) has the bridge's address, so servers
// it runs on that address are reachable from every host. Close removes
// everything.
type Lab struct {
	// BridgeAddr is the root namespace's address on the lab network.
	BridgeAddr string
	bridge     string
	prefix     string // "10.234."
	hosts      []*Host
}

// Host is one host of a Lab: a namespace with one address.
type Host struct {
	NS
	lab  *Lab
	peer string // the namespace's end of the veth pair
}

// NewLab makes an empty lab on 10.234.0.0/16 (one lab per process at a
// time).
func NewLab(ctx context.Context) (*Lab, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	l := &Lab{bridge: fmt.Sprintf("el%d", os.Getpid()), prefix: "10.234."}
	l.BridgeAddr = l.prefix + "0.1"
	if err := removeStaleLabs(ctx); err != nil {
		return nil, err
	}
	for _, s := range [][]string{
		{"ip", "link", "add", l.bridge, "type", "bridge"},
		{"ip", "addr", "add", l.BridgeAddr + "/16", "dev", l.bridge},
		{"ip", "link", "set", l.bridge, "up"},
	} {
		if err := run(ctx, s...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// removeStaleLabs removes what labs of processes that are gone left
// behind (a test binary killed before its cleanup ran): their bridges,
// whose address would shadow the new lab's, and their namespaces. A lab
// of a live process is an error: two labs cannot share 10.234.0.0/16.
func removeStaleLabs(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "ip", "-o", "link", "show", "type", "bridge").Output()
	if err != nil {
		return fmt.Errorf("netns: list bridges: %w", err)
	}
	var stale []int
	for line := range strings.Lines(string(out)) {
		// "12: el4242: <BROADCAST,...> ..."
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		pid, err := strconv.Atoi(strings.TrimPrefix(name, "el"))
		if !strings.HasPrefix(name, "el") || err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			return fmt.Errorf("netns: another lab (bridge %s of live process %d) holds 10.234.0.0/16", name, pid)
		}
		stale = append(stale, pid)
	}
	if len(stale) == 0 {
		return nil
	}
	nsOut, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("netns: list namespaces: %w", err)
	}
	for _, pid := range stale {
		prefix := fmt.Sprintf("eagle-%d-", pid)
		for line := range strings.Lines(string(nsOut)) {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
				if err := run(ctx, "ip", "netns", "del", f[0]); err != nil {
					return err
				}
			}
		}
		if err := run(ctx, "ip", "link", "del", fmt.Sprintf("el%d", pid)); err != nil {
			return err
		}
	}
	return nil
}

// AddHost makes a host named name (for the namespace's name) on the lab.
func (l *Lab) AddHost(ctx context.Context, name string) (*Host, error) {
	i := len(l.hosts) + 1
	h := &Host{lab: l, NS: NS{
		Name:     fmt.Sprintf("eagle-%d-%s", os.Getpid(), name),
		HostAddr: l.BridgeAddr,
		Addr:     fmt.Sprintf("%s%d.%d", l.prefix, i/250+1, i%250+1),
		link:     fmt.Sprintf("el%dh%d", os.Getpid()%10000, i),
	}}
	peer := fmt.Sprintf("el%dn%d", os.Getpid()%10000, i)
	h.peer = peer
	steps := [][]string{
		{"ip", "netns", "add", h.Name},
		{"ip", "link", "add", h.link, "type", "veth", "peer", "name", peer, "netns", h.Name},
		{"ip", "link", "set", h.link, "master", l.bridge},
		{"ip", "link", "set", h.link, "up"},
		{"ip", "-n", h.Name, "addr", "add", h.Addr + "/16", "dev", peer},
		{"ip", "-n", h.Name, "link", "set", peer, "up"},
		{"ip", "-n", h.Name, "link", "set", "lo", "up"},
	}
	for j, s := range steps {
		if err := run(ctx, s...); err != nil {
			if j > 0 {
				h.NS.Close()
			}
			return nil, err
		}
	}
	l.hosts = append(l.hosts, h)
	return h, nil
}

// Command returns a command that runs name inside the host's namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// SetLink takes the host's link to the lab down (up false) or back up:
// its traffic stops, its processes live on.
func (h *Host) SetLink(ctx context.Context, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return run(ctx, "ip", "link", "set", h.link, state)
}

// Cap limits the host's link with a tc tbf qdisc on each end of its veth
// pair: what it receives to down bytes per second (on the root
// namespace's end), what it sends to up (on the namespace's end); 0
// leaves that way uncapped. Each qdisc has a burst of 20 ms at its rate,
// at least 64 KiB, and at most 50 ms of queue. It needs tc (iproute2).
func (h *Host) Cap(ctx context.Context, down, up int64) error {
	if down < 0 || up < 0 {
		return fmt.Errorf("netns: cap %s: negative rate (down %d, up %d)", h.Name, down, up)
	}
	tbf := func(rate int64) []string {
		return []string{"root", "tbf", "rate", fmt.Sprintf("%dbit", rate*8),
			"burst", fmt.Sprint(max(rate/50, 64<<10)), "latency", "50ms"}
	}
	if down > 0 {
		if err := run(ctx, append([]string{"tc", "qdisc", "add", "dev", h.link}, tbf(down)...)...); err != nil {
			return err
		}
	}
	if up > 0 {
		return run(ctx, append([]string{"tc", "-n", h.Name, "qdisc", "add", "dev", h.peer}, tbf(up)...)...)
	}
	return nil
}

// Close removes every host and the bridge.
func (l *Lab) Close() error {
	var errs []error
	for _, h := range l.hosts {
		errs = append(errs, h.NS.Close())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, "ip", "link", "del", l.bridge); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
