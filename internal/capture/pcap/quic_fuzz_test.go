package pcap

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"phonehome/internal/capture/hello"
	"phonehome/internal/flow"
)

// The QUIC Initial reader is fuzzed in two ways. Random bytes almost never
// pass the AEAD check, so FuzzQUICInitial, which takes whole datagrams (its
// corpus holds Chromium's Initials from the capture fixture), mostly explores
// the header parsing and the refusals. FuzzQUICFrames takes the decrypted
// contents instead and seals them into Initials itself, so every input gets
// through the key derivation, header protection and decryption to the CRYPTO
// reassembly and the ClientHello parser.

const fuzzClient = "192.0.2.7:50000"

// udpDatagram frames payload as an IPv4/UDP packet from the fuzz client to
// port 443 (link type raw IP; the reader does not check checksums).
func udpDatagram(payload []byte) []byte {
	b := make([]byte, 28, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(28+len(payload)))
	copy(b[12:], []byte{192, 0, 2, 7})
	copy(b[16:], []byte{198, 51, 100, 1})
	binary.BigEndian.PutUint16(b[20:], 50000)
	binary.BigEndian.PutUint16(b[22:], 443)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	return append(b, payload...)
}

// feedQUIC gives one client's datagrams to both readers of QUIC Initials, the
// live catcher (QUICHellos) and the capture reader (Assembler), and checks
// that they agree on the server name. The catcher starts afresh once a
// ClientHello is complete while a capture connection reads only its first,
// so the catcher is given datagrams up to its first complete hello only.
func feedQUIC(t *testing.T, dgrams ...[]byte) {
	for i, d := range dgrams {
		if len(d) > 65535-28 {
			dgrams[i] = d[:65535-28]
		}
	}
	var h QUICHellos
	var sni string
	for _, d := range dgrams {
		name, ok := h.Add(fuzzClient, d)
		if len(h.states) > 1 || len(h.order) != len(h.states) {
			t.Fatalf("one client, %d states, %d in order", len(h.states), len(h.order))
		}
		if ok {
			sni = name
		}
		if q := h.states[fuzzClient]; q != nil {
			n := 0
			for _, d := range q.held {
				n += len(d)
			}
			if n != q.heldN || n > hello.MaxHandshake || len(q.held) > maxHeldParts {
				t.Fatalf("%d parts held, %d bytes, heldN %d", len(q.held), n, q.heldN)
			}
		}
		if _, _, err := parseInitial(d); err == nil && h.states[fuzzClient] == nil {
			break // the hello is complete, whether it parsed or not
		}
	}

	var flows []*flow.Flow
	a := NewAssembler("fuzz", Options{MaxConns: 4}, func(f *flow.Flow) { flows = append(flows, f) })
	ts := time.Date(2026, 11, 18, 7, 0, 0, 0, time.UTC)
	for _, d := range dgrams {
		a.Packet(LinkRaw, ts, udpDatagram(d))
		ts = ts.Add(time.Millisecond)
	}
	a.Close()
	if len(flows) != 1 || flows[0].TLS == nil {
		t.Fatalf("%d flows from one QUIC client: %+v", len(flows), flows)
	}
	if got := flows[0].TLS.SNI; got != sni {
		t.Fatalf("capture reader read server name %q, live catcher %q", got, sni)
	}
}

func FuzzQUICInitial(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte("\xc0\x00\x00\x00\x01\x08\x01\x02\x03\x04\x05\x06\x07\x08\x00\x00\x40\x14"), []byte("\xd0\x6b\x33\x43\xcf\x00\x00\x00\x01"))
	f.Add([]byte("\xc0\x00\x00\x00\x01\x15"), []byte("\xc3\x00\x00\x00\x01\x00\x00\x80"))
	f.Fuzz(func(t *testing.T, first, second []byte) {
		feedQUIC(t, first, second)
	})
}

// sealInitial builds a client Initial around frames as RFC 9001 §5 has a
// client do (RFC 9369 for version 2), the inverse of decryptInitial: the
// packet number is written in as few bytes as it takes, and frames are padded
// so that the header protection sample lies within the packet.
func sealInitial(t *testing.T, version uint32, dcid, scid, token []byte, pn uint32, frames []byte) (pkt, plain []byte) {
	q, err := newQuicState(version, dcid)
	if err != nil {
		t.Fatal(err)
	}
	pnLen := 1
	for pnLen < 4 && pn>>(8*pnLen) != 0 {
		pnLen++
	}
	if len(frames) < 4-pnLen {
		frames = append(frames[:len(frames):len(frames)], make([]byte, 4-pnLen-len(frames))...)
	}
	typ := byte(0)
	if version == quicV2 {
		typ = 1
	}
	hdr := []byte{0xc0 | typ<<4 | byte(pnLen-1)}
	hdr = binary.BigEndian.AppendUint32(hdr, version)
	hdr = append(append(hdr, byte(len(dcid))), dcid...)
	hdr = append(append(hdr, byte(len(scid))), scid...)
	hdr = append(appendVarint(hdr, uint64(len(token))), token...)
	hdr = appendVarint(hdr, uint64(pnLen+len(frames)+q.aead.Overhead()))
	pnOff := len(hdr)
	for i := pnLen - 1; i >= 0; i-- {
		hdr = append(hdr, byte(pn>>(8*i)))
	}
	nonce := make([]byte, 12)
	copy(nonce, q.iv)
	for i := 0; i < 4; i++ {
		nonce[11-i] ^= byte(pn >> (8 * i))
	}
	pkt = q.aead.Seal(bytes.Clone(hdr), nonce, frames, hdr)
	var mask [16]byte
	q.hp.Encrypt(mask[:], pkt[pnOff+4:pnOff+20])
	pkt[0] ^= mask[0] & 0x0f
	for i := 0; i < pnLen; i++ {
		pkt[pnOff+i] ^= mask[1+i]
	}
	return pkt, frames
}

// appendVarint writes v as a QUIC variable-length integer (RFC 9000 §16).
func appendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return binary.BigEndian.AppendUint16(b, uint16(v)|0x4000)
	case v < 1<<30:
		return binary.BigEndian.AppendUint32(b, uint32(v)|0x80000000)
	}
	return binary.BigEndian.AppendUint64(b, v|0xc0<<56)
}

// FuzzQUICFrames seals the frames of two Initials of one client (version 1,
// or 2 if v2 is set) with keys from dcid, checks that decryption gives them
// back, and reads them as a capture and as a live catcher would. Its corpus
// holds the frames of Chromium's Initials, a ClientHello split across two
// packets in scattered CRYPTO frames among PING and PADDING.
func FuzzQUICFrames(f *testing.F) {
	ch := []byte("\x01\x00\x00\x3a\x03\x03" + string(make([]byte, 32)) + "\x00\x00\x02\x13\x01\x01\x00\x00\x0f\x00\x00\x00\x0b\x00\x09\x00\x00\x06q.test")
	if h, err := hello.ParseClientHello(ch); err != nil || h.SNI != "q.test" {
		f.Fatalf("seed ClientHello: %+v, %v", h, err)
	}
	crypto := func(off int, data []byte) []byte {
		return append(appendVarint(appendVarint([]byte{0x06}, uint64(off)), uint64(len(data))), data...)
	}
	f.Add(false, []byte("\x01\x02\x03\x04\x05\x06\x07\x08"), uint32(0), crypto(0, ch), []byte{0x01})
	f.Add(true, []byte{}, uint32(1<<20), crypto(20, ch[20:]), append(crypto(0, ch[:25]), 0x02, 0x05, 0x00, 0x01, 0x02, 0x00, 0x00))
	f.Fuzz(func(t *testing.T, v2 bool, dcid []byte, pn uint32, first, second []byte) {
		version := uint32(quicV1)
		if v2 {
			version = quicV2
		}
		if len(dcid) > 20 {
			dcid = dcid[:20]
		}
		p1, f1 := sealInitial(t, version, dcid, nil, nil, pn, first)
		p2, f2 := sealInitial(t, version, dcid, []byte{0xaa, 0xbb}, []byte("token"), pn+1, second)
		for _, p := range [][2][]byte{{p1, f1}, {p2, f2}} {
			v, id, err := parseInitial(p[0])
			if err != nil || v != version || !bytes.Equal(id, dcid) {
				t.Fatalf("sealed Initial read as version %x, connection ID %x: %v", v, id, err)
			}
			q, _ := newQuicState(version, dcid)
			got, err := q.decryptInitial(p[0])
			if err != nil || !bytes.Equal(got, p[1]) {
				t.Fatalf("sealed %x, decrypted %x: %v", p[1], got, err)
			}
		}
		feedQUIC(t, p1, p2)
	})
}
