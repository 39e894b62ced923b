package proxy

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrInvalidHostsConfig is returned (wrapped) by WriteHostsTOML for a
// malformed agent URL or registry.
var ErrInvalidHostsConfig = errors.New("proxy: invalid hosts.toml input")

// dockerHubDir is the hosts directory containerd consults for Docker Hub
// references: it normalizes every Docker Hub name to "docker.io".
const dockerHubDir = "docker.io"

// WriteHostsTOML writes, under dir (containerd's hosts directory, for
// example /etc/containerd/certs.d), one <registry host>/hosts.toml per
// registry that names agentURL, an Eagle node, as the registry's mirror for
// pull and resolve, with the registry itself as the server containerd falls
// back to when the node refuses the connection or answers 5xx.
//
// agentURL is "http://host:port" or "https://host:port"; the scheme is
// required because containerd, given a mirror without one, tries https,
// fails, and silently pulls from the registry instead. registries are
// written the way Config.Upstreams takes them: "ghcr.io" (https),
// "http://127.0.0.1:5000", and "docker.io" (or index.docker.io,
// registry-1.docker.io) for Docker Hub, whose server is
// https://registry-1.docker.io and whose directory is docker.io. The agent
// must have each registry among its upstreams, since containerd names the
// registry it wants in ?ns=<host>.
//
// Each file is written to a temporary name and renamed, so containerd never
// reads half a file.
func WriteHostsTOML(dir string, agentURL string, registries []string) error {
	if dir == "" {
		return fmt.Errorf("%w: empty hosts directory", ErrInvalidHostsConfig)
	}
	mirror, err := parseAgentURL(agentURL)
	if err != nil {
		return err
	}
	if len(registries) == 0 {
		return fmt.Errorf("%w: no registry to mirror", ErrInvalidHostsConfig)
	}
	files := make(map[string]string, len(registries)) // host directory → server URL
	order := make([]string, 0, len(registries))
	for _, raw := range registries {
		server, err := parseUpstream(raw)
		if err != nil {
			return fmt.Errorf("%w: registry: %w", ErrInvalidHostsConfig, err)
		}
		host := server.Host
		if server.String() == dockerHubURL {
			host = dockerHubDir
		}
		if prev, ok := files[host]; ok {
			if prev != server.String() {
				return fmt.Errorf("%w: registry %s is given as both %s and %s", ErrInvalidHostsConfig, host, prev, server)
			}
			continue
		}
		files[host] = server.String()
		order = append(order, host)
	}
	for _, host := range order {
		if err := writeHostFile(filepath.Join(dir, host), hostsTOML(files[host], mirror)); err != nil {
			return err
		}
	}
	return nil
}

// parseAgentURL checks the mirror's URL and returns it as scheme://host.
func parseAgentURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: agent URL: %w", ErrInvalidHostsConfig, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%w: agent URL %q: the scheme (http:// or https://) must be written out", ErrInvalidHostsConfig, raw)
	}
	if u.Host == "" || !anchoredDomain.MatchString(u.Host) {
		return "", fmt.Errorf("%w: agent URL %q: invalid host", ErrInvalidHostsConfig, raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: agent URL %q: only scheme://host[:port] is allowed", ErrInvalidHostsConfig, raw)
	}
	return u.Scheme + "://" + strings.ToLower(u.Host), nil
}

// hostsTOML renders one hosts.toml. Both values were validated as
// scheme://host[:port] with a host from the reference grammar, so Go
// quoting is valid TOML quoting for them.
func hostsTOML(server, mirror string) string {
	return "# Written by Eagle: pull through the Eagle node, fall back to the registry.\n" +
		"server = " + strconv.Quote(server) + "\n\n" +
		"[host." + strconv.Quote(mirror) + "]\n" +
		"  capabilities = [\"pull\", \"resolve\"]\n"
}

// writeHostFile atomically writes body as hostDir/hosts.toml.
func writeHostFile(hostDir, body string) error {
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return fmt.Errorf("proxy: hosts.toml: %w", err)
	}
	f, err := os.CreateTemp(hostDir, ".hosts.toml-*")
	if err != nil {
		return fmt.Errorf("proxy: hosts.toml: %w", err)
	}
	_, err = f.WriteString(body)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(hostDir, "hosts.toml"))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("proxy: hosts.toml in %s: %w", hostDir, err)
	}
	return nil
}
