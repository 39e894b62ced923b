package tracker

// Exported to the external tests, which check the memory bounds the
// MemoryStore documents.
const (
	MemSwarmBytes = memSwarmBytes
	MemPeerBytes  = memPeerBytes
)
