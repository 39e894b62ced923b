package tracker

import "time"

// Exported to the external tests, which check the memory bounds the
// MemoryStore documents.
const (
	MemSwarmBytes = memSwarmBytes
	MemPeerBytes  = memPeerBytes
)

// SetClock makes p read the time from now, so that tests can age loads.
// Call it before p is used.
func SetClock(p *TopologyPolicy, now func() time.Time) { p.now = now }
