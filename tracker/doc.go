// Package tracker is Eagle's BitTorrent HTTP tracker: it records which peers
// hold which blob and hands each announcing peer an ordered list of other
// peers to connect to.
//
// The Server speaks BEP 3 announce with BEP 23 compact peer lists (IPv4 in
// "peers", IPv6 in "peers6" per BEP 7) and BEP 48 scrape. It is an
// http.Handler serving "/announce" and "/scrape"; mount it under a prefix
// with http.StripPrefix. Query parsing and bencoding are written by hand:
// announces arrive every few seconds from every node and the reflection-based
// encoders cost more CPU than the rest of the request.
//
// Peers live in a PeerStore. MemoryStore is the in-process default; the
// interface is small enough to be backed by a shared database so that several
// tracker replicas can serve one cluster. Every PeerStore must pass the
// conformance suite in package tracker/storetest.
//
// Announces come from the network, so a store trusts them only so far. It
// holds at most the swarms and peers its StoreConfig allows, and refuses
// more with ErrFull (the Server answers HTTP 503 "tracker full"), so that
// made-up info hashes and peer IDs cannot exhaust the tracker's memory. And
// a peer entry belongs to the IP address that created it until it expires:
// an announce or stop with the same peer ID from another address gets
// ErrPeerConflict and changes nothing, so that nobody can move or remove
// another node's entry by sending its peer ID.
//
// The order in which peers are handed out is decided by a Policy, a value
// in Config.Policy: RandomPolicy, CompletenessPolicy (the default),
// TopologyPolicy or the embedder's own.
//
// Every peer may have a location (Peer.Location), a label such as
// region/zone/rack that it announces in the "location" parameter, or that
// Config.Locations gives it by its address. TopologyPolicy hands out peers
// by it, so that each location takes a blob across its border about once.
package tracker
