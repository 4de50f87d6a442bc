package pcap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"

	"phonehome/internal/capture/hello"
	"phonehome/internal/flow"
)

// QUIC Initial packets are encrypted with keys derived from the client's
// connection ID (RFC 9001 §5.2, RFC 9369 §3.3), so anyone on the path can read
// the ClientHello inside them: the server name of an HTTP/3 connection.

var (
	quicV1Salt = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	quicV2Salt = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

const (
	quicV1 = 0x00000001
	quicV2 = 0x6b3343cf
)

// quicState is the client-side reading of one QUIC conversation.
type quicState struct {
	aead   cipher.AEAD
	hp     cipher.Block
	iv     []byte
	crypto []byte            // CRYPTO stream from offset 0, contiguous
	held   map[uint64][]byte // parts past a gap, by offset
	heldN  int               // bytes in held
}

// maxHeldParts bounds the CRYPTO frames held past a gap. Chromium scatters
// its ClientHello over a few dozen frames; a sender of many more is not
// sending one, and each part is looked for whenever the stream grows.
const maxHeldParts = 256

func expandLabel(secret []byte, label string, n int) []byte {
	info := make([]byte, 0, 4+len(label)+6)
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	out, _ := hkdf.Expand(sha256.New, secret, string(info), n)
	return out
}

func newQuicState(version uint32, dcid []byte) (*quicState, error) {
	salt, prefix := quicV1Salt, "quic "
	if version == quicV2 {
		salt, prefix = quicV2Salt, "quicv2 "
	}
	initial, err := hkdf.Extract(sha256.New, dcid, salt)
	if err != nil {
		return nil, err
	}
	client := expandLabel(initial, "client in", 32)
	key := expandLabel(client, prefix+"key", 16)
	iv := expandLabel(client, prefix+"iv", 12)
	hpKey := expandLabel(client, prefix+"hp", 16)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	hp, err := aes.NewCipher(hpKey)
	if err != nil {
		return nil, err
	}
	return &quicState{aead: aead, hp: hp, iv: iv}, nil
}

func quicVarint(b []byte) (uint64, int) {
	if len(b) == 0 {
		return 0, 0
	}
	n := 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v := uint64(b[0] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v, n
}

var errNotInitial = errors.New("not a QUIC Initial packet")

// parseInitial checks that pkt starts with a client Initial packet and returns
// its version and destination connection ID.
func parseInitial(pkt []byte) (version uint32, dcid []byte, err error) {
	if len(pkt) < 7 || pkt[0]&0xc0 != 0xc0 {
		return 0, nil, errNotInitial
	}
	version = binary.BigEndian.Uint32(pkt[1:])
	typ := (pkt[0] >> 4) & 3
	if !(version == quicV1 && typ == 0 || version == quicV2 && typ == 1) {
		return 0, nil, errNotInitial
	}
	l := int(pkt[5])
	if l > 20 || len(pkt) < 6+l {
		return 0, nil, errNotInitial
	}
	return version, pkt[6 : 6+l], nil
}

// decryptInitial removes header protection and decrypts one Initial packet,
// returning its frames.
func (q *quicState) decryptInitial(pkt []byte) ([]byte, error) {
	p := 6 + int(pkt[5])
	if len(pkt) <= p {
		return nil, errNotInitial
	}
	p += 1 + int(pkt[p]) // source connection ID
	if len(pkt) <= p {
		return nil, errNotInitial
	}
	tl, n := quicVarint(pkt[p:])
	if n == 0 || uint64(len(pkt)-p-n) < tl {
		return nil, errNotInitial
	}
	p += n + int(tl)
	length, n := quicVarint(pkt[p:])
	if n == 0 {
		return nil, errNotInitial
	}
	pnOff := p + n
	if length < 20 || uint64(len(pkt)-pnOff) < length {
		return nil, errNotInitial
	}
	var mask [16]byte
	q.hp.Encrypt(mask[:], pkt[pnOff+4:pnOff+20])
	first := pkt[0] ^ (mask[0] & 0x0f)
	pnLen := int(first&3) + 1
	hdr := make([]byte, pnOff+pnLen, pnOff+pnLen+int(length))
	copy(hdr, pkt[:pnOff+pnLen])
	hdr[0] = first
	var pn uint64
	for i := 0; i < pnLen; i++ {
		hdr[pnOff+i] ^= mask[1+i]
		pn = pn<<8 | uint64(hdr[pnOff+i])
	}
	nonce := make([]byte, 12)
	copy(nonce, q.iv)
	for i := 0; i < 8; i++ {
		nonce[11-i] ^= byte(pn >> (8 * i))
	}
	ct := pkt[pnOff+pnLen : pnOff+int(length)]
	return q.aead.Open(nil, nonce, ct, hdr)
}

// frames collects CRYPTO frame data from decrypted Initial frames.
func (q *quicState) frames(b []byte) {
	for len(b) > 0 {
		switch t := b[0]; {
		case t == 0x00 || t == 0x01: // PADDING, PING
			b = b[1:]
		case t == 0x02 || t == 0x03: // ACK
			b = b[1:]
			var vals int
			for i := 0; i < 4 && len(b) > 0; i++ { // largest, delay, range count, first range
				v, n := quicVarint(b)
				if n == 0 {
					return
				}
				if i == 2 {
					vals = int(v) * 2
				}
				b = b[n:]
			}
			if t == 0x03 {
				vals += 3
			}
			for i := 0; i < vals; i++ {
				_, n := quicVarint(b)
				if n == 0 {
					return
				}
				b = b[n:]
			}
		case t == 0x06: // CRYPTO
			off, n := quicVarint(b[1:])
			if n == 0 {
				return
			}
			l, m := quicVarint(b[1+n:])
			start := 1 + n + m
			if m == 0 || uint64(len(b)-start) < l {
				return
			}
			q.cryptoData(off, b[start:start+int(l)])
			b = b[start+int(l):]
		default:
			return
		}
	}
}

// cryptoData adds one CRYPTO frame's data at off to the stream. What lies past
// a gap is held, at most hello.MaxHandshake bytes in maxHeldParts parts (no
// ClientHello is longer), and joins the stream once the gap is filled.
func (q *quicState) cryptoData(off uint64, data []byte) {
	if off > hello.MaxHandshake || len(data) == 0 {
		return
	}
	if off > uint64(len(q.crypto)) {
		old, ok := q.held[off]
		if len(old) >= len(data) || !ok && len(q.held) >= maxHeldParts || q.heldN-len(old)+len(data) > hello.MaxHandshake {
			return
		}
		if q.held == nil {
			q.held = map[uint64][]byte{}
		}
		q.held[off] = append([]byte(nil), data...)
		q.heldN += len(data) - len(old)
		return
	}
	q.join(off, data)
	for grew := true; grew && len(q.held) > 0; {
		grew = false
		for o, d := range q.held {
			if o <= uint64(len(q.crypto)) {
				delete(q.held, o)
				q.heldN -= len(d)
				grew = q.join(o, d) || grew
			}
		}
	}
}

// join appends what data, at off within the stream, adds to its end.
func (q *quicState) join(off uint64, data []byte) bool {
	if end := off + uint64(len(data)); end > uint64(len(q.crypto)) {
		q.crypto = append(q.crypto, data[uint64(len(q.crypto))-off:]...)
		return true
	}
	return false
}

// quic tracks a UDP/443 conversation and reads the SNI from client Initials.
func (a *Assembler) quic(p *packet, ts time.Time) {
	key, srcFirst := makeKey(p)
	c := a.conns[key]
	if c == nil {
		if p.sport == 443 && p.dport != 443 {
			if _, _, err := parseInitial(p.payload); err != nil {
				a.stats.OtherUDP++
				return // server traffic for a conversation we did not see start
			}
		}
		c = a.newConn(key, p, srcFirst, ts)
		c.proto = protoQUIC
		c.tls = &flow.TLSInfo{}
	}
	a.touch(c, ts)
	d := 0
	if c.clientIsA != srcFirst {
		d = 1
	}
	c.dir[d].bytes += int64(len(p.payload))
	if d != 0 || c.helloDone[0] {
		return
	}
	version, dcid, err := parseInitial(p.payload)
	if err != nil {
		return
	}
	if c.quic == nil {
		if c.quic, err = newQuicState(version, dcid); err != nil {
			c.helloDone[0] = true
			return
		}
	}
	frames, err := c.quic.decryptInitial(p.payload)
	if err != nil {
		return
	}
	c.quic.frames(frames)
	ch, err := hello.ParseClientHello(c.quic.crypto)
	if err == hello.ErrNeedMore && len(c.quic.crypto) < hello.MaxHandshake {
		return
	}
	if err == nil {
		c.tls.SNI, c.tls.ALPN = ch.SNI, ch.ALPN
		c.tls.Version = "TLS 1.3"
	} else if err != hello.ErrNeedMore {
		c.note(flow.NoteMalformed, "QUIC ClientHello unreadable: "+err.Error())
	}
	c.helloDone[0] = true
	c.quic = nil
}

// QUICHellos reads server names from QUIC client Initial packets that arrive
// one datagram at a time (a live catcher): a ClientHello with large key
// shares spans two Initials, so each client's CRYPTO stream is kept until its
// hello is whole. At most 1,024 clients are followed at once.
type QUICHellos struct {
	states map[string]*quicState
	order  []string
}

// Add reads one datagram from src (an address:port); it returns the server
// name once the sender's ClientHello is complete.
func (h *QUICHellos) Add(src string, pkt []byte) (string, bool) {
	version, dcid, err := parseInitial(pkt)
	if err != nil {
		return "", false
	}
	if h.states == nil {
		h.states = map[string]*quicState{}
	}
	q := h.states[src]
	if q == nil {
		if q, err = newQuicState(version, dcid); err != nil {
			return "", false
		}
		if len(h.order) >= 1024 {
			delete(h.states, h.order[0])
			h.order = h.order[1:]
		}
		h.states[src] = q
		h.order = append(h.order, src)
	}
	frames, err := q.decryptInitial(pkt)
	if err != nil {
		return "", false
	}
	q.frames(frames)
	ch, err := hello.ParseClientHello(q.crypto)
	if err == hello.ErrNeedMore && len(q.crypto) < hello.MaxHandshake {
		return "", false
	}
	delete(h.states, src)
	for i, k := range h.order {
		if k == src {
			h.order = append(h.order[:i], h.order[i+1:]...)
			break
		}
	}
	if err != nil {
		return "", false
	}
	return ch.SNI, true
}
