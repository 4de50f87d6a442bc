package pcap

import (
	"encoding/binary"
)

// packet is the decoded network and transport header of one record. Payload
// aliases the record's data.
type packet struct {
	src, dst     [16]byte // IPv4 addresses are stored v4-mapped
	v4           bool
	sport, dport uint16
	proto        uint8 // 6 TCP, 17 UDP
	seq          uint32
	flags        uint8
	payload      []byte
	short        int // bytes of transport payload missing because of the snap length
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

type decodeResult uint8

const (
	decOK decodeResult = iota
	decNotIP
	decFragment
	decOtherProto
	decMalformed
)

// decode parses link, IP and TCP/UDP headers. It never panics on short or
// hostile input: anything that does not parse is reported as malformed.
func decode(link uint32, b []byte, p *packet) decodeResult {
	var etype uint16
	switch link {
	case linkEthernet:
		if len(b) < 14 {
			return decMalformed
		}
		etype, b = binary.BigEndian.Uint16(b[12:]), b[14:]
		for etype == 0x8100 || etype == 0x88a8 || etype == 0x9100 {
			if len(b) < 4 {
				return decMalformed
			}
			etype, b = binary.BigEndian.Uint16(b[2:]), b[4:]
		}
	case linkSLL:
		if len(b) < 16 {
			return decMalformed
		}
		etype, b = binary.BigEndian.Uint16(b[14:]), b[16:]
	case linkSLL2:
		if len(b) < 20 {
			return decMalformed
		}
		etype, b = binary.BigEndian.Uint16(b), b[20:]
	case linkNull, linkLoop:
		if len(b) < 4 {
			return decMalformed
		}
		fam := binary.LittleEndian.Uint32(b)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(b)
		}
		b = b[4:]
		switch fam {
		case 2:
			etype = 0x0800
		case 10, 24, 28, 30:
			etype = 0x86dd
		default:
			return decNotIP
		}
	case linkRaw, linkRaw12, linkIPv4, linkIPv6:
		if len(b) < 1 {
			return decMalformed
		}
		switch b[0] >> 4 {
		case 4:
			etype = 0x0800
		case 6:
			etype = 0x86dd
		default:
			return decNotIP
		}
	default:
		return decNotIP
	}
	var ipPayloadLen int
	switch etype {
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return decMalformed
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:]))
		if total == 0 { // segmentation offload: the NIC fills the length in later
			total = len(b)
		}
		if ihl < 20 || total < ihl || len(b) < ihl {
			return decMalformed
		}
		if fo := binary.BigEndian.Uint16(b[6:]); fo&0x3fff != 0 {
			return decFragment // more-fragments set or an offset: not reassembled
		}
		p.v4 = true
		p.src = [16]byte{10: 0xff, 11: 0xff}
		p.dst = p.src
		copy(p.src[12:], b[12:16])
		copy(p.dst[12:], b[16:20])
		p.proto = b[9]
		ipPayloadLen = total - ihl
		b = b[ihl:]
	case 0x86dd:
		if len(b) < 40 || b[0]>>4 != 6 {
			return decMalformed
		}
		p.v4 = false
		copy(p.src[:], b[8:24])
		copy(p.dst[:], b[24:40])
		next := b[6]
		ipPayloadLen = int(binary.BigEndian.Uint16(b[4:]))
		b = b[40:]
		for {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(b) < 8 {
					return decMalformed
				}
				l := (int(b[1]) + 1) * 8
				if len(b) < l {
					return decMalformed
				}
				next, b, ipPayloadLen = b[0], b[l:], ipPayloadLen-l
				continue
			case 44:
				return decFragment
			}
			break
		}
		p.proto = next
	default:
		return decNotIP
	}
	switch p.proto {
	case 6:
		if len(b) < 20 {
			return decMalformed
		}
		off := int(b[12]>>4) * 4
		if off < 20 || len(b) < off {
			return decMalformed
		}
		p.sport, p.dport = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		p.seq = binary.BigEndian.Uint32(b[4:])
		p.flags = b[13]
		return p.setPayload(b, off, ipPayloadLen)
	case 17:
		if len(b) < 8 {
			return decMalformed
		}
		p.sport, p.dport = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		p.flags = 0
		return p.setPayload(b, 8, ipPayloadLen)
	}
	return decOtherProto
}

// setPayload trims link-layer padding (the IP length is authoritative) and
// records how much was cut by the snap length.
func (p *packet) setPayload(b []byte, hdr, ipPayloadLen int) decodeResult {
	want := ipPayloadLen - hdr
	if want < 0 {
		return decMalformed
	}
	have := len(b) - hdr
	p.short = 0
	if have > want {
		have = want
	} else if have < want {
		p.short = want - have
	}
	p.payload = b[hdr : hdr+have]
	return decOK
}
