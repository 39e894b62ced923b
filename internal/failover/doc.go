// Package failover holds the tests that fail parts of a running Eagle
// cluster across hosts: every part (Redis, trackers, seeders, agents) is
// the real "eagle" binary or redis-server in a network namespace of its
// own, on capped links, and the tests kill, restart and cut them while the
// agents pull, then check that every surviving pull completes with
// verified digests, in about the time it takes without the fault, and
// costs the origin one copy of each blob. The package has no code of its
// own; its tests run as root (CI runs them).
package failover
