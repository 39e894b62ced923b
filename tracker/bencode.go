package tracker

import (
	"strconv"
)

// The responses are bencoded by hand: they have a fixed shape, and the
// reflection-based encoders cost more than the rest of an announce.
// Dictionary keys are written in sorted order, as bencode requires.

// appendInt appends the bencoded integer v.
func appendInt(b []byte, v int64) []byte {
	b = append(b, 'i')
	b = strconv.AppendInt(b, v, 10)
	return append(b, 'e')
}

// appendString appends the bencoded byte string s.
func appendString(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// appendFailure appends a BEP 3 failure response.
func appendFailure(b []byte, reason string) []byte {
	b = append(b, "d14:failure reason"...)
	b = appendString(b, reason)
	return append(b, 'e')
}

// appendAnnounce appends a successful announce response with peers in the
// BEP 23 compact form: IPv4 peers in "peers" (6 bytes each), IPv6 peers in
// "peers6" (18 bytes each, BEP 7). Both keys are always present. The
// upstream peers (see UpstreamMarker), a subset of peers, follow in the
// same form under "upstream" and "upstream6" when there are any. With a
// share of -1 or more, "border" says it (see BorderJudge): share+1, and
// "borders" shares when the requester is a border peer.
func appendAnnounce(b []byte, c SwarmCounts, interval, minInterval int64, peers, upstream []Peer, share, shares int) []byte {
	n4, n6 := countFamilies(peers)
	b = append(b, 'd')
	if share >= -1 {
		b = append(b, "6:border"...)
		b = appendInt(b, int64(share+1))
		if share >= 0 {
			b = append(b, "7:borders"...)
			b = appendInt(b, int64(shares))
		}
	}
	b = append(b, "8:complete"...)
	b = appendInt(b, int64(c.Complete))
	b = append(b, "10:incomplete"...)
	b = appendInt(b, int64(c.Incomplete))
	b = append(b, "8:interval"...)
	b = appendInt(b, interval)
	b = append(b, "12:min interval"...)
	b = appendInt(b, minInterval)
	b = append(b, "5:peers"...)
	b = appendPeers(b, peers, n4, true)
	b = append(b, "6:peers6"...)
	b = appendPeers(b, peers, n6, false)
	if len(upstream) > 0 {
		u4, u6 := countFamilies(upstream)
		b = append(b, "8:upstream"...)
		b = appendPeers(b, upstream, u4, true)
		b = append(b, "9:upstream6"...)
		b = appendPeers(b, upstream, u6, false)
	}
	return append(b, 'e')
}

// countFamilies counts the IPv4 and IPv6 peers.
func countFamilies(peers []Peer) (n4, n6 int) {
	for _, p := range peers {
		if p.Addr.Addr().Is4() {
			n4++
		} else {
			n6++
		}
	}
	return n4, n6
}

// appendPeers appends the n peers of one address family as a compact string.
func appendPeers(b []byte, peers []Peer, n int, v4 bool) []byte {
	size := 18
	if v4 {
		size = 6
	}
	b = strconv.AppendInt(b, int64(n*size), 10)
	b = append(b, ':')
	for _, p := range peers {
		a := p.Addr.Addr()
		if a.Is4() != v4 {
			continue
		}
		if v4 {
			ip := a.As4()
			b = append(b, ip[:]...)
		} else {
			ip := a.As16()
			b = append(b, ip[:]...)
		}
		b = append(b, byte(p.Addr.Port()>>8), byte(p.Addr.Port()))
	}
	return b
}

// appendScrape appends a BEP 48 scrape response. hashes must be sorted and
// free of duplicates, counts[i] belonging to hashes[i].
func appendScrape(b []byte, hashes []InfoHash, counts []SwarmCounts) []byte {
	b = append(b, "d5:filesd"...)
	for i, ih := range hashes {
		b = append(b, "20:"...)
		b = append(b, ih[:]...)
		b = append(b, "d8:complete"...)
		b = appendInt(b, int64(counts[i].Complete))
		b = append(b, "10:downloaded"...)
		b = appendInt(b, int64(counts[i].Downloaded))
		b = append(b, "10:incomplete"...)
		b = appendInt(b, int64(counts[i].Incomplete))
		b = append(b, 'e')
	}
	return append(b, "ee"...)
}
