package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// Link types this reader understands (the tcpdump.org LINKTYPE_ numbers).
const (
	linkNull     = 0   // BSD loopback: 4-byte address family in the capturing host's byte order
	linkEthernet = 1   // Ethernet II, with 802.1Q/802.1ad tags
	linkRaw12    = 12  // raw IP on some BSDs
	linkRaw      = 101 // raw IP, version from the first nibble
	linkLoop     = 108 // OpenBSD loopback: address family in network byte order
	linkSLL      = 113 // Linux cooked capture v1 (tcpdump -i any, older)
	linkIPv4     = 228
	linkIPv6     = 229
	linkSLL2     = 276 // Linux cooked capture v2 (tcpdump -i any, newer)
)

func linkSupported(lt uint32) bool {
	switch lt {
	case linkNull, linkEthernet, linkRaw12, linkRaw, linkLoop, linkSLL, linkIPv4, linkIPv6, linkSLL2:
		return true
	}
	return false
}

const supportedLinks = "Ethernet, Linux cooked (SLL, SLL2), raw IPv4/IPv6, BSD/OpenBSD loopback"

// record is one captured packet. Data aliases the reader's buffer and is valid
// only until the next call to next.
type record struct {
	ts      time.Time
	link    uint32
	data    []byte
	origLen int
}

// FormatError describes where a capture file stopped making sense. Everything
// read before Offset has already been turned into flows.
//
// Packets are numbered as Wireshark numbers its frames, so that a user can go
// to the spot: from 1, counting in pcapng only the blocks that hold a packet
// (enhanced, simple and obsolete packet blocks), not the section headers,
// interface descriptions and statistics between them.
type FormatError struct {
	Packet int   // number of the packet being read; 0 when the damage is outside a packet
	After  int   // when Packet is 0: packets read before the damage
	Offset int64 // byte offset in the file where the damaged record or block began
	Msg    string
}

func (e *FormatError) Error() string {
	switch {
	case e.Packet > 0:
		return fmt.Sprintf("packet %d at offset %d: %s", e.Packet, e.Offset, e.Msg)
	case e.After > 0:
		return fmt.Sprintf("at offset %d, after packet %d: %s", e.Offset, e.After, e.Msg)
	}
	return fmt.Sprintf("at offset %d: %s", e.Offset, e.Msg)
}

// fileReader reads records from a pcap or pcapng stream without copying them.
type fileReader struct {
	br     *bufio.Reader
	off    int64 // bytes consumed
	n      int   // packets read whole (pcapng blocks without a packet not counted)
	ng     bool
	order  binary.ByteOrder
	nano   bool   // pcap: nanosecond timestamps
	link   uint32 // pcap: the file's link type
	ifaces []ngIface
	big    []byte // for records larger than the bufio buffer
}

type ngIface struct {
	link    uint32
	snaplen uint32
	tsUnit  float64 // seconds per timestamp tick
}

const readBufSize = 1 << 20

// ErrNotCapture means the stream is neither pcap nor pcapng.
var ErrNotCapture = errors.New("not a pcap or pcapng file")

// Sniff reports whether head (the first bytes of a file) starts a pcap or pcapng file.
func Sniff(head []byte) bool {
	if len(head) < 4 {
		return false
	}
	switch binary.LittleEndian.Uint32(head) {
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1, 0x0a0d0d0a:
		return true
	}
	return false
}

func newFileReader(r io.Reader) (*fileReader, error) {
	fr := &fileReader{br: bufio.NewReaderSize(r, readBufSize)}
	head, err := fr.br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("%w: file is shorter than a header (%d bytes)", ErrNotCapture, len(head))
	}
	if binary.LittleEndian.Uint32(head) == 0x0a0d0d0a {
		fr.ng = true
		return fr, nil // the section header is read as the first block
	}
	h, err := fr.br.Peek(24)
	if err != nil {
		return nil, &FormatError{Offset: 0, Msg: "truncated pcap file header"}
	}
	switch binary.LittleEndian.Uint32(h) {
	case 0xa1b2c3d4:
		fr.order = binary.LittleEndian
	case 0xa1b23c4d:
		fr.order, fr.nano = binary.LittleEndian, true
	case 0xd4c3b2a1:
		fr.order = binary.BigEndian
	case 0x4d3cb2a1:
		fr.order, fr.nano = binary.BigEndian, true
	default:
		return nil, ErrNotCapture
	}
	// The upper bits of the link type field carry FCS information.
	fr.link = fr.order.Uint32(h[20:]) & 0x0fffffff
	if !linkSupported(fr.link) {
		return nil, &FormatError{Offset: 20, Msg: fmt.Sprintf("unsupported link type %d (phonehome reads %s)", fr.link, supportedLinks)}
	}
	fr.discard(24)
	return fr, nil
}

func (fr *fileReader) discard(n int) {
	d, _ := fr.br.Discard(n)
	fr.off += int64(d)
}

// take returns the next n bytes, aliasing the buffer when they fit in it.
func (fr *fileReader) take(n int) ([]byte, error) {
	if n <= readBufSize {
		b, err := fr.br.Peek(n)
		if err != nil {
			return b, err
		}
		fr.discard(n)
		return b, nil
	}
	// Grow as the bytes arrive, so a corrupt length field cannot make us
	// allocate far more than the file holds.
	b := fr.big[:0]
	for len(b) < n {
		k := min(n-len(b), readBufSize)
		b = slices.Grow(b, k)
		m, err := io.ReadFull(fr.br, b[len(b):len(b)+k])
		b = b[:len(b)+m]
		fr.off += int64(m)
		if err != nil {
			fr.big = b
			return b, err
		}
	}
	fr.big = b
	return b, nil
}

// damaged describes damage in the record or block that began at start: the
// packet being read when pkt is set, otherwise a block between packets.
func (fr *fileReader) damaged(pkt bool, start int64, msg string) error {
	if pkt {
		return &FormatError{Packet: fr.n + 1, Offset: start, Msg: msg}
	}
	return &FormatError{After: fr.n, Offset: start, Msg: msg}
}

func (fr *fileReader) truncated(pkt bool, start int64, what string, need, have int) error {
	return fr.damaged(pkt, start, fmt.Sprintf("truncated %s: needs %d bytes, file has %d", what, need, have))
}

// next returns the next packet record, io.EOF at a clean end, or a *FormatError.
func (fr *fileReader) next(rec *record) error {
	if fr.ng {
		return fr.nextNG(rec)
	}
	start := fr.off
	h, err := fr.br.Peek(16)
	if len(h) == 0 && err != nil {
		return io.EOF
	}
	if len(h) < 16 {
		return fr.truncated(true, start, "packet header", 16, len(h))
	}
	sec, frac := fr.order.Uint32(h), fr.order.Uint32(h[4:])
	incl, orig := fr.order.Uint32(h[8:]), fr.order.Uint32(h[12:])
	if incl > 256<<20 {
		return fr.damaged(true, start, fmt.Sprintf("packet length %d is impossible (corrupt file?)", incl))
	}
	fr.discard(16)
	data, err := fr.take(int(incl))
	if err != nil {
		return fr.truncated(true, start, "packet data", int(incl), len(data))
	}
	if fr.nano {
		rec.ts = time.Unix(int64(sec), int64(frac))
	} else {
		rec.ts = time.Unix(int64(sec), int64(frac)*1000)
	}
	rec.link, rec.data, rec.origLen = fr.link, data, int(orig)
	fr.n++
	return nil
}

// pcapng block types.
const (
	ngSection   = 0x0a0d0d0a // the same in either byte order
	ngInterface = 1
	ngObsolete  = 2 // obsolete packet block
	ngSimple    = 3
	ngEnhanced  = 6
)

func (fr *fileReader) nextNG(rec *record) error {
	for {
		start := fr.off
		h, err := fr.br.Peek(8)
		if len(h) == 0 && err != nil {
			return io.EOF
		}
		if len(h) < 8 {
			return fr.truncated(false, start, "pcapng block header", 8, len(h))
		}
		btype := binary.LittleEndian.Uint32(h)
		if btype != ngSection && fr.order != nil {
			btype = fr.order.Uint32(h)
		}
		pkt := btype == ngEnhanced || btype == ngSimple || btype == ngObsolete
		fail := func(msg string) error { return fr.damaged(pkt, start, msg) }
		if btype == ngSection {
			bom, err := fr.br.Peek(12)
			if err != nil {
				return fr.truncated(false, start, "pcapng section header", 12, len(bom))
			}
			switch binary.LittleEndian.Uint32(bom[8:]) {
			case 0x1a2b3c4d:
				fr.order = binary.LittleEndian
			case 0x4d3c2b1a:
				fr.order = binary.BigEndian
			default:
				return fail("pcapng section header has an unknown byte-order magic")
			}
			fr.ifaces = fr.ifaces[:0] // interfaces are numbered per section
		} else if fr.order == nil {
			return fail("pcapng block before any section header")
		}
		blen := fr.order.Uint32(h[4:])
		if blen < 12 || blen%4 != 0 || blen > 256<<20 {
			return fail(fmt.Sprintf("pcapng block length %d is invalid (corrupt file?)", blen))
		}
		blk, err := fr.take(int(blen))
		if err != nil {
			return fr.truncated(pkt, start, "pcapng block", int(blen), len(blk))
		}
		if fr.order.Uint32(blk[blen-4:]) != blen {
			return fail("pcapng block lengths at start and end differ (corrupt file?)")
		}
		body := blk[8 : blen-4]
		switch btype {
		case ngInterface:
			if len(body) < 8 {
				return fail("pcapng interface block too short")
			}
			ifc := ngIface{link: uint32(fr.order.Uint16(body)), snaplen: fr.order.Uint32(body[4:]), tsUnit: 1e-6}
			fr.parseIfaceOptions(body[8:], &ifc)
			fr.ifaces = append(fr.ifaces, ifc)
		case ngEnhanced:
			if len(body) < 20 {
				return fail("pcapng packet block too short")
			}
			id := fr.order.Uint32(body)
			if int(id) >= len(fr.ifaces) {
				return fail(fmt.Sprintf("packet names interface %d, but only %d were described", id, len(fr.ifaces)))
			}
			caplen := fr.order.Uint32(body[12:])
			if int(caplen) > len(body)-20 {
				return fail(fmt.Sprintf("captured length %d exceeds its block", caplen))
			}
			ts := uint64(fr.order.Uint32(body[4:]))<<32 | uint64(fr.order.Uint32(body[8:]))
			ifc := &fr.ifaces[id]
			rec.ts = ngTime(ts, ifc.tsUnit)
			rec.link, rec.data, rec.origLen = ifc.link, body[20:20+caplen], int(fr.order.Uint32(body[16:]))
			return fr.packetRead(rec.link, start)
		case ngSimple: // interface 0, no timestamp
			if len(fr.ifaces) == 0 || len(body) < 4 {
				return fail("pcapng simple packet block without an interface")
			}
			orig := fr.order.Uint32(body)
			caplen := min(uint32(len(body)-4), orig)
			if s := fr.ifaces[0].snaplen; s > 0 && caplen > s {
				caplen = s
			}
			rec.ts, rec.link, rec.data, rec.origLen = time.Time{}, fr.ifaces[0].link, body[4:4+caplen], int(orig)
			return fr.packetRead(rec.link, start)
		case ngObsolete:
			if len(body) < 20 {
				return fail("pcapng packet block too short")
			}
			id := int(fr.order.Uint16(body))
			if id >= len(fr.ifaces) {
				return fail(fmt.Sprintf("packet names interface %d, but only %d were described", id, len(fr.ifaces)))
			}
			caplen := fr.order.Uint32(body[12:])
			if int(caplen) > len(body)-20 {
				return fail(fmt.Sprintf("captured length %d exceeds its block", caplen))
			}
			ts := uint64(fr.order.Uint32(body[4:]))<<32 | uint64(fr.order.Uint32(body[8:]))
			rec.ts = ngTime(ts, fr.ifaces[id].tsUnit)
			rec.link, rec.data, rec.origLen = fr.ifaces[id].link, body[20:20+caplen], int(fr.order.Uint32(body[16:]))
			return fr.packetRead(rec.link, start)
		}
		// Other blocks (statistics, name resolution, decryption secrets, custom) carry no packets.
	}
}

// packetRead counts the pcapng packet block just read, unless its link type
// is one phonehome cannot decode.
func (fr *fileReader) packetRead(lt uint32, start int64) error {
	if !linkSupported(lt) {
		return fr.damaged(true, start, fmt.Sprintf("unsupported link type %d (phonehome reads %s)", lt, supportedLinks))
	}
	fr.n++
	return nil
}

func (fr *fileReader) parseIfaceOptions(opts []byte, ifc *ngIface) {
	for len(opts) >= 4 {
		code, l := fr.order.Uint16(opts), int(fr.order.Uint16(opts[2:]))
		if code == 0 || 4+l > len(opts) {
			return
		}
		if code == 9 && l >= 1 { // if_tsresol
			v := opts[4]
			if v&0x80 != 0 {
				ifc.tsUnit = math.Pow(2, -float64(v&0x7f))
			} else {
				ifc.tsUnit = math.Pow(10, -float64(v))
			}
		}
		opts = opts[4+(l+3)&^3:]
	}
}

func ngTime(ticks uint64, unit float64) time.Time {
	switch unit {
	case 1e-6:
		return time.UnixMicro(int64(ticks))
	case 1e-9:
		return time.Unix(0, int64(ticks))
	}
	sec := float64(ticks) * unit
	whole := math.Floor(sec)
	return time.Unix(int64(whole), int64((sec-whole)*1e9))
}
