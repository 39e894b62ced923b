package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/eagle-p2p/eagle/proxy"
)

// writeAgentHostsTOML writes, under dir, the containerd hosts.toml files
// that make this agent the mirror of every registry it serves (its default
// upstream and its --mirror upstreams), for "eagle agent --write-hosts-toml".
func writeAgentHostsTOML(stdout io.Writer, dir string, cfg agentConfig) error {
	agentURL, err := localAgentURL(cfg.Listen)
	if err != nil {
		return err
	}
	var regs []string
	if cfg.Node.Proxy.DefaultUpstream != "" {
		regs = append(regs, cfg.Node.Proxy.DefaultUpstream)
	}
	regs = append(regs, cfg.Node.Proxy.Upstreams...)
	if len(regs) == 0 {
		return fmt.Errorf("agent: --write-hosts-toml: no registry to mirror: set --upstream or --mirror")
	}
	if err := proxy.WriteHostsTOML(dir, agentURL, regs); err != nil {
		return fmt.Errorf("agent: --write-hosts-toml: %w", err)
	}
	fmt.Fprintf(stdout, "wrote hosts.toml under %s for %d registries, mirror %s\n", dir, len(regs), agentURL)
	return nil
}

// localAgentURL is the URL a runtime on this host uses to reach an agent
// listening on listen: a wildcard or missing host means the loopback.
func localAgentURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("agent: listen address %q: %w", listen, err)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("agent: listen address %q: a fixed port is needed to write hosts.toml", listen)
	}
	if host == "" {
		host = "127.0.0.1"
	} else if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}
