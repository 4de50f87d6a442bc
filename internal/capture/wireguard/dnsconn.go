package wireguard

import (
	"encoding/binary"
	"io"
	"net"

	"github.com/miekg/dns"
)

// dnsWriter answers a query that arrived through the tunnel, on the
// association or connection it came by: over UDP cut to the size the client
// takes (so that it asks again over TCP), over TCP framed by its length.
type dnsWriter struct {
	c      net.Conn
	max    int // UDP: the largest answer the client takes
	framed bool
}

func (w *dnsWriter) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *dnsWriter) RemoteAddr() net.Addr { return w.c.RemoteAddr() }

func (w *dnsWriter) WriteMsg(m *dns.Msg) error {
	if !w.framed {
		m.Truncate(w.max)
	}
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *dnsWriter) Write(b []byte) (int, error) {
	if !w.framed {
		return w.c.Write(b)
	}
	if len(b) > 0xffff {
		return 0, dns.ErrBuf
	}
	framed := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(b)), uint16(len(b)))
	if _, err := w.c.Write(append(framed, b...)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (w *dnsWriter) Close() error        { return nil } // the association outlives one answer
func (w *dnsWriter) TsigStatus() error   { return nil }
func (w *dnsWriter) TsigTimersOnly(bool) {}
func (w *dnsWriter) Hijack()             {}

// parseQuery reads a DNS query; nil for anything else (answers, garbage),
// which is dropped.
func parseQuery(b []byte) *dns.Msg {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil || m.Response || len(m.Question) == 0 {
		return nil
	}
	return m
}

// udpSize is the largest UDP answer a query's client takes: 512 bytes unless
// its EDNS0 record says more.
func udpSize(q *dns.Msg) int {
	if opt := q.IsEdns0(); opt != nil && int(opt.UDPSize()) > dns.MinMsgSize {
		return int(opt.UDPSize())
	}
	return dns.MinMsgSize
}

// readFramed reads one length-framed DNS message from a TCP connection.
func readFramed(r io.Reader) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
