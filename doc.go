// Package eagle distributes container image layers peer-to-peer.
//
// A node that pulls an image gets each layer from the other nodes that
// already hold it instead of from the registry, so a thousand nodes pulling
// one image cost the registry one copy of each layer.
//
// Eagle is a library first. The packages compose as follows:
//
//   - [github.com/eagle-p2p/eagle/proxy]: the registry v2 http.Handler a
//     container runtime talks to; blob reads go to the p2p engine,
//     everything else passes through to the origin registry.
//   - [github.com/eagle-p2p/eagle/p2p]: the peer, on anacrolix/torrent:
//     fetches, verifies, streams, caches and seeds blobs.
//   - [github.com/eagle-p2p/eagle/storage]: the storage interface (SSI)
//     and its backends.
//   - [github.com/eagle-p2p/eagle/seeder]: fetches each blob from origin
//     once, builds its metainfo and seeds it; serves metainfo over gRPC.
//   - [github.com/eagle-p2p/eagle/tracker]: the BitTorrent tracker that
//     tells peers about each other.
//
// This package is the small facade for users who want "just run a node":
// [NewNode] composes a proxy and a p2p engine from one [Config].
//
// The other parts are one call each too: [github.com/eagle-p2p/eagle/seeder.New]
// builds a whole seeder (its store, its peer, its metainfo service), which
// serves agents over gRPC (Serve, or Register on a gRPC server of the
// program's own), and [github.com/eagle-p2p/eagle/tracker.New] returns the
// tracker as an http.Handler. A program that embeds a seeder and a node
// hands the seeder to the node as [Config.MetaInfo]: the node asks it
// directly, with no gRPC in between, and every call is still authorized at
// the origin with the caller's credentials. [Config.Store] takes any
// storage backend for the node's cache. The package example runs all of it
// in one process.
package eagle
