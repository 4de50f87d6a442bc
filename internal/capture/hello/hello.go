// Package hello reads the cleartext start of a TLS handshake: the server name
// (SNI) and protocols (ALPN) a client asks for, and the version a server picks.
// The transparent proxy uses it to choose between interception and passthrough;
// the pcap reader uses it to name connections it cannot decrypt.
package hello

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrNeedMore means the input ends before the handshake message does.
var ErrNeedMore = errors.New("tls: handshake message incomplete")

// MaxHandshake bounds how much of a stream is buffered to find a hello.
const MaxHandshake = 64 << 10

// ClientHello is what a ClientHello reveals without decryption.
type ClientHello struct {
	SNI      string
	ALPN     []string
	Versions []uint16 // supported_versions, or the legacy version
}

// ServerHello is what a ServerHello reveals without decryption.
type ServerHello struct {
	Version uint16
	ALPN    string // only visible before TLS 1.3
}

// LooksLikeTLS reports whether a stream starting with b is a TLS handshake.
func LooksLikeTLS(b []byte) bool {
	return len(b) >= 3 && b[0] == 22 && b[1] == 3 && b[2] <= 4
}

// handshakeFromRecords joins the payloads of the handshake records at the start
// of b until one whole handshake message of the wanted type is present.
func handshakeFromRecords(b []byte, want byte) ([]byte, error) {
	var msg []byte
	for {
		if len(b) < 5 {
			return nil, ErrNeedMore
		}
		if b[0] != 22 {
			return nil, fmt.Errorf("tls: record type %d where a handshake was expected", b[0])
		}
		n := int(binary.BigEndian.Uint16(b[3:]))
		if n == 0 || n > 18432 {
			return nil, fmt.Errorf("tls: record length %d is invalid", n)
		}
		if len(b) < 5+n {
			return nil, ErrNeedMore
		}
		if msg == nil && len(b[5:5+n]) >= 4 && binary.BigEndian.Uint32(b[5:])>>8+4 <= uint32(n) {
			msg = b[5 : 5+n] // the common case: one record holds the message, no copy
		} else {
			msg = append(msg[:len(msg):len(msg)], b[5:5+n]...)
		}
		b = b[5+n:]
		if len(msg) >= 4 {
			if msg[0] != want {
				return nil, fmt.Errorf("tls: handshake message type %d, expected %d", msg[0], want)
			}
			l := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
			if l > MaxHandshake {
				return nil, fmt.Errorf("tls: handshake message of %d bytes is too large", l)
			}
			if len(msg) >= 4+l {
				return msg[:4+l], nil
			}
		}
	}
}

// ParseClientHelloRecords parses a ClientHello from the first bytes a client sent.
func ParseClientHelloRecords(b []byte) (ClientHello, error) {
	msg, err := handshakeFromRecords(b, 1)
	if err != nil {
		return ClientHello{}, err
	}
	return ParseClientHello(msg)
}

// ParseServerHelloRecords parses a ServerHello from the first bytes a server sent.
func ParseServerHelloRecords(b []byte) (ServerHello, error) {
	msg, err := handshakeFromRecords(b, 2)
	if err != nil {
		return ServerHello{}, err
	}
	return parseServerHello(msg)
}

// reader is a bounds-checked cursor; after the first short read every call
// returns zero values and ok() reports false.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) bytes(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
func (r *reader) u8() int {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return int(v[0])
}
func (r *reader) u16() int {
	v := r.bytes(2)
	if v == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(v))
}
func (r *reader) u24() int {
	v := r.bytes(3)
	if v == nil {
		return 0
	}
	return int(v[0])<<16 | int(v[1])<<8 | int(v[2])
}
func (r *reader) ok() bool { return !r.bad }

var errMalformed = errors.New("tls: malformed hello")

// ParseClientHello parses one handshake message (type 1, with its 4-byte header),
// as found in TLS records or in QUIC CRYPTO frames.
func ParseClientHello(msg []byte) (ClientHello, error) {
	var ch ClientHello
	if len(msg) < 4 {
		return ch, ErrNeedMore
	}
	r := reader{b: msg}
	if r.u8() != 1 {
		return ch, errors.New("tls: not a ClientHello")
	}
	l := r.u24()
	if len(r.b) < l {
		return ch, ErrNeedMore
	}
	r.b = r.b[:l]
	legacy := r.u16()
	r.bytes(32)      // random
	r.bytes(r.u8())  // session id
	r.bytes(r.u16()) // cipher suites
	r.bytes(r.u8())  // compression methods
	if !r.ok() {
		return ch, errMalformed
	}
	if len(r.b) == 0 {
		ch.Versions = []uint16{uint16(legacy)}
		return ch, nil
	}
	exts := reader{b: r.bytes(r.u16())}
	if !r.ok() {
		return ch, errMalformed
	}
	for len(exts.b) > 0 && exts.ok() {
		typ := exts.u16()
		e := reader{b: exts.bytes(exts.u16())}
		switch typ {
		case 0: // server_name
			list := reader{b: e.bytes(e.u16())}
			for len(list.b) > 0 && list.ok() {
				kind := list.u8()
				name := list.bytes(list.u16())
				if kind == 0 && list.ok() && ch.SNI == "" {
					ch.SNI = string(name)
				}
			}
		case 16: // ALPN
			list := reader{b: e.bytes(e.u16())}
			for len(list.b) > 0 && list.ok() {
				if p := list.bytes(list.u8()); list.ok() {
					ch.ALPN = append(ch.ALPN, string(p))
				}
			}
		case 43: // supported_versions
			list := reader{b: e.bytes(e.u8())}
			for len(list.b) >= 2 {
				if v := uint16(list.u16()); v&0x0f0f != 0x0a0a { // skip GREASE
					ch.Versions = append(ch.Versions, v)
				}
			}
		}
	}
	if !exts.ok() {
		return ch, errMalformed
	}
	if len(ch.Versions) == 0 {
		ch.Versions = []uint16{uint16(legacy)}
	}
	return ch, nil
}

func parseServerHello(msg []byte) (ServerHello, error) {
	var sh ServerHello
	r := reader{b: msg}
	r.u8()
	r.b = r.bytes(r.u24())
	sh.Version = uint16(r.u16())
	r.bytes(32)
	r.bytes(r.u8())
	r.u16() // cipher suite
	r.u8()  // compression
	if !r.ok() {
		return sh, errMalformed
	}
	if len(r.b) == 0 {
		return sh, nil
	}
	exts := reader{b: r.bytes(r.u16())}
	for len(exts.b) > 0 && exts.ok() {
		typ := exts.u16()
		e := reader{b: exts.bytes(exts.u16())}
		switch typ {
		case 16:
			list := reader{b: e.bytes(e.u16())}
			if p := list.bytes(list.u8()); list.ok() {
				sh.ALPN = string(p)
			}
		case 43:
			if v := e.u16(); e.ok() {
				sh.Version = uint16(v)
			}
		}
	}
	return sh, nil
}

// VersionName is the human name of a TLS protocol version.
func VersionName(v uint16) string {
	switch v {
	case 0x0300:
		return "SSL 3.0"
	case 0x0301:
		return "TLS 1.0"
	case 0x0302:
		return "TLS 1.1"
	case 0x0303:
		return "TLS 1.2"
	case 0x0304:
		return "TLS 1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}
