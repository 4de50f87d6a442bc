// Package pcap turns pcap and pcapng captures into flows: it decodes link, IP,
// TCP and UDP headers, puts TCP streams back in order, parses HTTP/1.x, DNS,
// TLS hellos and QUIC Initial packets, and emits one flow per HTTP exchange,
// DNS lookup or undecrypted connection. It streams: memory is bounded by the
// connections open at once, not by the size of the file.
package pcap

import (
	"errors"
	"fmt"
	"io"
	"time"

	"phonehome/internal/flow"
)

// Options bound what the reader keeps.
type Options struct {
	MaxBody       int           // bytes of each body kept for analysis (default 1 MiB)
	MaxOutOfOrder int           // bytes held per direction waiting for a gap to fill (default 1 MiB)
	IdleTimeout   time.Duration // a connection silent this long (capture time) is closed (default 5 min)
	MaxConns      int           // connections tracked at once; the least recently active is closed first (default 100,000)
	// ReuseBodies lets the reader recycle body buffers once emit returns. Set it
	// only when the consumer copies whatever it keeps of Body.Data.
	ReuseBodies bool
}

func (o *Options) defaults() {
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.MaxOutOfOrder <= 0 {
		o.MaxOutOfOrder = 1 << 20
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 100_000
	}
}

// Stats counts what the reader saw and what it could not use.
type Stats struct {
	Packets       int
	Bytes         int64
	NotIP         int   // ARP, LLDP and other non-IP frames
	Fragments     int   // IP fragments (not reassembled)
	OtherProto    int   // ICMP and other non-TCP/UDP protocols
	Malformed     int   // packets whose headers did not parse
	OtherUDP      int   // UDP that is neither DNS nor QUIC
	Retransmitted int   // TCP segments seen again
	Gaps          int   // places where TCP bytes were missing
	MissingBytes  int64 // TCP bytes never captured
	SnapTruncated int   // packets cut short by the capture's snap length
	Flows         int
}

var errBadHost = errors.New("bad host")

// Read reads a pcap or pcapng stream and calls emit for every flow, in the order
// flows complete. name is used as each flow's Source. On a truncated or corrupt
// file it emits every flow read up to the damage, then returns a *FormatError.
func Read(r io.Reader, name string, opts Options, emit func(*flow.Flow)) (Stats, error) {
	opts.defaults()
	fr, err := newFileReader(r)
	if err != nil {
		return Stats{}, err
	}
	a := NewAssembler(name, opts, emit)
	var rec record
	for {
		err = fr.next(&rec)
		if err != nil {
			break
		}
		a.Packet(rec.link, rec.ts, rec.data)
	}
	a.Close()
	if err == io.EOF {
		err = nil
	}
	return a.stats, err
}

// Assembler turns packets into flows. It is not safe for concurrent use.
type Assembler struct {
	source  string
	opts    Options
	emitFn  func(*flow.Flow)
	conns   map[connKey]*conn
	head    *conn // least recently active
	tail    *conn
	dns     dnsTracker
	lanSeen lanTracker
	stats   Stats
	now     time.Time
	pkt     packet
	pool    *bufPool // nil unless Options.ReuseBodies
}

// NewAssembler returns an assembler that names flows after source.
func NewAssembler(source string, opts Options, emit func(*flow.Flow)) *Assembler {
	opts.defaults()
	a := &Assembler{source: source, opts: opts, emitFn: emit, conns: make(map[connKey]*conn)}
	if opts.ReuseBodies {
		a.pool = &bufPool{}
	}
	a.dns.init()
	return a
}

func (a *Assembler) emit(f *flow.Flow) {
	a.stats.Flows++
	f.Source = a.source
	f.Seq = a.stats.Flows
	a.emitFn(f)
	if a.pool != nil {
		if f.Request != nil {
			a.pool.put(f.Request.Body.Data)
		}
		if f.Response != nil {
			a.pool.put(f.Response.Body.Data)
		}
	}
}

// Packet processes one captured frame of the given link type.
func (a *Assembler) Packet(link uint32, ts time.Time, data []byte) {
	a.stats.Packets++
	a.stats.Bytes += int64(len(data))
	if ts.After(a.now) {
		a.now = ts
	}
	p := &a.pkt
	switch decode(link, data, p) {
	case decNotIP:
		a.stats.NotIP++
		return
	case decFragment:
		a.stats.Fragments++
		return
	case decOtherProto:
		a.stats.OtherProto++
		return
	case decMalformed:
		a.stats.Malformed++
		return
	}
	if p.proto == 17 {
		a.udp(p, ts)
	} else {
		a.tcp(p, ts)
	}
	if a.stats.Packets&1023 == 0 {
		a.expire()
	}
}

func (a *Assembler) tcp(p *packet, ts time.Time) {
	key, srcFirst := makeKey(p)
	c := a.conns[key]
	if c == nil {
		if p.flags&tcpRST != 0 || (len(p.payload) == 0 && p.flags&tcpSYN == 0) {
			return // a reset or bare ACK of something we never saw
		}
		c = a.newConn(key, p, srcFirst, ts)
	} else if p.flags&tcpSYN != 0 && p.flags&tcpACK == 0 && c.sawSYN && c.dir[0].started && p.seq+1 != c.dir[0].next {
		// The same ports reused for a new connection.
		a.closeConn(c)
		c = a.newConn(key, p, srcFirst, ts)
	}
	a.touch(c, ts)
	d := 0
	if c.clientIsA != srcFirst {
		d = 1
	}
	c.tcp(p, d, ts)
	if p.flags&tcpRST != 0 || (c.dir[0].fin && c.dir[1].fin) {
		a.closeConn(c)
	}
}

func (a *Assembler) newConn(key connKey, p *packet, srcFirst bool, ts time.Time) *conn {
	if len(a.conns) >= a.opts.MaxConns {
		a.closeConn(a.head)
	}
	c := &conn{a: a, key: key, start: ts, last: ts}
	c.orient(p, srcFirst)
	a.conns[key] = c
	return c
}

// touch moves c to the most recently active end of the idle list.
func (a *Assembler) touch(c *conn, ts time.Time) {
	c.last = ts
	if a.tail == c {
		return
	}
	if c.prev != nil || a.head == c {
		a.unlink(c)
	}
	c.prev, c.next = a.tail, nil
	if a.tail != nil {
		a.tail.next = c
	} else {
		a.head = c
	}
	a.tail = c
}

func (a *Assembler) unlink(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		a.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		a.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

func (a *Assembler) closeConn(c *conn) {
	if c == nil {
		return
	}
	a.unlink(c)
	delete(a.conns, c.key)
	c.finish()
}

// expire closes connections idle for longer than the timeout, in capture time.
func (a *Assembler) expire() {
	limit := a.now.Add(-a.opts.IdleTimeout)
	for a.head != nil && a.head.last.Before(limit) {
		a.closeConn(a.head)
	}
	a.dns.expire(a, limit)
}

// Close flushes every open connection and unanswered query as flows.
func (a *Assembler) Close() {
	for a.head != nil {
		a.closeConn(a.head)
	}
	a.dns.flush(a)
}

// Stats returns the counters so far.
func (a *Assembler) Stats() Stats { return a.stats }

func (a *Assembler) udp(p *packet, ts time.Time) {
	switch {
	case p.sport == 53 || p.dport == 53:
		a.dns.packet(a, p, ts)
	case lanPort(p):
		a.lan(p, ts)
	case p.dport == 443 || p.sport == 443:
		a.quic(p, ts)
	default:
		a.stats.OtherUDP++
	}
}

func (s Stats) String() string {
	return fmt.Sprintf("%d packets, %d flows, %d TCP bytes missing in %d gaps, %d retransmitted, %d malformed",
		s.Packets, s.Flows, s.MissingBytes, s.Gaps, s.Retransmitted, s.Malformed)
}
