package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/eagle-p2p/eagle/p2p"
)

// The topology lab's private network: datacenter k is 10.214.k.0/24 on a
// bridge of its own, the router namespace is 10.214.k.1 on each, agent i
// of datacenter k is 10.214.k.<10+i>, and the root namespace (this
// process: origin, tracker, seeders) is topoRootAddr on datacenter 0's
// bridge. These addresses exist only on links the lab creates.
const (
	topoSubnet   = "10.214.0.0/16"
	topoRootAddr = "10.214.0.2"
	// topoMaxDCs and topoMaxPerDC bound the addresses and the interface
	// names (at most 15 characters) the lab makes.
	topoMaxDCs   = 16
	topoMaxPerDC = 240
)

// topoLab is "bench topology"'s network: K datacenters, each an L2 bridge
// in the root namespace with its agents' namespaces joined to it by veth
// pairs capped at the node cap, and one router namespace joined to every
// bridge by a veth pair capped at the border cap, which routes between
// the datacenters. The root namespace has an address on datacenter 0's
// bridge only (and a route to the others through the router), so that it
// cannot route between datacenters itself: every byte between two
// datacenters crosses the router, where its interfaces count it.
type topoLab struct {
	pid    int
	router string     // the router's namespace
	agents [][]string // per datacenter, its agents' namespaces
	// made are the namespaces and bridges made so far, for Close.
	namespaces, bridges []string
}

// The names the lab of process pid gives its bridges (one per
// datacenter k), the root namespace's ends of the router's links and of
// agent j's link (interface names hold at most 15 characters), and its
// namespaces.
func topoBridge(pid, k int) string     { return fmt.Sprintf("ed%db%d", pid, k) }
func topoRouterLink(pid, k int) string { return fmt.Sprintf("ed%dr%d", pid, k) }
func topoAgentLink(pid, j int) string  { return fmt.Sprintf("ed%dh%d", pid, j) }
func topoNSPrefix(pid int) string      { return fmt.Sprintf("eagletopo-%d-", pid) }

// topoRouterDev is the router namespace's interface on datacenter k.
func topoRouterDev(k int) string { return fmt.Sprintf("dc%d", k) }

// topoGateway is the router's address in datacenter k.
func topoGateway(k int) string { return fmt.Sprintf("10.214.%d.1", k) }

// topoAgentAddr is the address of agent i of datacenter k.
func topoAgentAddr(k, i int) string { return fmt.Sprintf("10.214.%d.%d", k, 10+i) }

// tbfArgs is a tc tbf qdisc at rate bytes per second: a burst of 20 ms at
// the rate and never less than a 64 KiB GSO segment, at most 50 ms queued
// (the qdisc of newNetnsLab).
func tbfArgs(rate p2p.Rate) []string {
	return []string{"root", "tbf", "rate", strconv.FormatInt(int64(rate)*8, 10) + "bit",
		"burst", strconv.FormatInt(max(int64(rate)/50, 64<<10), 10), "latency", "50ms"}
}

// newTopoLab makes dcs datacenters of perDC agent namespaces each, every
// agent's link capped at nodeCap both ways and every datacenter's link to
// the router at borderCap both ways. On error the returned lab (if not
// nil) holds what was made, for Close to remove.
func newTopoLab(ctx context.Context, dcs, perDC int, nodeCap, borderCap p2p.Rate) (*topoLab, error) {
	if dcs < 1 || dcs > topoMaxDCs || perDC < 1 || perDC > topoMaxPerDC {
		return nil, fmt.Errorf("topology lab: %d datacenters of %d agents: want 1 to %d of 1 to %d", dcs, perDC, topoMaxDCs, topoMaxPerDC)
	}
	if err := removeStaleTopoLabs(ctx); err != nil {
		return nil, err
	}
	if out, err := runTool(ctx, "ip", "-o", "addr", "show", "to", topoSubnet); err != nil {
		return nil, err
	} else if strings.TrimSpace(out) != "" {
		return nil, fmt.Errorf("topology lab: %s is already in use (another bench topology run?):\n%s", topoSubnet, out)
	}
	if out, err := runTool(ctx, "ip", "route", "show", "root", topoSubnet); err != nil {
		return nil, err
	} else if strings.TrimSpace(out) != "" {
		return nil, fmt.Errorf("topology lab: routes into %s exist already (another bench topology run?):\n%s", topoSubnet, out)
	}
	pid := os.Getpid()
	l := &topoLab{pid: pid, router: topoNSPrefix(pid) + "router", agents: make([][]string, dcs)}
	do := func(steps ...[]string) error {
		for _, s := range steps {
			if _, err := runTool(ctx, s[0], s[1:]...); err != nil {
				return fmt.Errorf("topology lab: %w", err)
			}
		}
		return nil
	}
	if err := do([]string{"ip", "netns", "add", l.router}); err != nil {
		return nil, err
	}
	l.namespaces = append(l.namespaces, l.router)
	// Forwarding is on in the router's namespace only; the root
	// namespace's settings are left as they are.
	if err := do(
		[]string{"ip", "-n", l.router, "link", "set", "lo", "up"},
		[]string{"ip", "netns", "exec", l.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	); err != nil {
		return l, err
	}
	for k := range dcs {
		br, rl, rd := topoBridge(pid, k), topoRouterLink(pid, k), topoRouterDev(k)
		if err := do([]string{"ip", "link", "add", br, "type", "bridge"}); err != nil {
			return l, err
		}
		l.bridges = append(l.bridges, br)
		if err := do(
			[]string{"ip", "link", "set", br, "up"},
			[]string{"ip", "link", "add", rl, "type", "veth", "peer", "name", rd, "netns", l.router},
			[]string{"ip", "link", "set", rl, "master", br},
			[]string{"ip", "link", "set", rl, "up"},
			[]string{"ip", "-n", l.router, "addr", "add", topoGateway(k) + "/24", "dev", rd},
			[]string{"ip", "-n", l.router, "link", "set", rd, "up"},
			// Out of datacenter k (the bridge's end sends to the router)
			// and into it (the router's end sends to the bridge).
			append([]string{"tc", "qdisc", "add", "dev", rl}, tbfArgs(borderCap)...),
			append([]string{"tc", "-n", l.router, "qdisc", "add", "dev", rd}, tbfArgs(borderCap)...),
		); err != nil {
			return l, err
		}
	}
	// This process sits in datacenter 0 and reaches the others through
	// the router, like its agents.
	if err := do(
		[]string{"ip", "addr", "add", topoRootAddr + "/24", "dev", topoBridge(pid, 0)},
		[]string{"ip", "route", "add", topoSubnet, "via", topoGateway(0), "dev", topoBridge(pid, 0)},
	); err != nil {
		return l, err
	}
	for k := range dcs {
		for i := range perDC {
			ns := fmt.Sprintf("%sdc%d-%d", topoNSPrefix(pid), k, i)
			if err := do([]string{"ip", "netns", "add", ns}); err != nil {
				return l, err
			}
			l.namespaces = append(l.namespaces, ns)
			l.agents[k] = append(l.agents[k], ns)
			link := topoAgentLink(pid, k*perDC+i)
			if err := do(
				[]string{"ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns},
				[]string{"ip", "link", "set", link, "master", topoBridge(pid, k)},
				[]string{"ip", "link", "set", link, "up"},
				[]string{"ip", "-n", ns, "addr", "add", topoAgentAddr(k, i) + "/24", "dev", "eth0"},
				[]string{"ip", "-n", ns, "link", "set", "eth0", "up"},
				[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
				[]string{"ip", "-n", ns, "route", "add", topoSubnet, "via", topoGateway(k)},
				append([]string{"tc", "qdisc", "add", "dev", link}, tbfArgs(nodeCap)...),             // the node's download
				append([]string{"tc", "-n", ns, "qdisc", "add", "dev", "eth0"}, tbfArgs(nodeCap)...), // the node's upload
			); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

// routerCounters are the bytes each of the router's interfaces received
// from its datacenter (rx) and sent into it (tx), and the packets its
// border qdisc dropped on the way in (drops), by datacenter.
type routerCounters struct{ rx, tx, drops []int64 }

// crossed is what the router forwarded between the two readings: the sum
// over the datacenters of what it sent into each, so that a byte that
// crossed from one datacenter into another counts once. It includes
// everything on the wire: headers, the tracker's and the seeders' gRPC
// traffic, ARP.
func (c routerCounters) crossed(before routerCounters) int64 {
	var n int64
	for k := range c.tx {
		n += c.tx[k] - before.tx[k]
	}
	return n
}

// counters reads the router's interface counters.
func (l *topoLab) counters(ctx context.Context) (routerCounters, error) {
	out, err := runTool(ctx, "ip", "-n", l.router, "-s", "-j", "link", "show")
	if err != nil {
		return routerCounters{}, fmt.Errorf("topology lab: router counters: %w", err)
	}
	var links []struct {
		Name  string `json:"ifname"`
		Stats struct {
			RX struct {
				Bytes int64 `json:"bytes"`
			} `json:"rx"`
			TX struct {
				Bytes int64 `json:"bytes"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return routerCounters{}, fmt.Errorf("topology lab: router counters: %w", err)
	}
	c := routerCounters{rx: make([]int64, len(l.agents)), tx: make([]int64, len(l.agents)), drops: make([]int64, len(l.agents))}
	seen := 0
	for _, ln := range links {
		for k := range l.agents {
			if ln.Name == topoRouterDev(k) {
				c.rx[k], c.tx[k] = ln.Stats.RX.Bytes, ln.Stats.TX.Bytes
				seen++
			}
		}
	}
	if seen != len(l.agents) {
		return routerCounters{}, fmt.Errorf("topology lab: router has %d of its %d datacenter interfaces", seen, len(l.agents))
	}
	for k := range l.agents {
		out, err := runTool(ctx, "tc", "-n", l.router, "-s", "-j", "qdisc", "show", "dev", topoRouterDev(k))
		if err != nil {
			return routerCounters{}, fmt.Errorf("topology lab: border qdisc counters: %w", err)
		}
		var qdiscs []struct {
			Kind  string `json:"kind"`
			Drops int64  `json:"drops"`
		}
		if err := json.Unmarshal([]byte(out), &qdiscs); err != nil {
			return routerCounters{}, fmt.Errorf("topology lab: border qdisc counters: %w", err)
		}
		for _, q := range qdiscs {
			if q.Kind == "tbf" {
				c.drops[k] += q.Drops
			}
		}
	}
	return c, nil
}

// Close deletes the namespaces (and with them their veth pairs) and the
// bridges (and with the first one the root namespace's address and
// route). It runs even when the bench's context has ended.
func (l *topoLab) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error
	for _, ns := range l.namespaces {
		// An agent killed mid-transfer leaves orphaned TCP sockets that
		// keep trying to send; each holds its namespace, and with it the
		// veth pair, for a minute or two after the namespace's name is
		// gone. Destroying them first lets the namespace go at once (best
		// effort: a kernel without sock_diag destroy keeps them).
		runTool(ctx, "ip", "netns", "exec", ns, "ss", "-K", "-t", "-a")
		if _, err := runTool(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, br := range l.bridges {
		if _, err := runTool(ctx, "ip", "link", "del", br); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeStaleTopoLabs removes what topology labs of processes that are
// gone left behind (a bench killed before its clean-up ran): their
// namespaces and bridges, whose address and route would shadow the new
// lab's. A lab of a live process is an error: two cannot share the subnet.
func removeStaleTopoLabs(ctx context.Context) error {
	out, err := runTool(ctx, "ip", "-o", "link", "show", "type", "bridge")
	if err != nil {
		return fmt.Errorf("topology lab: list bridges: %w", err)
	}
	stale := map[int][]string{} // pid: its bridges
	for line := range strings.Lines(out) {
		// "12: ed4242b0: <BROADCAST,...> ..."
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		rest, ok := strings.CutPrefix(name, "ed")
		p, _, ok2 := strings.Cut(rest, "b")
		pid, err := strconv.Atoi(p)
		if !ok || !ok2 || err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			if pid == os.Getpid() {
				return fmt.Errorf("topology lab: this process already has one (bridge %s)", name)
			}
			return fmt.Errorf("topology lab: another lab (bridge %s of live process %d) holds %s", name, pid, topoSubnet)
		}
		stale[pid] = append(stale[pid], name)
	}
	nsOut, err := runTool(ctx, "ip", "netns", "list")
	if err != nil {
		return fmt.Errorf("topology lab: list namespaces: %w", err)
	}
	for line := range strings.Lines(nsOut) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		rest, ok := strings.CutPrefix(f[0], "eagletopo-")
		p, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // a live lab's; its bridges said so above, or it is being made
		}
		if _, err := runTool(ctx, "ip", "netns", "del", f[0]); err != nil {
			return fmt.Errorf("topology lab: remove stale namespace: %w", err)
		}
	}
	for _, bridges := range stale {
		for _, br := range bridges {
			if _, err := runTool(ctx, "ip", "link", "del", br); err != nil {
				return fmt.Errorf("topology lab: remove stale bridge: %w", err)
			}
		}
	}
	return nil
}
