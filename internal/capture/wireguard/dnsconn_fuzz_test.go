package wireguard

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/miekg/dns"
)

// FuzzDNSFromPeer feeds what a peer may send to the tunnel's resolver, as a
// datagram and as a TCP stream: nothing it sends may crash the server, and
// a frame never
// reads past what was sent.
func FuzzDNSFromPeer(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("tracker.test.", dns.TypeA)
	q.SetEdns0(1232, false)
	b, _ := q.Pack()
	f.Add(b)
	f.Add(binary.BigEndian.AppendUint16(nil, uint16(len(b))))
	f.Add([]byte{0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if m := parseQuery(b); m != nil {
			if n := udpSize(m); n < dns.MinMsgSize || n > 0xffff {
				t.Fatalf("UDP size %d", n)
			}
		}
		r := bytes.NewReader(b)
		read := 0
		for {
			msg, err := readFramed(r)
			if err != nil {
				break
			}
			if read += 2 + len(msg); read > len(b) {
				t.Fatalf("framed messages of %d bytes read from %d", read, len(b))
			}
			parseQuery(msg)
		}
	})
}
