package p2p

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/opencontainers/go-digest"
)

// fuzzDigest is the digest every FuzzParseMetaInfo input is parsed for:
// the seeds name it, so that mutations get past the name check.
var fuzzDigest = digest.FromString("eagle fuzz blob")

// fuzzMetaInfo builds the metainfo a seeder builds for size bytes of
// random content, named after fuzzDigest.
func fuzzMetaInfo(tb testing.TB, size int64, seed uint64) []byte {
	tb.Helper()
	content := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = rng.Read(content)
	ih := NewInfoHasher(fuzzDigest, size)
	// In uneven writes, as bytes arrive from an origin.
	for rest := content; len(rest) > 0; {
		n := min(len(rest), 1+int(seed%7)*4093)
		if _, err := ih.Write(rest[:n]); err != nil {
			tb.Fatal(err)
		}
		rest = rest[n:]
	}
	b, err := ih.MetaInfo()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// encodeInfo bencodes metainfo around info, whatever its shape.
func encodeInfo(tb testing.TB, info any) []byte {
	tb.Helper()
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := bencode.Marshal(metainfo.MetaInfo{InfoBytes: infoBytes, CreatedBy: "eagle"})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// nested is n lists inside one another, inside prefix, then closed.
func nested(prefix string, n int) []byte {
	b := []byte(prefix)
	b = append(b, bytes.Repeat([]byte("l"), n)...)
	b = append(b, bytes.Repeat([]byte("e"), n)...)
	return append(b, 'e')
}

func FuzzParseMetaInfo(f *testing.F) {
	pl := int64(MinPieceLength)
	for i, size := range []int64{1, 1000, pl - 1, pl, pl + 1, 3*pl + 17, 1<<20 + 3} {
		valid := fuzzMetaInfo(f, size, uint64(i))
		f.Add(valid)
		for _, cut := range []int{1, len(valid) / 3, len(valid) / 2, len(valid) - 2, len(valid) - 1} {
			f.Add(valid[:cut])
		}
		flipped := bytes.Clone(valid)
		flipped[len(flipped)/2] ^= 0x40
		f.Add(flipped)
		f.Add(append(bytes.Clone(valid), 'e'))
	}
	name := fuzzDigest.Encoded()
	hashes := func(n int) []byte { return bytes.Repeat([]byte{0xab}, 20*n) }
	for _, info := range []any{
		metainfo.Info{Name: name, Length: 3 * pl, PieceLength: pl, Pieces: hashes(3)},
		metainfo.Info{Name: name, Length: 3 * pl, PieceLength: pl, Pieces: hashes(2)},
		metainfo.Info{Name: name, Length: 3*pl + 1, PieceLength: pl, Pieces: hashes(3)},
		metainfo.Info{Name: name, Length: 0, PieceLength: pl},
		metainfo.Info{Name: name, Length: -1, PieceLength: pl, Pieces: hashes(1)},
		metainfo.Info{Name: name, Length: 100, PieceLength: 0},
		metainfo.Info{Name: name, Length: 100, PieceLength: -pl, Pieces: hashes(1)},
		metainfo.Info{Name: name, Length: 100, PieceLength: 3 << 16, Pieces: hashes(1)},
		metainfo.Info{Name: name, Length: 100, PieceLength: 2 * MaxPieceLength, Pieces: hashes(1)},
		metainfo.Info{Name: name, Length: 1<<63 - 1, PieceLength: MaxPieceLength, Pieces: hashes(1)},
		metainfo.Info{Name: "../" + name, Length: 100, PieceLength: pl, Pieces: hashes(1)},
		metainfo.Info{Name: name, PieceLength: pl, Pieces: hashes(1), Files: []metainfo.FileInfo{{Length: 100, Path: []string{"a"}}}},
		metainfo.Info{Name: name, Length: 100, PieceLength: pl, Pieces: hashes(1), MetaVersion: 2},
		map[string]any{"name": name, "length": 100, "piece length": pl, "pieces": "short"},
		map[string]any{"name": name, "length": "100", "piece length": pl, "pieces": string(hashes(1))},
		map[string]any{"name": []any{name}, "length": 100, "piece length": pl, "pieces": string(hashes(1))},
		[]any{name, 100},
		"not a dict",
		int64(7),
	} {
		f.Add(encodeInfo(f, info))
	}
	for _, s := range []string{
		"", "d", "e", "de", "le", "i0e", "0:", "d4:infoe", "d4:infodee", "d4:infoi1ee", "d4:info0:e",
		"d4:infod6:lengthi-1eee", "d4:infod6:lengthi01eee", "d4:infod6:lengthi-0eee", "d4:infod6:lengthi1e6:lengthi2eee",
		"d4:infod6:lengthi9223372036854775808eee", "d4:infod6:pieces99999999999999999999:ee",
		"d4:infod6:pieces134217727:ee", "d4:infod6:pieces134217728:ee",
		"d1:bi0e1:ai0ee", "d4:info", "d4:infod4:name", "d4:infod4:namei1eee", "dd1:ai0ee4:infodee",
		"d4:infod12:piece lengthi65536e6:pieces20:aaaaaaaaaaaaaaaaaaaa6:lengthi1e4:name64:" + name + "ee",
	} {
		f.Add([]byte(s))
	}
	// Nesting: what a well-formed metainfo never has, and what once
	// overflowed the decoder's stack (see TestBencodeDeepNesting).
	f.Add(nested("d4:info", 64))
	f.Add(nested("d4:infod5:filesl", 40))
	f.Add(nested("d7:comment", 200))

	f.Fuzz(func(t *testing.T, data []byte) {
		mi, info, err := ParseMetaInfo(fuzzDigest, data)
		if err != nil {
			if !errors.Is(err, ErrBadMetaInfo) {
				t.Fatalf("error %v is not ErrBadMetaInfo", err)
			}
			return
		}
		checkParsedInfo(t, mi, info)
	})
}

// checkParsedInfo checks metainfo ParseMetaInfo accepted: one file named
// after the digest, a piece length in bounds, and a hash for every piece.
func checkParsedInfo(t *testing.T, mi *metainfo.MetaInfo, info metainfo.Info) {
	t.Helper()
	switch {
	case info.Name != fuzzDigest.Encoded():
		t.Fatalf("accepted name %q", info.Name)
	case info.Length <= 0:
		t.Fatalf("accepted length %d", info.Length)
	case info.PieceLength < PieceLength(info.Length) || info.PieceLength > MaxPieceLength || info.PieceLength&(info.PieceLength-1) != 0:
		t.Fatalf("accepted piece length %d for length %d", info.PieceLength, info.Length)
	case len(info.Files) != 0 || info.HasV2() || info.IsDir():
		t.Fatalf("accepted a multi-file or v2 info: %+v", info)
	}
	pieces := (info.Length + info.PieceLength - 1) / info.PieceLength
	if int64(len(info.Pieces)) != 20*pieces || int64(info.NumPieces()) != pieces {
		t.Fatalf("length %d, piece length %d: %d bytes of hashes (%d pieces), want %d pieces", info.Length, info.PieceLength, len(info.Pieces), info.NumPieces(), pieces)
	}
	var sum int64
	for i := range info.NumPieces() {
		n := info.Piece(i).Length()
		if n <= 0 || n > info.PieceLength || i < info.NumPieces()-1 && n != info.PieceLength {
			t.Fatalf("piece %d of %d is %d bytes (piece length %d)", i, info.NumPieces(), n, info.PieceLength)
		}
		sum += n
	}
	if sum != info.Length || info.TotalLength() != info.Length {
		t.Fatalf("pieces add up to %d, files to %d, want %d", sum, info.TotalLength(), info.Length)
	}
	if mi.HashInfoBytes() != metainfo.Hash(sha1.Sum(mi.InfoBytes)) {
		t.Fatal("infohash is not the SHA-1 of the info bytes")
	}
}

// The metainfo a seeder builds parses, for sizes around piece boundaries.
func TestParseMetaInfoOwnMetaInfo(t *testing.T) {
	pl := int64(MinPieceLength)
	for i, size := range []int64{1, pl - 1, pl, pl + 1, 1024*pl + 1} {
		mi, info, err := ParseMetaInfo(fuzzDigest, fuzzMetaInfo(t, size, uint64(i)))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if info.Length != size {
			t.Fatalf("size %d: parsed length %d", size, info.Length)
		}
		checkParsedInfo(t, mi, info)
	}
}

// Deeply nested bencode is refused before anacrolix's decoder, which
// recurses once per level, sees it. Regression: 4 MiB of "l" (what fits
// in a seeder's gRPC answer) after "d4:info" overflowed the goroutine
// stack — a fatal error, not a panic, that took the whole process down.
func TestBencodeDeepNesting(t *testing.T) {
	deep := append([]byte("d4:info"), bytes.Repeat([]byte("l"), 4<<20)...)
	if _, _, err := ParseMetaInfo(fuzzDigest, deep); !errors.Is(err, ErrBadMetaInfo) {
		t.Fatalf("ParseMetaInfo of 4 MiB of nesting: %v, want ErrBadMetaInfo", err)
	}
	if _, err := parseAnnounceResponse(append([]byte("d5:peers"), bytes.Repeat([]byte("l"), maxTrackerResponse)...)); err == nil {
		t.Fatal("parseAnnounceResponse of 1 MiB of nesting: nil error")
	}
	// Nesting that is deep but legal, and "l" and "d" inside strings and
	// integers, do not count.
	for _, ok := range [][]byte{
		nested("d7:comment", maxBencodeDepth-1),
		[]byte("d7:comment" + "1000:" + string(bytes.Repeat([]byte("l"), 1000)) + "e"),
	} {
		if err := checkBencodeDepth(ok); err != nil {
			t.Errorf("checkBencodeDepth(%.40q...): %v", ok, err)
		}
	}
	if err := checkBencodeDepth(nested("d7:comment", maxBencodeDepth)); err == nil {
		t.Errorf("checkBencodeDepth of %d levels: nil error", maxBencodeDepth+1)
	}
}

// A string's claimed length is not allocated before the bytes are there.
// Regression: 20 bytes of a tracker's answer made the decoder allocate
// 128 MiB.
func TestBencodeStringLongerThanInput(t *testing.T) {
	for _, s := range []string{"d5:peers134217727:e", "d14:failure reason134217727:e", "d8:announce134217727:e"} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var err error
		if strings.HasPrefix(s, "d8:announce") {
			_, _, err = ParseMetaInfo(fuzzDigest, []byte(s))
		} else {
			_, err = parseAnnounceResponse([]byte(s))
		}
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%q parsed", s)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
			t.Errorf("parsing %q allocated %d MiB", s, n>>20)
		}
	}
}

// compactPeers encodes peers the way a tracker does (BEP 23, BEP 7).
func compactPeers(peers ...string) (v4, v6 []byte) {
	for _, s := range peers {
		ap := netip.MustParseAddrPort(s)
		b := ap.Addr().AsSlice()
		b = binary.BigEndian.AppendUint16(b, ap.Port())
		if ap.Addr().Is4() {
			v4 = append(v4, b...)
		} else {
			v6 = append(v6, b...)
		}
	}
	return v4, v6
}

func FuzzAnnounceResponse(f *testing.F) {
	v4, v6 := compactPeers("127.0.0.1:6881", "10.1.2.3:51413", "[::1]:6881", "[fd00::1]:443")
	for _, tr := range []trackerResponse{
		{Interval: 30, Peers: v4, Peers6: v6},
		{Interval: 10, MinInterval: 5, Peers: v4},
		{Interval: 0},
		{Interval: -5, Peers: v4[:6]},
		{Interval: 1 << 62, Peers: v4},
		{Interval: 9223372036854775807},
		{FailureReason: "unregistered torrent"},
		{Interval: 30, Peers: v4[:5]},
		{Interval: 30, Peers6: v6[:17]},
		{Interval: 30, Peers: make([]byte, 6), Peers6: make([]byte, 18)},
	} {
		b, err := bencode.Marshal(tr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "d", "de", "le", "i0e",
		"d8:intervali30e5:peerslee",
		"d8:intervali30e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881eeee",
		"d8:intervali30e5:peersli1ei2ei3ei4ei5ei6eee",
		"d8:intervali30e5:peersi7ee",
		"d8:intervali99999999999999999999ee",
		"d14:failure reasoni1ee",
		"d8:intervali30e5:peers6:\x7f\x00\x00\x01\x1a\xe1e" + "x",
		"d5:peers6:\x7f\x00\x00\x01\x1a\xe18:intervali30ee",
		"d6:borderi2e7:bordersi2e8:intervali30e5:peers0:e",
		"d6:borderi0e8:intervali30e5:peers0:e",
	} {
		f.Add([]byte(s))
	}
	f.Add(nested("d5:peers", 40))
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := parseAnnounceResponse(body)
		if err != nil {
			return
		}
		if res.interval < 0 {
			t.Fatalf("negative interval %v", res.interval)
		}
		var tr trackerResponse
		if err := bencode.Unmarshal(body, &tr); err != nil {
			t.Fatalf("accepted a response bencode refuses: %v", err)
		}
		if tr.Interval >= 0 && tr.Interval <= int64(maxTrackerInterval/time.Second) && res.interval != time.Duration(tr.Interval)*time.Second {
			t.Fatalf("interval %v, the tracker said %d s", res.interval, tr.Interval)
		}
		if len(res.peers) > len(tr.Peers)/6+len(tr.Peers6)/18 {
			t.Fatalf("%d peers from %d+%d bytes of compact peers", len(res.peers), len(tr.Peers), len(tr.Peers6))
		}
		if len(res.upstream) > len(tr.Upstream)/6+len(tr.Upstream6)/18 {
			t.Fatalf("%d upstream peers from %d+%d bytes", len(res.upstream), len(tr.Upstream), len(tr.Upstream6))
		}
		if res.border < -1 || res.border > res.borders || res.borders > maxBorders || res.border > 0 && res.borders < 2 && res.border != 1 {
			t.Fatalf("border %d of %d", res.border, res.borders)
		}
		for _, p := range slices.Concat(res.peers, res.upstream) {
			a := p.Addr()
			if !p.IsValid() || p.Port() == 0 || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("peer %v is no address to dial", p)
			}
		}
	})
}

// The upstream peers a tracker names (tracker.UpstreamMarker) are parsed
// like the peers; a list of the wrong length fails the whole answer.
func TestParseAnnounceResponseUpstream(t *testing.T) {
	v4, v6 := compactPeers("10.0.0.7:6881", "[fd00::9]:6881")
	u4, u6 := compactPeers("10.0.0.7:6881", "0.0.0.0:1")
	b, err := bencode.Marshal(trackerResponse{Interval: 20, Peers: v4, Peers6: v6, Upstream: u4, Upstream6: u6})
	if err != nil {
		t.Fatal(err)
	}
	res, err := parseAnnounceResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.7:6881")}; !slices.Equal(res.upstream, want) || len(res.peers) != 2 {
		t.Errorf("upstream %v, peers %v; want upstream %v of 2 peers", res.upstream, res.peers, want)
	}
	b, _ = bencode.Marshal(trackerResponse{Interval: 20, Peers: v4, Upstream: u4[:5]})
	if _, err := parseAnnounceResponse(b); err == nil {
		t.Error("an upstream list of 5 bytes: nil error")
	}
}

// A tracker's "border" and "borders" (tracker.BorderJudge) are parsed
// into the node's part in its location's imports; values that name no
// share are taken as nothing said.
func TestParseAnnounceResponseBorder(t *testing.T) {
	for _, tc := range []struct {
		body          string
		border, count int
	}{
		{"d8:intervali30e5:peers0:e", -1, 0},
		{"d6:borderi0e8:intervali30e5:peers0:e", 0, 0},
		{"d6:borderi2e7:bordersi2e8:intervali30e5:peers0:e", 2, 2},
		{"d6:borderi1e7:bordersi1e8:intervali30e5:peers0:e", 1, 1},
		{"d6:borderi3e7:bordersi2e8:intervali30e5:peers0:e", -1, 0},   // share 2 of 2
		{"d6:borderi-1e8:intervali30e5:peers0:e", -1, 0},              // negative
		{"d6:borderi1e7:bordersi999e8:intervali30e5:peers0:e", -1, 0}, // too many shares
	} {
		res, err := parseAnnounceResponse([]byte(tc.body))
		if err != nil {
			t.Fatalf("%q: %v", tc.body, err)
		}
		if res.border != tc.border || tc.border > 0 && res.borders != tc.count {
			t.Errorf("%q: border %d of %d, want %d of %d", tc.body, res.border, res.borders, tc.border, tc.count)
		}
	}
}

// The peers of a tracker's answer that no one can dial are dropped; the
// others are kept.
func TestParseAnnounceResponseDropsUndialablePeers(t *testing.T) {
	v4, v6 := compactPeers("0.0.0.0:6881", "127.0.0.1:0", "10.0.0.7:6881", "224.0.0.1:6881", "[::]:6881", "[ff02::1]:6881", "[::ffff:10.0.0.8]:6881", "[fd00::9]:6881")
	b, err := bencode.Marshal(trackerResponse{Interval: 20, Peers: v4, Peers6: v6})
	if err != nil {
		t.Fatal(err)
	}
	res, err := parseAnnounceResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.7:6881"),
		netip.MustParseAddrPort("10.0.0.8:6881"),
		netip.MustParseAddrPort("[fd00::9]:6881"),
	}
	if len(res.peers) != len(want) {
		t.Fatalf("peers %v, want %v", res.peers, want)
	}
	for i := range want {
		if res.peers[i] != want[i] {
			t.Fatalf("peers %v, want %v", res.peers, want)
		}
	}
	if res.interval != 20*time.Second {
		t.Fatalf("interval %v, want 20s", res.interval)
	}
	for said, want := range map[int64]time.Duration{-1: 0, 1 << 62: maxTrackerInterval, 9223372036854775807: maxTrackerInterval} {
		b, err := bencode.Marshal(trackerResponse{Interval: said})
		if err != nil {
			t.Fatal(err)
		}
		if res, err := parseAnnounceResponse(b); err != nil || res.interval != want {
			t.Errorf("interval %d s: %v, %v; want %v", said, res.interval, err, want)
		}
	}
}

// scanResult is what a wireScanner passed on: raw bytes and kept messages
// re-encoded, in the order it handed them out, and the kept messages.
type scanResult struct {
	out  []byte
	msgs [][]byte // id followed by payload
	hs   [][]byte
}

// scanSplit runs a wireScanner with keep over stream cut at cuts, and
// returns what it passed on and what it still holds.
func scanSplit(t *testing.T, stream []byte, cuts []int, keep func(byte) bool) (scanResult, []byte, *wireScanner) {
	t.Helper()
	var res scanResult
	s := &wireScanner{keep: keep, handshake: func(hs []byte) { res.hs = append(res.hs, bytes.Clone(hs)) }}
	raw := func(b []byte) { res.out = append(res.out, b...) }
	msg := func(id byte, payload []byte) {
		if keep == nil || !keep(id) {
			t.Fatalf("message %d handed out, keep refuses it", id)
		}
		if len(payload) > maxKeptMessage {
			t.Fatalf("kept a message of %d bytes", len(payload))
		}
		res.out = append(res.out, wireMessage(id, payload)...)
		res.msgs = append(res.msgs, append([]byte{id}, payload...))
	}
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		if c < prev || c > len(stream) {
			continue
		}
		s.scan(stream[prev:c], raw, msg)
		prev = c
	}
	// What the scanner withholds: a message's length prefix and ID, or
	// the start of a kept message.
	var held []byte
	switch {
	case s.opaque || !s.hsDone:
		if s.hdrN != 0 || s.kept {
			t.Fatalf("scanner holds a message before its handshake or in an opaque stream")
		}
	case s.kept:
		held = append(append(held, s.hdr[:5]...), s.body...)
	default:
		held = append(held, s.hdr[:s.hdrN]...)
	}
	return res, held, s
}

func FuzzWireScanner(f *testing.F) {
	var ih metainfo.Hash
	ih[3] = 9
	haves := uint64(1)<<msgHave | 1<<msgBitfield | 1<<msgHaveAll | 1<<msgHaveNone
	stream := bytes.Join([][]byte{
		testHandshake(ih, true),
		{0, 0, 0, 0},
		wireMessage(msgBitfield, []byte{0xff, 0x80}),
		wireMessage(7, append([]byte{0, 0, 0, 3, 0, 0, 0, 0}, bytes.Repeat([]byte{0xab}, 300)...)),
		haveMessage(3),
		wireMessage(msgHaveAll, nil),
		wireMessage(2, nil),
	}, nil)
	huge := binary.BigEndian.AppendUint32(testHandshake(ih, false), maxWireMessage+1)
	bigKept := append(testHandshake(ih, false), wireMessage(msgBitfield, make([]byte, maxKeptMessage))...)
	tooBigToKeep := append(testHandshake(ih, false), wireMessage(msgBitfield, make([]byte, maxKeptMessage+1))...)
	for _, s := range []struct {
		stream []byte
		cuts   []byte
		keep   uint64
	}{
		{stream, nil, haves},
		{stream, []byte{1, 1, 1, 1, 1, 1, 1}, haves},
		{stream, []byte{67, 1, 3, 1}, ^uint64(0)},
		{stream, []byte{68, 4, 5}, 0},
		{stream[:70], nil, haves},
		{stream[:len(stream)-1], []byte{70}, haves},
		{huge, []byte{69}, ^uint64(0)},
		{append(huge, 1, 2, 3), nil, ^uint64(0)},
		{bigKept, []byte{200}, haves},
		{tooBigToKeep, []byte{70, 3}, haves},
		{[]byte("\x13BitTorrent protocoX"), nil, haves},
		{[]byte("\x13Bit"), nil, haves},
		{append([]byte{0x13, 'X'}, bytes.Repeat([]byte{1}, 50)...), nil, haves},
		{nil, nil, 0},
	} {
		f.Add(s.stream, s.cuts, s.keep)
	}
	f.Fuzz(func(t *testing.T, stream, cutBytes []byte, keepMask uint64) {
		keep := func(id byte) bool { return keepMask>>(id%64)&1 != 0 && id < 64 }
		// cutBytes are the lengths of the pieces the stream arrives in
		// (zero: an empty read).
		var cuts []int
		at := 0
		for _, c := range cutBytes {
			at += int(c)
			cuts = append(cuts, at)
		}
		split, held, s := scanSplit(t, stream, cuts, keep)
		if !bytes.Equal(append(bytes.Clone(split.out), held...), stream) {
			t.Fatalf("passed on %d bytes and holds %d that are not the %d-byte stream", len(split.out), len(held), len(stream))
		}
		if s.atBoundary() && len(held) != 0 {
			t.Fatalf("at a boundary with %d bytes held", len(held))
		}
		// However the stream is cut, the scanner sees the same messages.
		whole, wholeHeld, _ := scanSplit(t, stream, nil, keep)
		if !bytes.Equal(whole.out, split.out) || !bytes.Equal(wholeHeld, held) || len(whole.msgs) != len(split.msgs) {
			t.Fatalf("cut at %v: %d bytes out, %d held, %d messages; whole: %d, %d, %d", cuts, len(split.out), len(held), len(split.msgs), len(whole.out), len(wholeHeld), len(whole.msgs))
		}
		for i := range whole.msgs {
			if !bytes.Equal(whole.msgs[i], split.msgs[i]) {
				t.Fatalf("message %d differs when the stream is cut at %v", i, cuts)
			}
		}
		// The handshake is reported once, when all 68 bytes of a
		// BitTorrent one are in.
		switch {
		case len(stream) >= handshakeLen && bytes.HasPrefix(stream, []byte(wireProtocol)):
			if len(split.hs) != 1 || !bytes.Equal(split.hs[0], stream[:handshakeLen]) {
				t.Fatalf("handshake reported %d times", len(split.hs))
			}
		case len(split.hs) != 0:
			t.Fatalf("handshake reported for a stream that has none")
		}
	})
}
