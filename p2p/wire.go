package p2p

// A streaming splitter for the BitTorrent peer wire protocol (BEP 3): the
// 68-byte handshake, then length-prefixed messages. The super-seeding
// connection wrapper (superseed.go) uses it to watch what a peer has and to
// rewrite what the seeder says it has, without buffering piece data.

const (
	wireProtocol   = "\x13BitTorrent protocol"
	handshakeLen   = 68
	msgHave        = 4
	msgBitfield    = 5
	msgHaveAll     = 0x0e
	msgHaveNone    = 0x0f
	maxWireMessage = 1 << 20 // chunks are 16 KiB (wireChunkSize); nothing legal comes close
	maxKeptMessage = 1 << 16 // a bitfield of 512k pieces
)

// wireScanner splits a peer-wire byte stream into messages as it arrives in
// arbitrary pieces. Bytes of messages it does not keep go to raw at once,
// in order; a kept message is withheld whole and handed to msg. A stream
// that does not start with the plain BitTorrent handshake (an encrypted
// one, say) is passed to raw untouched from then on.
type wireScanner struct {
	// keep says which message IDs to withhold and hand to msg.
	keep func(id byte) bool
	// handshake is called once with the 68 handshake bytes.
	handshake func(hs []byte)

	opaque bool
	hs     []byte // handshake bytes so far
	hsDone bool
	hdr    [5]byte // length prefix and message ID
	hdrN   int
	left   int // payload bytes of the current message still to come
	kept   bool
	body   []byte
}

// atBoundary reports whether the bytes scanned so far end at a message
// boundary after the handshake, where a whole message may be inserted.
func (s *wireScanner) atBoundary() bool {
	return s.hsDone && !s.opaque && s.hdrN == 0 && s.left == 0 && !s.kept
}

// scan consumes p.
func (s *wireScanner) scan(p []byte, raw func([]byte), msg func(id byte, payload []byte)) {
	for len(p) > 0 {
		switch {
		case s.opaque:
			raw(p)
			return
		case !s.hsDone:
			n := min(len(p), handshakeLen-len(s.hs))
			s.hs = append(s.hs, p[:n]...)
			raw(p[:n])
			p = p[n:]
			m := min(len(s.hs), len(wireProtocol))
			if string(s.hs[:m]) != wireProtocol[:m] {
				s.opaque = true
				continue
			}
			if len(s.hs) == handshakeLen {
				s.hsDone = true
				if s.handshake != nil {
					s.handshake(s.hs)
				}
			}
		case s.left > 0:
			n := min(len(p), s.left)
			if s.kept {
				s.body = append(s.body, p[:n]...)
			} else {
				raw(p[:n])
			}
			p, s.left = p[n:], s.left-n
			if s.left == 0 && s.kept {
				s.deliver(msg)
			}
		default:
			need := 4
			if s.hdrN >= 4 {
				need = 5
			}
			n := min(len(p), need-s.hdrN)
			copy(s.hdr[s.hdrN:], p[:n])
			s.hdrN += n
			p = p[n:]
			if s.hdrN < need {
				continue
			}
			length := int(uint32(s.hdr[0])<<24 | uint32(s.hdr[1])<<16 | uint32(s.hdr[2])<<8 | uint32(s.hdr[3]))
			switch {
			case length == 0: // keep-alive
				raw(s.hdr[:4])
				s.hdrN = 0
				continue
			case length > maxWireMessage:
				// Not a stream we understand: pass it on and stop looking.
				raw(s.hdr[:s.hdrN])
				s.hdrN = 0
				s.opaque = true
				continue
			case s.hdrN < 5:
				continue
			}
			s.hdrN = 0
			s.left = length - 1
			s.kept = s.keep != nil && s.keep(s.hdr[4]) && s.left <= maxKeptMessage
			if !s.kept {
				raw(s.hdr[:5])
			} else if s.left == 0 {
				s.deliver(msg)
			}
		}
	}
}

func (s *wireScanner) deliver(msg func(id byte, payload []byte)) {
	s.kept = false
	msg(s.hdr[4], s.body)
	s.body = s.body[:0]
}

// wireMessage encodes one peer-wire message.
func wireMessage(id byte, payload []byte) []byte {
	n := 1 + len(payload)
	b := make([]byte, 0, 4+n)
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), id)
	return append(b, payload...)
}

// haveMessage encodes a Have for piece i.
func haveMessage(i int) []byte {
	return wireMessage(msgHave, []byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
}
