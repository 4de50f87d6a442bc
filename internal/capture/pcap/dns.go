package pcap

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"phonehome/internal/flow"
)

// dnsKey matches an answer to its query: client, server and query ID.
type dnsKey struct {
	client, server netip.AddrPort
	id             uint16
}

type pendingQuery struct {
	f  *flow.Flow
	at time.Time
}

// dnsTracker pairs queries with answers and remembers which name each address
// was looked up under, so encrypted flows to an address can be named.
type dnsTracker struct {
	pending map[dnsKey]*pendingQuery
	fifo    []dnsKey
	names   map[netip.Addr]string
}

const maxNames = 1 << 20

func (t *dnsTracker) init() {
	t.pending = make(map[dnsKey]*pendingQuery)
	t.names = make(map[netip.Addr]string)
}

// name returns the DNS name an address was last resolved from, or "".
func (t *dnsTracker) name(a netip.Addr) string { return t.names[a] }

func (t *dnsTracker) packet(a *Assembler, p *packet, ts time.Time) {
	src := netip.AddrPortFrom(addrOf(p.src), p.sport)
	dst := netip.AddrPortFrom(addrOf(p.dst), p.dport)
	if p.sport == 53 && p.dport != 53 {
		t.message(a, dst, src, p.payload, ts)
	} else {
		t.message(a, src, dst, p.payload, ts)
	}
}

// message handles one DNS message; client and server are as guessed from ports
// and corrected by the QR bit.
func (t *dnsTracker) message(a *Assembler, client, server netip.AddrPort, msg []byte, ts time.Time) {
	var pr dnsmessage.Parser
	h, err := pr.Start(msg)
	if err != nil {
		a.stats.Malformed++
		return
	}
	if h.Response && client.Port() == 53 && server.Port() != 53 {
		client, server = server, client
	}
	q, err := pr.Question()
	if err != nil {
		if h.Response {
			return
		}
		a.stats.Malformed++
		return
	}
	qname := strings.TrimSuffix(q.Name.String(), ".")
	key := dnsKey{client, server, h.ID}
	if !h.Response {
		if _, dup := t.pending[key]; dup {
			return // a retransmitted query
		}
		f := &flow.Flow{
			Start: ts, End: ts,
			Client:    flow.Endpoint{Addr: client.Addr(), Port: client.Port()},
			Server:    flow.Endpoint{Addr: server.Addr(), Port: server.Port()},
			Transport: flow.TransportDNS,
			DNS:       &flow.DNS{ID: h.ID, Name: qname, Type: typeName(q.Type)},
			BytesUp:   int64(len(msg)),
		}
		t.pending[key] = &pendingQuery{f, ts}
		t.fifo = append(t.fifo, key)
		return
	}
	pq := t.pending[key]
	var f *flow.Flow
	if pq != nil {
		delete(t.pending, key)
		f = pq.f
	} else { // an answer whose query was not captured
		f = &flow.Flow{
			Start:     ts,
			Client:    flow.Endpoint{Addr: client.Addr(), Port: client.Port()},
			Server:    flow.Endpoint{Addr: server.Addr(), Port: server.Port()},
			Transport: flow.TransportDNS,
			DNS:       &flow.DNS{ID: h.ID, Name: qname, Type: typeName(q.Type)},
			Notes:     flow.Notes{{Code: flow.NoteUnanswered, Text: "answer without its query"}},
		}
	}
	f.End = ts
	f.BytesDown = int64(len(msg))
	f.DNS.Answered = true
	f.DNS.RCode = rcodeName(h.RCode)
	_ = pr.SkipAllQuestions()
answers:
	for {
		rh, err := pr.AnswerHeader()
		if err != nil {
			break
		}
		switch rh.Type {
		case dnsmessage.TypeA:
			r, err := pr.AResource()
			if err != nil {
				break answers
			}
			t.answer(f, netip.AddrFrom4(r.A), qname)
		case dnsmessage.TypeAAAA:
			r, err := pr.AAAAResource()
			if err != nil {
				break answers
			}
			t.answer(f, netip.AddrFrom16(r.AAAA), qname)
		case dnsmessage.TypeCNAME:
			r, err := pr.CNAMEResource()
			if err != nil {
				break answers
			}
			f.DNS.Answers = append(f.DNS.Answers, strings.TrimSuffix(r.CNAME.String(), "."))
		default:
			if pr.SkipAnswer() != nil {
				break answers
			}
		}
	}
	a.emit(f)
}

func (t *dnsTracker) answer(f *flow.Flow, ip netip.Addr, name string) {
	f.DNS.Answers = append(f.DNS.Answers, ip.String())
	if len(t.names) >= maxNames {
		clear(t.names)
	}
	t.names[ip] = name
}

// expire emits queries that went unanswered for longer than the idle timeout.
func (t *dnsTracker) expire(a *Assembler, limit time.Time) {
	for len(t.fifo) > 0 {
		k := t.fifo[0]
		pq := t.pending[k]
		if pq != nil && !pq.at.Before(limit) {
			return
		}
		t.fifo = t.fifo[1:]
		if pq != nil {
			delete(t.pending, k)
			pq.f.Note(flow.NoteUnanswered, "no answer seen")
			a.emit(pq.f)
		}
	}
	if len(t.fifo) == 0 {
		t.fifo = nil
	}
}

func (t *dnsTracker) flush(a *Assembler) {
	for _, k := range t.fifo {
		if pq := t.pending[k]; pq != nil {
			delete(t.pending, k)
			pq.f.Note(flow.NoteUnanswered, "no answer seen")
			a.emit(pq.f)
		}
	}
	t.fifo = nil
}

// dnsTCP splits a DNS-over-TCP stream into its length-prefixed messages.
func (c *conn) dnsTCP(d int, data []byte, ts time.Time) {
	h := &c.dir[d]
	h.dnsBuf = append(h.dnsBuf, data...)
	for len(h.dnsBuf) >= 2 {
		n := int(binary.BigEndian.Uint16(h.dnsBuf))
		if len(h.dnsBuf) < 2+n {
			return
		}
		c.a.dns.message(c.a, c.client, c.server, h.dnsBuf[2:2+n], ts)
		h.dnsBuf = h.dnsBuf[2+n:]
	}
	if len(h.dnsBuf) == 0 {
		h.dnsBuf = nil
	}
}

func typeName(t dnsmessage.Type) string {
	return strings.TrimPrefix(t.String(), "Type")
}

func rcodeName(r dnsmessage.RCode) string {
	return strings.ToUpper(strings.TrimPrefix(r.String(), "RCode"))
}
