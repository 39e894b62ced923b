package p2p

import (
	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// nudgeExtension is an extended-protocol (BEP 10) message every Eagle node
// advertises and ignores on receipt. Sending it only wakes the sender's
// own connection writer.
//
// That writer is where anacrolix (v1.61.0) decides what to request, and it
// can miss its wake-up: it checks for a pending request update, then waits
// on a condition that is armed only afterwards, so a wake-up that falls
// between the two is lost (peer-conn-msg-writer.go, run). Later reasons to
// update are dropped while one is pending (onNeedUpdateRequests), and only
// a message written to the connection, or its keep-alive timer, wakes the
// writer again. Seen with super-seeding: a seeder's offers of all the
// pieces arrived, a few tens of microseconds after the agent reported the
// last piece it had been offered, exactly in that window; the agent then
// sent no request for the rest of the blob, on a connection it kept, and
// its reader got a 503 at first_byte_timeout. A download that makes no
// progress nudges its connections (see Engine.waitPiece), which runs the
// lost update.
const nudgeExtension pp.ExtensionName = "eagle_nudge"

// advertiseNudge adds nudgeExtension to the protocols a new connection
// advertises in its extended handshake (anacrolix ignores user protocols'
// messages it has no callback for).
func advertiseNudge(pc *torrent.PeerConn) {
	pc.LocalLtepProtocolMap.AddUserProtocol(nudgeExtension)
}

// nudge wakes the writers of t's connections to peers that advertise
// nudgeExtension (every Eagle node does), and returns how many it woke.
func nudge(t *torrent.Torrent) int {
	n := 0
	for _, pc := range t.PeerConns() {
		if pc.WriteExtendedMessage(nudgeExtension, nil) == nil {
			n++
		}
	}
	return n
}
