// Package directio writes the block-aligned part of a buffer to a file past
// the page cache (O_DIRECT), where the system allows it.
//
// A node that downloads a blob keeps the verified pieces it just received
// in memory for the readers right behind the download (see p2p), so going
// through the page cache would only copy each byte once more into pages the
// kernel must first find; on a virtual machine whose host takes freed guest
// memory back, finding them costs more than the rest of the download.
package directio
