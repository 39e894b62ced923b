package tracker

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxScrapeHashes caps the info hashes one scrape may ask about, so that a
// single request cannot make the server walk the whole store.
const maxScrapeHashes = 128

// event is the BEP 3 announce event.
type event uint8

const (
	eventNone event = iota
	eventStarted
	eventCompleted
	eventStopped
)

// announceRequest is a parsed announce query.
type announceRequest struct {
	infoHash   InfoHash
	peerID     PeerID
	port       uint16
	uploaded   int64
	downloaded int64
	left       int64
	event      event
	numWant    int        // -1 when the client sent none
	ip         netip.Addr // the "ip" parameter; zero unless trusted and sent
	location   string     // the "location" parameter; "" when not sent
}

// fieldError is a malformed query parameter. Its message is sent to the
// client as the BEP 3 "failure reason", so it names the parameter.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func badField(field, msg string) error { return &fieldError{field: field, msg: msg} }

// Bits recording which announce parameters have been seen.
const (
	seenInfoHash = 1 << iota
	seenPeerID
	seenPort
	seenUploaded
	seenDownloaded
	seenLeft
	seenEvent
	seenNumWant
	seenCompact
	seenIP
	seenLocation
)

// parseAnnounce parses the raw (still escaped) query string of an announce.
// It does not allocate on input without escapes in names or numbers. The
// "ip" parameter is read only when trustIP is set; otherwise it is ignored,
// even if malformed. Unknown parameters (key, supportcrypto, trackerid, ...)
// are ignored. A parameter we use that appears twice is an error, except
// "ip", where the first counts (anacrolix clients send one per address
// family).
func parseAnnounce(rawQuery string, trustIP bool) (announceRequest, error) {
	req := announceRequest{numWant: -1}
	var seen uint
	var scratch [64]byte
	for rest := rawQuery; rest != ""; {
		var kv string
		kv, rest, _ = strings.Cut(rest, "&")
		if kv == "" {
			continue
		}
		rawKey, rawVal, _ := strings.Cut(kv, "=")
		key, err := unescapeSmall(&scratch, rawKey)
		if errors.Is(err, errTooLong) {
			continue // not a parameter we use
		} else if err != nil {
			return req, badField("query", "malformed parameter name: "+err.Error())
		}
		var bit uint
		switch key {
		case "info_hash":
			bit = seenInfoHash
			err = unescape20((*[20]byte)(&req.infoHash), "info_hash", rawVal)
		case "peer_id":
			bit = seenPeerID
			err = unescape20((*[20]byte)(&req.peerID), "peer_id", rawVal)
		case "port":
			bit = seenPort
			var v uint64
			v, err = parseUint(&scratch, "port", rawVal, 16)
			if err == nil && v == 0 {
				err = badField("port", "must be 1-65535, got 0")
			}
			req.port = uint16(v)
		case "uploaded":
			bit = seenUploaded
			req.uploaded, err = parseInt63(&scratch, "uploaded", rawVal)
		case "downloaded":
			bit = seenDownloaded
			req.downloaded, err = parseInt63(&scratch, "downloaded", rawVal)
		case "left":
			bit = seenLeft
			req.left, err = parseInt63(&scratch, "left", rawVal)
		case "event":
			bit = seenEvent
			req.event, err = parseEvent(&scratch, rawVal)
		case "numwant":
			bit = seenNumWant
			req.numWant, err = parseNumWant(&scratch, rawVal)
		case "compact":
			bit = seenCompact
			err = parseCompact(&scratch, rawVal)
		case "ip":
			if !trustIP || seen&seenIP != 0 {
				continue
			}
			bit = seenIP
			req.ip, err = parseIP(&scratch, rawVal)
		case "location":
			bit = seenLocation
			req.location, err = parseLocation(rawVal)
		default:
			continue
		}
		if err != nil {
			return req, err
		}
		if seen&bit != 0 {
			return req, badField(key, "given more than once")
		}
		seen |= bit
	}
	switch {
	case seen&seenInfoHash == 0:
		return req, badField("info_hash", "missing")
	case seen&seenPeerID == 0:
		return req, badField("peer_id", "missing")
	case seen&seenPort == 0:
		return req, badField("port", "missing")
	case seen&seenLeft == 0:
		return req, badField("left", "missing")
	}
	return req, nil
}

// parseScrape parses the raw query string of a scrape: one or more
// info_hash parameters, duplicates allowed; everything else is ignored.
func parseScrape(rawQuery string) ([]InfoHash, error) {
	var hashes []InfoHash
	var scratch [64]byte
	for rest := rawQuery; rest != ""; {
		var kv string
		kv, rest, _ = strings.Cut(rest, "&")
		rawKey, rawVal, _ := strings.Cut(kv, "=")
		key, err := unescapeSmall(&scratch, rawKey)
		if errors.Is(err, errTooLong) {
			continue
		} else if err != nil {
			return nil, badField("query", "malformed parameter name: "+err.Error())
		}
		if key != "info_hash" {
			continue
		}
		if len(hashes) == maxScrapeHashes {
			return nil, badField("info_hash", fmt.Sprintf("at most %d per scrape", maxScrapeHashes))
		}
		var ih InfoHash
		if err := unescape20((*[20]byte)(&ih), "info_hash", rawVal); err != nil {
			return nil, err
		}
		hashes = append(hashes, ih)
	}
	if len(hashes) == 0 {
		return nil, badField("info_hash", "missing (full scrapes are not served)")
	}
	return hashes, nil
}

var (
	errBadEscape = errors.New("malformed % escape")
	errTooLong   = errors.New("too long")
)

// unescapeTo decodes the query-escaped s ("+" is a space, "%XX" a byte) into
// dst, and returns the decoded length, which may exceed len(dst): bytes past
// the end of dst are counted but not written.
func unescapeTo(dst []byte, s string) (int, error) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '%':
			if i+2 >= len(s) {
				return n, errBadEscape
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return n, errBadEscape
			}
			c = hi<<4 | lo
			i += 2
		case '+':
			c = ' '
		}
		if n < len(dst) {
			dst[n] = c
		}
		n++
	}
	return n, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescapeSmall decodes a short escaped string, returning s itself (no
// allocation) when it holds no escapes. A result longer than scratch is an
// error.
func unescapeSmall(scratch *[64]byte, s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	n, err := unescapeTo(scratch[:], s)
	if err != nil {
		return "", err
	}
	if n > len(scratch) {
		return "", errTooLong
	}
	return string(scratch[:n]), nil
}

// unescape20 decodes an escaped 20-byte binary value such as info_hash.
func unescape20(dst *[20]byte, field, s string) error {
	n, err := unescapeTo(dst[:], s)
	if err != nil {
		return badField(field, err.Error())
	}
	if n != len(dst) {
		return badField(field, fmt.Sprintf("must be 20 bytes, got %d", n))
	}
	return nil
}

// parseUint parses a decimal unsigned integer of at most bits bits.
func parseUint(scratch *[64]byte, field, raw string, bits int) (uint64, error) {
	s, err := unescapeSmall(scratch, raw)
	if err == nil {
		var v uint64
		if v, err = strconv.ParseUint(s, 10, bits); err == nil {
			return v, nil
		}
	}
	if bits == 16 {
		return 0, badField(field, "must be an integer 1-65535")
	}
	return 0, badField(field, "must be a non-negative integer")
}

// parseInt63 parses a non-negative int64.
func parseInt63(scratch *[64]byte, field, raw string) (int64, error) {
	v, err := parseUint(scratch, field, raw, 63)
	return int64(v), err
}

// parseNumWant parses numwant; values too large to represent are simply
// "many" and get capped later.
func parseNumWant(scratch *[64]byte, raw string) (int, error) {
	s, err := unescapeSmall(scratch, raw)
	if err == nil {
		var v uint64
		v, err = strconv.ParseUint(s, 10, 31)
		if err == nil || errors.Is(err, strconv.ErrRange) {
			return int(v), nil
		}
	}
	return 0, badField("numwant", "must be a non-negative integer")
}

func parseEvent(scratch *[64]byte, raw string) (event, error) {
	s, err := unescapeSmall(scratch, raw)
	if err != nil {
		return 0, badField("event", err.Error())
	}
	switch s {
	case "":
		return eventNone, nil
	case "started":
		return eventStarted, nil
	case "completed":
		return eventCompleted, nil
	case "stopped":
		return eventStopped, nil
	}
	return 0, badField("event", fmt.Sprintf("must be started, completed, stopped or empty, got %q", s))
}

// parseCompact accepts compact=1 and compact=0. The server answers compact
// either way, as BEP 23 allows; anything else is malformed.
func parseCompact(scratch *[64]byte, raw string) error {
	s, err := unescapeSmall(scratch, raw)
	if err != nil || (s != "0" && s != "1") {
		return badField("compact", "must be 0 or 1")
	}
	return nil
}

// parseLocation parses the "location" parameter (see ValidLocation). The
// label is copied out of the query, so that a stored peer does not keep
// the whole request's query string alive.
func parseLocation(raw string) (string, error) {
	var buf [MaxLocationLen]byte
	n, err := unescapeTo(buf[:], raw)
	if err != nil {
		return "", badField("location", err.Error())
	}
	if n > len(buf) {
		return "", badField("location", fmt.Sprintf("%d bytes, at most %d allowed", n, MaxLocationLen))
	}
	loc := string(buf[:n])
	if msg := locationProblem(loc); msg != "" {
		return "", badField("location", fmt.Sprintf("%q: %s", loc, msg))
	}
	return loc, nil
}

// parseIP parses the "ip" parameter: a unicast IP literal only, since
// resolving a name sent by a client would let it make the tracker do DNS
// lookups.
func parseIP(scratch *[64]byte, raw string) (netip.Addr, error) {
	s, err := unescapeSmall(scratch, raw)
	if err != nil {
		return netip.Addr{}, badField("ip", err.Error())
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, badField("ip", fmt.Sprintf("must be an IPv4 or IPv6 address, got %q", s))
	}
	if a = a.Unmap(); a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, badField("ip", fmt.Sprintf("must be a unicast address, got %s", a))
	}
	return a, nil
}
