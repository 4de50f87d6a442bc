package pcap

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"phonehome/internal/capture/hello"
	"phonehome/internal/flow"
)

// connKey names a TCP or UDP conversation independent of direction: the two
// endpoints in byte order, each as a 16-byte address and a port.
type connKey [36]byte

func makeKey(p *packet) (k connKey, srcFirst bool) {
	a, b := p.src, p.dst
	ap, bp := p.sport, p.dport
	srcFirst = true
	if cmpEndpoint(a, ap, b, bp) > 0 {
		a, b, ap, bp = b, a, bp, ap
		srcFirst = false
	}
	copy(k[:16], a[:])
	k[16], k[17] = byte(ap>>8), byte(ap)
	copy(k[18:34], b[:])
	k[34], k[35] = byte(bp>>8), byte(bp)
	return k, srcFirst
}

func cmpEndpoint(a [16]byte, ap uint16, b [16]byte, bp uint16) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return int(ap) - int(bp)
}

func addrOf(b [16]byte) netip.Addr { return netip.AddrFrom16(b).Unmap() }

type connProto uint8

const (
	protoUnknown connProto = iota
	protoHTTP
	protoTLS
	protoDNS
	protoOther
	protoQUIC
)

// segment is out-of-order data waiting for the bytes before it.
type segment struct {
	seq  uint32
	data []byte
}

// half is one direction of a TCP connection being put back in order.
type half struct {
	started bool
	next    uint32 // next expected sequence number
	pending []segment
	pendLen int
	fin     bool
	bytes   int64 // in-order application bytes delivered
	hello   []byte
	http    httpHalf
	dnsBuf  []byte
}

// conn is one TCP connection (or a UDP/QUIC conversation) in progress.
type conn struct {
	a          *Assembler
	key        connKey
	client     netip.AddrPort
	server     netip.AddrPort
	clientIsA  bool    // the client is the first endpoint of the key
	dir        [2]half // [0] client→server, [1] server→client
	proto      connProto
	sawSYN     bool
	start      time.Time
	last       time.Time
	prev, next *conn // idle list, least recently active first
	tls        *flow.TLSInfo
	helloDone  [2]bool
	notes      flow.Notes
	queue      []*exchange // requests waiting for their response, oldest first
	resp       *exchange   // the exchange whose response is being read
	emitted    int
	missing    int64
	quic       *quicState
}

// exchange is one request and its response on an HTTP connection.
type exchange struct {
	req        *flow.Request
	resp       *flow.Response
	reqDone    bool
	start, end time.Time
	up, down   int64
}

var serverPorts = map[uint16]bool{80: true, 443: true, 53: true, 8080: true, 8443: true, 8000: true, 8888: true, 5228: true, 853: true, 3128: true, 993: true, 995: true, 465: true, 587: true, 25: true, 22: true, 5223: true}

// orient decides which endpoint is the client when no SYN was seen.
func (c *conn) orient(p *packet, srcFirst bool) {
	switch {
	case p.flags&(tcpSYN|tcpACK) == tcpSYN:
		c.clientIsA = srcFirst
	case p.flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK:
		c.clientIsA = !srcFirst
	case serverPorts[p.dport] && !serverPorts[p.sport]:
		c.clientIsA = srcFirst
	case serverPorts[p.sport] && !serverPorts[p.dport]:
		c.clientIsA = !srcFirst
	default: // the lower port is the server
		c.clientIsA = (p.sport > p.dport) == srcFirst
	}
	src := netip.AddrPortFrom(addrOf(p.src), p.sport)
	dst := netip.AddrPortFrom(addrOf(p.dst), p.dport)
	if c.clientIsA == srcFirst {
		c.client, c.server = src, dst
	} else {
		c.client, c.server = dst, src
	}
}

func (c *conn) note(code flow.NoteCode, s string) {
	if len(c.notes) < 8 {
		c.notes = append(c.notes, flow.Note{Code: code, Text: s})
	}
}

// tcp handles one TCP segment in direction d.
func (c *conn) tcp(p *packet, d int, ts time.Time) {
	h := &c.dir[d]
	if p.flags&tcpSYN != 0 {
		c.sawSYN = true
		h.started, h.next = true, p.seq+1
	}
	data := p.payload
	seq := p.seq
	if p.flags&tcpSYN != 0 {
		seq++
	}
	if len(data) > 0 {
		if !h.started {
			h.started, h.next = true, seq
		}
		diff := int32(seq - h.next)
		switch {
		case diff == 0:
			c.deliver(d, data, ts)
			if p.short > 0 { // the snap length cut this segment: exactly p.short bytes are lost
				h.next += uint32(p.short)
				c.lost(d, int64(p.short))
			}
			c.drain(d, ts)
		case diff < 0:
			c.a.stats.Retransmitted++
			if rest, ok := after(data, diff); ok {
				c.deliver(d, rest, ts)
				c.drain(d, ts)
			}
		default:
			c.hold(d, seq, data, ts)
		}
	}
	if p.short > 0 {
		c.a.stats.SnapTruncated++
	}
	if p.flags&tcpFIN != 0 {
		h.fin = true
	}
}

// deliver passes in-order bytes to the protocol parser.
func (c *conn) deliver(d int, data []byte, ts time.Time) {
	h := &c.dir[d]
	h.next += uint32(len(data))
	h.bytes += int64(len(data))
	c.last = ts
	if c.proto == protoUnknown {
		// Decide the protocol on enough bytes: a stream cut into tiny
		// segments would otherwise be misjudged on its first byte.
		if len(h.hello) > 0 || len(data) < sniffLen {
			h.hello = append(h.hello, data...)
			if len(h.hello) < sniffLen && couldStartHTTP(h.hello) {
				return
			}
			data, h.hello = h.hello, nil
		}
		c.sniff(d, data)
		if o := &c.dir[1-d]; c.proto == protoHTTP && len(o.hello) > 0 {
			// The other side's first bytes waited for the decision too.
			o.http.feed(o.hello)
			o.hello = nil
		}
	}
	switch c.proto {
	case protoHTTP:
		if c.resp != nil && d == 1 {
			c.resp.end = ts
		}
		h.http.feed(data)
	case protoTLS:
		if !c.helloDone[d] {
			c.readHello(d, data)
		}
	case protoDNS:
		c.dnsTCP(d, data, ts)
	}
}

const sniffLen = 8

// couldStartHTTP reports whether b is a prefix of a request or status line.
func couldStartHTTP(b []byte) bool {
	for _, m := range methods {
		if strings.HasPrefix(m+" ", string(b)) {
			return true
		}
	}
	return strings.HasPrefix("HTTP/1.", string(b)) || hello.LooksLikeTLS(b) || len(b) < 3 && b[0] == 22
}

func (c *conn) sniff(d int, data []byte) {
	switch {
	case d == 0 && looksLikeRequest(data), d == 1 && looksLikeResponse(data):
		c.proto = protoHTTP
		for i := range c.dir {
			c.dir[i].http = httpHalf{isResp: i == 1, maxBody: c.a.opts.MaxBody, c: c}
		}
		if d == 1 {
			c.note(flow.NoteCaptureGap, "capture began mid-connection: response without its request")
		}
	case hello.LooksLikeTLS(data):
		c.proto = protoTLS
		c.tls = &flow.TLSInfo{}
	case c.server.Port() == 53:
		c.proto = protoDNS
	default:
		c.proto = protoOther
	}
}

// hold keeps an out-of-order segment; when too much is waiting, the bytes
// before the first held segment are declared lost.
func (c *conn) hold(d int, seq uint32, data []byte, ts time.Time) {
	h := &c.dir[d]
	for _, s := range h.pending {
		if s.seq == seq && len(s.data) >= len(data) {
			c.a.stats.Retransmitted++
			return
		}
	}
	h.pending = append(h.pending, segment{seq, append([]byte(nil), data...)})
	h.pendLen += len(data)
	sort.Slice(h.pending, func(i, j int) bool { return int32(h.pending[i].seq-h.pending[j].seq) < 0 })
	if h.pendLen > c.a.opts.MaxOutOfOrder {
		c.skipGap(d, ts)
	}
}

// drain delivers held segments that have become in order.
func (c *conn) drain(d int, ts time.Time) {
	h := &c.dir[d]
	for len(h.pending) > 0 {
		s := h.pending[0]
		diff := int32(s.seq - h.next)
		if diff > 0 {
			return
		}
		h.pending = h.pending[1:]
		h.pendLen -= len(s.data)
		if rest, ok := after(s.data, diff); ok {
			c.deliver(d, rest, ts)
		}
	}
	h.pending = nil
}

// after is what data, starting -diff bytes before the next expected byte
// (diff <= 0), holds that is new; false when it holds nothing new. diff is
// widened first: negating the most negative int32 gives itself.
func after(data []byte, diff int32) ([]byte, bool) {
	back := -int64(diff)
	if back >= int64(len(data)) {
		return nil, false
	}
	return data[back:], true
}

// skipGap gives up on the missing bytes before the first held segment.
func (c *conn) skipGap(d int, ts time.Time) {
	h := &c.dir[d]
	if len(h.pending) == 0 {
		return
	}
	c.lost(d, int64(uint32(h.pending[0].seq-h.next)))
	h.next = h.pending[0].seq
	c.drain(d, ts)
}

// lost accounts for n bytes of direction d that the capture does not have.
func (c *conn) lost(d int, n int64) {
	c.a.stats.MissingBytes += n
	c.a.stats.Gaps++
	c.missing += n
	if c.missing == n { // one note per connection is enough; the total is in the stats
		dirName := "client→server"
		if d == 1 {
			dirName = "server→client"
		}
		c.note(flow.NoteCaptureGap, "bytes missing from the capture ("+dirName+"), first gap "+strconv.FormatInt(n, 10)+" bytes")
	}
	if c.proto == protoHTTP {
		c.dir[d].http.gap(n)
	}
}

// finish flushes what is held and emits what the connection still owes.
func (c *conn) finish() {
	for d := range c.dir {
		for len(c.dir[d].pending) > 0 {
			c.skipGap(d, c.last)
		}
	}
	switch c.proto {
	case protoHTTP:
		c.dir[0].http.close()
		c.dir[1].http.close()
		for _, ex := range c.queue {
			if ex.req != nil {
				c.emitExchange(ex, "no response seen")
			}
		}
		c.queue = nil
		if c.resp != nil {
			c.emitExchange(c.resp, "")
			c.resp = nil
		}
		if c.emitted == 0 && c.dir[0].bytes+c.dir[1].bytes > 0 {
			c.emitConn(flow.TransportTCP)
		}
	case protoTLS:
		c.emitConn(flow.TransportTLS)
	case protoOther:
		c.emitConn(flow.TransportTCP)
	case protoUnknown:
		if c.dir[0].bytes+c.dir[1].bytes > 0 {
			c.emitConn(flow.TransportTCP)
		}
	case protoQUIC:
		c.emitConn(flow.TransportQUIC)
	}
}

func (c *conn) emitConn(t flow.Transport) {
	f := c.newFlow(t, c.start, c.last)
	f.BytesUp, f.BytesDown = c.dir[0].bytes, c.dir[1].bytes
	f.TLS = c.tls
	if c.tls != nil && c.tls.SNI != "" {
		f.Host = c.tls.SNI
	}
	c.a.emit(f)
}

func (c *conn) newFlow(t flow.Transport, start, end time.Time) *flow.Flow {
	f := &flow.Flow{
		Start:     start,
		End:       end,
		Client:    flow.Endpoint{Addr: c.client.Addr(), Port: c.client.Port()},
		Server:    flow.Endpoint{Addr: c.server.Addr(), Port: c.server.Port()},
		Transport: t,
		Host:      c.a.dns.name(c.server.Addr()),
	}
	if len(c.notes) > 0 {
		f.Notes = append(flow.Notes(nil), c.notes...)
		c.notes = c.notes[:0]
	}
	c.emitted++
	return f
}

// requestStarted is called by the client half when a request's headers are complete.
func (c *conn) requestStarted(m *httpMsg) {
	ex := &exchange{req: m.req, start: c.last, end: c.last}
	c.queue = append(c.queue, ex)
}

func (c *conn) requestDone(m *httpMsg) {
	for _, ex := range c.queue {
		if ex.req == m.req {
			ex.reqDone, ex.up = true, m.bytes
			return
		}
	}
	if c.resp != nil && c.resp.req == m.req {
		c.resp.reqDone, c.resp.up = true, m.bytes
	}
}

// responseStarted pairs a response with the oldest waiting request and returns
// that request's method ("" when there was none).
func (c *conn) responseStarted(m *httpMsg) string {
	if c.resp != nil { // previous response never finished: emit what we have
		c.emitExchange(c.resp, "")
	}
	if len(c.queue) > 0 {
		c.resp = c.queue[0]
		c.queue = c.queue[1:]
	} else {
		c.resp = &exchange{start: c.last}
	}
	c.resp.resp, c.resp.end = m.resp, c.last
	if c.resp.req == nil {
		return ""
	}
	return c.resp.req.Method
}

func (c *conn) responseDone(m *httpMsg) {
	if c.resp == nil || c.resp.resp != m.resp {
		return
	}
	c.resp.down, c.resp.end = m.bytes, c.last
	ex := c.resp
	c.resp = nil
	c.emitExchange(ex, "")
}

func (c *conn) emitExchange(ex *exchange, note string) {
	if note != "" {
		c.note(flow.NoteUnanswered, note)
	}
	if ex.req != nil && !ex.reqDone && ex.resp != nil {
		ex.req.Body.Incomplete = true
	}
	if ex.req == nil && ex.resp == nil {
		return
	}
	f := c.newFlow(flow.TransportHTTP, ex.start, ex.end)
	f.Request, f.Response = ex.req, ex.resp
	f.BytesUp, f.BytesDown = ex.up, ex.down
	if ex.req != nil {
		if host := hostOnly(ex.req.Headers.Get("Host")); host != "" {
			f.Host = host
		}
		if ex.up == 0 {
			f.BytesUp = int64(len(ex.req.Body.Data))
		}
	}
	if ex.resp != nil && ex.down == 0 {
		f.BytesDown = ex.resp.Body.Size
	}
	c.a.emit(f)
}

// tunnel stops HTTP parsing after CONNECT or an upgrade; the bytes are counted.
func (c *conn) tunnel(connect bool) {
	c.dir[0].http.st = stTunnel
	c.dir[1].http.st = stTunnel
	if connect { // a TLS tunnel through a proxy: read its hello for the name
		c.proto = protoUnknown
	}
}

func (c *conn) absoluteURL(target, host string) string {
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		return target
	}
	if host == "" {
		host = c.server.Addr().String()
		if c.server.Addr().Is6() {
			host = "[" + host + "]"
		}
		if c.server.Port() != 80 {
			host += ":" + strconv.Itoa(int(c.server.Port()))
		}
	}
	if target == "*" || (!strings.HasPrefix(target, "/") && strings.Contains(target, ":")) {
		return "http://" + host // OPTIONS * or a CONNECT authority
	}
	return "http://" + host + target
}

func hostOnly(hostport string) string {
	if hostport == "" {
		return ""
	}
	if h, _, err := splitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func splitHostPort(s string) (string, string, error) {
	if strings.HasPrefix(s, "[") {
		i := strings.IndexByte(s, ']')
		if i < 0 {
			return "", "", errBadHost
		}
		rest := s[i+1:]
		return s[1:i], strings.TrimPrefix(rest, ":"), nil
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && strings.Count(s, ":") == 1 {
		return s[:i], s[i+1:], nil
	}
	return s, "", nil
}

// readHello buffers the first bytes of each direction of a TLS connection
// until the hello is complete.
func (c *conn) readHello(d int, data []byte) {
	h := &c.dir[d]
	var buf []byte
	if len(h.hello) == 0 {
		buf = data
	} else {
		h.hello = append(h.hello, data...)
		buf = h.hello
	}
	var err error
	if d == 0 {
		var ch hello.ClientHello
		if ch, err = hello.ParseClientHelloRecords(buf); err == nil {
			c.tls.SNI, c.tls.ALPN = ch.SNI, ch.ALPN
		}
	} else {
		var sh hello.ServerHello
		if sh, err = hello.ParseServerHelloRecords(buf); err == nil {
			c.tls.Version = hello.VersionName(sh.Version)
			if sh.ALPN != "" {
				c.tls.ALPN = []string{sh.ALPN}
			}
		}
	}
	if err == hello.ErrNeedMore && len(buf) < hello.MaxHandshake {
		if len(h.hello) == 0 {
			h.hello = append(h.hello, data...)
		}
		return
	}
	if err != nil && err != hello.ErrNeedMore {
		c.note(flow.NoteMalformed, "TLS hello unreadable: "+err.Error())
	}
	c.helloDone[d] = true
	h.hello = nil
}
