// Package e2e holds the end-to-end tests that pull images through an Eagle
// cluster with the real container runtimes: dockerd (directly and as a
// Docker Hub registry mirror), containerd with ctr and a hosts.toml
// directory, and skopeo with a registries.conf mirror.
//
// Each test starts its own private daemons (state, sockets and config in a
// temporary directory) and skips, naming the program, when that program is
// not installed. .ci/run installs them, so in CI every test runs.
package e2e
