// Package attack holds tests that attack a whole Eagle cluster the way
// someone on the node network would: a stranger in a network namespace of
// its own with no cluster certificate, a registry that lies, peers that
// accept connections and never serve. Every part is the real one.
package attack
