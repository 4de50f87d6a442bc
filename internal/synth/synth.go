// Package synth writes believable network traffic into pcap files: TCP
// conversations with handshakes, MSS-sized segments and ACKs, UDP datagrams, and
// the DNS messages and TLS hellos around them. It makes the example capture and
// the benchmark captures; every packet has valid IPv4 and TCP/UDP checksums, so
// other tools (tshark, Wireshark) read the files as they would a real capture.
package synth

import (
	"encoding/binary"
	"net/netip"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"phonehome/internal/capture/pcap"
)

// Writer writes Ethernet frames to a pcap file with a clock that advances a
// little with every packet.
type Writer struct {
	pw   *pcap.Writer
	Now  time.Time
	Step time.Duration // added to Now after each packet
	buf  []byte
	ipID uint16
	MAC  map[netip.Addr][6]byte
}

// New wraps a pcap writer (link type Ethernet) starting at the given time.
func New(pw *pcap.Writer, start time.Time) *Writer {
	return &Writer{pw: pw, Now: start, Step: 200 * time.Microsecond, MAC: map[netip.Addr][6]byte{}}
}

func (w *Writer) mac(a netip.Addr) [6]byte {
	if m, ok := w.MAC[a]; ok {
		return m
	}
	b := a.As16()
	return [6]byte{0x02, 0x00, b[12], b[13], b[14], b[15]}
}

// Wait advances the clock.
func (w *Writer) Wait(d time.Duration) { w.Now = w.Now.Add(d) }

func checksum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// packet writes one IPv4 packet with a TCP (proto 6) or UDP (17) header.
func (w *Writer) packet(src, dst netip.AddrPort, proto byte, seq, ack uint32, flags byte, payload []byte) error {
	thl := 20
	if proto == 17 {
		thl = 8
	}
	n := 14 + 20 + thl + len(payload)
	if cap(w.buf) < n {
		w.buf = make([]byte, n, n+1024)
	}
	b := w.buf[:n]
	sm, dm := w.mac(src.Addr()), w.mac(dst.Addr())
	copy(b[0:6], dm[:])
	copy(b[6:12], sm[:])
	b[12], b[13] = 0x08, 0x00
	ip := b[14:34]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(20+thl+len(payload)))
	w.ipID++
	binary.BigEndian.PutUint16(ip[4:], w.ipID)
	ip[6], ip[7] = 0x40, 0 // don't fragment
	ip[8], ip[9] = 64, proto
	ip[10], ip[11] = 0, 0
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], fold(checksum(0, ip)))
	t := b[34 : 34+thl]
	binary.BigEndian.PutUint16(t[0:], src.Port())
	binary.BigEndian.PutUint16(t[2:], dst.Port())
	if proto == 6 {
		binary.BigEndian.PutUint32(t[4:], seq)
		binary.BigEndian.PutUint32(t[8:], ack)
		t[12], t[13] = 5<<4, flags
		binary.BigEndian.PutUint16(t[14:], 65535)
		t[16], t[17], t[18], t[19] = 0, 0, 0, 0
	} else {
		binary.BigEndian.PutUint16(t[4:], uint16(8+len(payload)))
		t[6], t[7] = 0, 0
	}
	copy(b[34+thl:], payload)
	// Pseudo-header checksum over the transport header and payload.
	sum := checksum(0, s4[:])
	sum = checksum(sum, d4[:])
	sum += uint32(proto) + uint32(thl+len(payload))
	sum = checksum(sum, b[34:])
	cs := fold(sum)
	if proto == 17 && cs == 0 {
		cs = 0xffff
	}
	if proto == 6 {
		binary.BigEndian.PutUint16(t[16:], cs)
	} else {
		binary.BigEndian.PutUint16(t[6:], cs)
	}
	err := w.pw.WritePacket(w.Now, b)
	w.Now = w.Now.Add(w.Step)
	return err
}

// UDP writes one datagram.
func (w *Writer) UDP(src, dst netip.AddrPort, payload []byte) error {
	return w.packet(src, dst, 17, 0, 0, 0, payload)
}

// Conn is a TCP connection being written.
type Conn struct {
	w        *Writer
	cli, srv netip.AddrPort
	cseq     uint32
	sseq     uint32
	MSS      int
}

const (
	fin = 0x01
	syn = 0x02
	psh = 0x08
	ack = 0x10
)

// TCP writes a three-way handshake and returns the open connection.
func (w *Writer) TCP(client, server netip.AddrPort) (*Conn, error) {
	c := &Conn{w: w, cli: client, srv: server, cseq: uint32(client.Port()) * 7919, sseq: uint32(server.Port()) * 104729, MSS: 1448}
	if err := w.packet(client, server, 6, c.cseq, 0, syn, nil); err != nil {
		return nil, err
	}
	c.cseq++
	if err := w.packet(server, client, 6, c.sseq, c.cseq, syn|ack, nil); err != nil {
		return nil, err
	}
	c.sseq++
	return c, w.packet(client, server, 6, c.cseq, c.sseq, ack, nil)
}

// Send writes data from one side in MSS-sized segments; the other side
// acknowledges every second segment.
func (c *Conn) Send(fromClient bool, data []byte) error {
	src, dst, seq, peer := c.cli, c.srv, &c.cseq, &c.sseq
	if !fromClient {
		src, dst, seq, peer = c.srv, c.cli, &c.sseq, &c.cseq
	}
	for i := 0; len(data) > 0; i++ {
		n := min(len(data), c.MSS)
		if err := c.w.packet(src, dst, 6, *seq, *peer, ack|psh, data[:n]); err != nil {
			return err
		}
		*seq += uint32(n)
		data = data[n:]
		if i%2 == 1 || len(data) == 0 {
			if err := c.w.packet(dst, src, 6, *peer, *seq, ack, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close writes the client's FIN, the server's FIN and the last ACK.
func (c *Conn) Close() error {
	if err := c.w.packet(c.cli, c.srv, 6, c.cseq, c.sseq, fin|ack, nil); err != nil {
		return err
	}
	c.cseq++
	if err := c.w.packet(c.srv, c.cli, 6, c.sseq, c.cseq, fin|ack, nil); err != nil {
		return err
	}
	c.sseq++
	return c.w.packet(c.cli, c.srv, 6, c.cseq, c.sseq, ack, nil)
}

// DNS writes a query for name and an answer with the given addresses.
func (w *Writer) DNS(client, server netip.AddrPort, id uint16, name string, answers ...netip.Addr) error {
	q, a := DNSExchange(id, name, answers...)
	if err := w.UDP(client, server, q); err != nil {
		return err
	}
	return w.UDP(server, client, a)
}

// DNSExchange builds an A query and its answer.
func DNSExchange(id uint16, name string, answers ...netip.Addr) (query, answer []byte) {
	qn := dnsmessage.MustNewName(name + ".")
	question := dnsmessage.Question{Name: qn, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(question)
	query, _ = b.Finish()
	b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RecursionDesired: true, RecursionAvailable: true})
	_ = b.StartQuestions()
	_ = b.Question(question)
	_ = b.StartAnswers()
	for _, a := range answers {
		_ = b.AResource(dnsmessage.ResourceHeader{Name: qn, Class: dnsmessage.ClassINET, TTL: 300}, dnsmessage.AResource{A: a.As4()})
	}
	answer, _ = b.Finish()
	return query, answer
}
