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
package eagle
