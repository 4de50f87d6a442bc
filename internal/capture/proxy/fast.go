package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"phonehome/internal/flow"
)

// Most requests a device makes are plain: an HTTP/1.1 head that arrives in
// one piece, no body or a Content-Length one, and an answer of known length.
// Those are served here straight from the connections' buffers: the head is
// parsed once (names and values keep their case and order, as sent), written
// on to the server without the hop-by-hop headers, and the answer's bytes go
// back as they came. Anything else — chunked or close-delimited bodies,
// upgrades, Expect, obsolete line folding, a head split across reads,
// interim answers, HTTP/1.0 — is left to net/http's parser on the general
// path, which reads from the same buffers. The checks are strict on purpose:
// what this parser accepts, net/http would read the same way.

// wireHead is a parsed HTTP/1.1 request or response head.
type wireHead struct {
	first   [3]string // method, target, version; or version, status, reason
	headers flow.Headers
	length  int64  // Content-Length, -1 when absent
	host    string // the Host header
	hasHost bool
	close   bool     // Connection: close
	drop    []string // headers named in Connection, not forwarded
	size    int      // bytes of the head, with its blank line
}

// bufferedHead returns the head at the start of br's buffer, after waiting
// for the first bytes if there are none: ok is false when the head is not
// all there yet (the general path then reads it).
func bufferedHead(br *bufio.Reader) (head []byte, ok bool, err error) {
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			return nil, false, err
		}
	}
	b, _ := br.Peek(br.Buffered())
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, false, nil
	}
	return b[:end+4], true, nil
}

// parseHead fills h from a head ending in CRLF CRLF; false means it is not a
// plain one.
func parseHead(b []byte, h *wireHead) bool {
	s := string(b) // one allocation: every name and value is a part of it
	h.size = len(s)
	h.length = -1
	line, rest, _ := strings.Cut(s, "\r\n")
	a, bc, ok := strings.Cut(line, " ")
	if !ok {
		return false
	}
	b2, c, _ := strings.Cut(bc, " ")
	h.first = [3]string{a, b2, c}
	for _, ch := range []byte(line) {
		if ch < 0x20 || ch == 0x7f {
			return false
		}
	}
	h.headers = make(flow.Headers, 0, 12)
	for {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !isToken(name) {
			return false // includes obsolete folding (a line starting with a space)
		}
		value = strings.Trim(value, " \t")
		for i := 0; i < len(value); i++ {
			if ch := value[i]; ch < 0x20 && ch != '\t' || ch == 0x7f {
				return false
			}
		}
		switch {
		case strings.EqualFold(name, "Content-Length"):
			if h.length >= 0 || len(value) == 0 || len(value) > 18 {
				return false
			}
			for i := 0; i < len(value); i++ {
				if value[i] < '0' || value[i] > '9' {
					return false
				}
			}
			h.length, _ = strconv.ParseInt(value, 10, 64)
		case strings.EqualFold(name, "Host"):
			if h.hasHost {
				return false
			}
			h.host, h.hasHost = value, true
		case strings.EqualFold(name, "Connection"):
			for _, tok := range strings.Split(value, ",") {
				tok = strings.TrimSpace(tok)
				switch {
				case strings.EqualFold(tok, "close"):
					h.close = true
				case strings.EqualFold(tok, "upgrade"):
					return false
				case tok != "" && !strings.EqualFold(tok, "keep-alive"):
					h.drop = append(h.drop, tok)
				}
			}
		case strings.EqualFold(name, "Transfer-Encoding"), strings.EqualFold(name, "Upgrade"), strings.EqualFold(name, "Expect"):
			return false
		}
		h.headers = append(h.headers, flow.Header{Name: name, Value: value})
	}
	return true
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// hop reports whether a header is for this connection only.
func (h *wireHead) hop(name string) bool {
	for _, k := range hopHeaders {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	for _, k := range h.drop {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}

// writeHeaders writes the end-to-end headers and the blank line.
func (h *wireHead) writeHeaders(w *bufio.Writer, skipHost bool) {
	for _, x := range h.headers {
		if skipHost && strings.EqualFold(x.Name, "Host") || h.hop(x.Name) {
			continue
		}
		w.WriteString(x.Name)
		w.WriteString(": ")
		w.WriteString(x.Value)
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
}

// clientConn is the client side of an HTTP/1 connection the proxy serves.
type clientConn struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string
	scheme string // http, or https inside a decrypted tunnel
	// authority is the server a tunnel leads to (host, with the port unless
	// it is the scheme's default); "" on the explicit proxy, whose requests
	// name their server, and for transparent HTTP, named by its Host header.
	authority string
	explicit  bool       // requests must be in absolute form
	tc        *timedConn // under conn (and its TLS): its read stall bounds idle waits and bodies
	lim       *headLimit // between conn and br: bounds a head read by net/http's parser
	first     bool       // no request was read yet: the first head has its own deadline
	headBy    time.Time  // when the head being read is due (zero: no bound)
	idle      time.Duration
}

// stallReads bounds each read of the client's connection to d.
func (c *clientConn) stallReads(d time.Duration) {
	if c.tc != nil {
		c.tc.stallReads(d)
	}
}

// headDone is called once a request's head is read: what comes of its
// body is bounded by IdleTimeout (per read), and the answer gets a writer.
func (c *clientConn) headDone() {
	c.stallReads(c.idle)
	if c.bw == nil {
		c.bw = getWriter(c.conn)
	}
}

// releaseWriter gives the writer back between requests (an idle
// keep-alive client holds only its reader).
func (c *clientConn) releaseWriter() {
	if c.bw != nil && c.bw.Buffered() == 0 {
		putWriter(c.bw)
		c.bw = nil
	}
}

var methods = []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}

// serveFast serves one request if it is a plain one. handled is false when
// nothing was consumed and the general path must read the request; keep is
// false when the client connection is to be closed.
func (p *Proxy) serveFast(ctx context.Context, c *clientConn) (handled, keep bool) {
	b, ok, err := bufferedHead(c.br)
	if err != nil {
		return true, false // the client went away, or stayed idle too long
	}
	var h wireHead
	if !ok || len(b) > p.opts.MaxHeaderBytes || !parseHead(b, &h) || h.first[2] != "HTTP/1.1" || !simpleMethod(h.first[0]) {
		return false, true
	}
	method, target := h.first[0], h.first[1]
	authority, path, ok := splitTarget(target, c.explicit)
	if !ok {
		return false, true
	}
	if authority == "" {
		authority = c.authority
		if authority == "" {
			authority = h.host
		}
	}
	host, port, ok := splitAuthority(authority)
	if !ok || ownHost(host) {
		return false, true
	}
	if port == "" {
		port = "80"
		if c.scheme == "https" {
			port = "443"
		}
	}
	if !p.allowed(c.remote) {
		return false, true // the general path answers with the reason
	}
	c.br.Discard(h.size)
	c.headDone()

	f := &flow.Flow{Start: p.opts.Now(), Host: host, Transport: flow.TransportHTTP, Client: endpoint(c.remote), Device: p.device(c.remote)}
	if c.scheme == "https" {
		f.Transport = flow.TransportHTTPS
		f.TLS = &flow.TLSInfo{SNI: host, Decrypted: true}
	}
	url := target
	if !c.explicit {
		url = c.scheme + "://" + authority + path
	}
	f.Request = &flow.Request{Method: method, URL: url, Proto: "HTTP/1.1", Headers: h.headers}

	hostHeader := authority
	if !c.explicit && h.hasHost {
		hostHeader = h.host
	}
	writeHead := func(w *bufio.Writer) {
		w.WriteString(method)
		w.WriteString(" ")
		w.WriteString(path)
		w.WriteString(" HTTP/1.1\r\nHost: ")
		w.WriteString(hostHeader)
		w.WriteString("\r\n")
		h.writeHeaders(w, true)
	}
	var reqBody capped
	reqBody.max = p.opts.MaxBody

	// the decision, before anything goes upstream: on the head alone, or on
	// the first bytes of the body when the policy asks for them
	var prefix []byte
	whole := h.length <= 0
	if h.length > 0 {
		if n := min(p.opts.Handler.RequestBody(f), p.opts.MaxBody); n > 0 {
			prefix = make([]byte, min(int64(n), h.length))
			c.conn.SetReadDeadline(time.Now().Add(decisionWait))
			_, err := io.ReadFull(c.br, prefix)
			c.headDone() // back to the stall bound for the rest of the body
			if err != nil {
				f.Request.Body = flow.Body{Size: int64(len(prefix)), Incomplete: true}
				f.Note(flow.NoteMalformed, "the client did not send the request body it announced: "+err.Error())
				f.End = p.opts.Now()
				p.emit(f)
				return true, false
			}
			whole = int64(len(prefix)) == h.length
			f.Request.Body = flow.Body{Data: prefix, Size: int64(len(prefix)), Truncated: !whole}
		}
	}
	v, red := requestVerdict(ctx, p.opts.Handler, f)
	f.Verdict = v // what was done, whatever the handler recorded
	if v.Action == flow.ActionBlock {
		return true, p.blockFast(c, f, v, h, prefix)
	}
	// what is sent of the body: the bytes read for the decision, then the rest
	// as it comes; or the policy's copy of a body read whole
	bodyLen, sent := h.length, prefix
	if red != nil {
		var changed bool
		writeHead, changed = p.redactedHead(f, red, h, prefix, whole)
		if changed {
			bodyLen, sent = int64(len(red.Body.Data)), red.Body.Data
		}
	}
	rest := bodyLen - int64(len(sent))
	reqBody.add(prefix) // the record keeps what the client sent
	sendBody := func(w *bufio.Writer) error {
		w.Write(sent)
		if rest > 0 {
			return copyN(w, c.br, rest, &reqBody)
		}
		return nil
	}

	var up *upConn
	for attempt := 0; ; attempt++ {
		up, err = p.connFor(ctx, c.scheme, host, port)
		if err == nil {
			err = p.send(ctx, up, writeHead, sendBody)
		}
		if err == nil {
			break
		}
		if up != nil {
			up.conn.Close()
		}
		if up == nil || up.fresh || bodyLen > 0 || attempt > 0 || !isStale(err) {
			f.Request.Body = reqBody.body()
			f.BytesUp = reqBody.size
			w := newResponseWriter(c.conn, c.br, c.bw, method)
			p.upstreamFailed(w, f, authority, err)
			// a request body not read to its end leaves the client's stream unusable
			return true, w.finish() == nil && !h.close && (rest <= 0 || reqBody.size == max(bodyLen, 0))
		}
	}
	f.Request.Body = reqBody.body()
	f.BytesUp = reqBody.size
	keep = p.answer(c, up, f, method)
	return true, keep && !h.close
}

// blockFast answers a blocked request on phonehome's behalf, without
// contacting the server; it returns whether the client connection can serve
// another request (its body, if any, was read to its end).
func (p *Proxy) blockFast(c *clientConn, f *flow.Flow, v flow.Verdict, h wireHead, prefix []byte) bool {
	status, msg := blockStatus(v), blockMessage(v)
	left := max(h.length, 0) - int64(len(prefix))
	var rec capped
	rec.max = p.opts.MaxBody
	rec.add(prefix)
	drained := left == 0
	if left > 0 && left <= 256<<10 {
		drained = copyN(bufio.NewWriter(io.Discard), c.br, left, &rec) == nil
	}
	f.Request.Body = rec.body()
	f.BytesUp = rec.size
	bw := c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(status))
	bw.WriteString(" ")
	bw.WriteString(http.StatusText(status))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(msg)))
	if !drained || h.close {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	bw.WriteString(msg)
	err := bw.Flush()
	f.Response = blockedResponse("HTTP/1.1", status, msg)
	f.End = p.opts.Now()
	p.emit(f)
	return err == nil && drained && !h.close
}

// redactedHead returns the head to send for the policy's copy of a request,
// and whether the copy's body is to be sent instead of the client's (it
// changed it, and the whole body was read for the decision).
func (p *Proxy) redactedHead(f *flow.Flow, red *flow.Request, h wireHead, prefix []byte, whole bool) (func(*bufio.Writer), bool) {
	method, target := red.Method, "/"
	if method == "" {
		method = h.first[0]
	}
	if u, err := url.Parse(red.URL); err == nil {
		target = u.RequestURI()
	} else {
		f.Note(flow.NotePolicy, "the redacted URL does not parse: sent unchanged: "+err.Error())
		target = f.Request.URL
		if u, err := url.Parse(target); err == nil {
			target = u.RequestURI()
		}
	}
	n, changed := h.length, false
	if !bytes.Equal(red.Body.Data, prefix) {
		if whole {
			n, changed = int64(len(red.Body.Data)), true
		} else {
			f.Note(flow.NotePolicy, "the body is larger than what was read for the decision: it was sent unredacted")
		}
	}
	var drop wireHead
	drop.drop = h.drop
	return func(w *bufio.Writer) {
		w.WriteString(method)
		w.WriteString(" ")
		w.WriteString(target)
		w.WriteString(" HTTP/1.1\r\n")
		host := ""
		for _, x := range red.Headers {
			switch {
			case strings.EqualFold(x.Name, "Host"):
				host = x.Value
				continue
			case strings.EqualFold(x.Name, "Content-Length"), drop.hop(x.Name):
				continue
			}
			w.WriteString(x.Name)
			w.WriteString(": ")
			w.WriteString(x.Value)
			w.WriteString("\r\n")
		}
		if host == "" {
			host = h.host
		}
		w.WriteString("Host: ")
		w.WriteString(host)
		w.WriteString("\r\n")
		if n >= 0 {
			w.WriteString("Content-Length: ")
			w.WriteString(strconv.FormatInt(n, 10))
			w.WriteString("\r\n")
		}
		w.WriteString("\r\n")
	}, changed
}

// splitTarget splits an absolute-form target (explicit) into authority and
// path, or checks an origin-form one; ok is false for any other form.
func splitTarget(target string, explicit bool) (authority, path string, ok bool) {
	if explicit {
		rest, ok := strings.CutPrefix(target, "http://")
		if !ok {
			return "", "", false
		}
		i := strings.IndexAny(rest, "/?")
		if i < 0 {
			i = len(rest)
		}
		authority, path = rest[:i], rest[i:]
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		_, _, hostOK := splitAuthority(authority)
		return authority, path, hostOK && validTarget(path)
	}
	return "", target, strings.HasPrefix(target, "/") && validTarget(target)
}

func simpleMethod(m string) bool {
	for _, x := range methods {
		if m == x {
			return true
		}
	}
	return false
}

// splitAuthority splits host[:port] (a bracketed IPv6 address with its
// port); ok is false for anything else: user information, percent-encoding,
// characters no host name has.
func splitAuthority(a string) (host, port string, ok bool) {
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_:[]", c) >= 0) {
			return "", "", false
		}
	}
	host = a
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", "", false
		}
		host, rest := a[1:end], a[end+1:]
		if rest == "" {
			return host, "", true
		}
		if rest[0] != ':' {
			return "", "", false
		}
		port = rest[1:]
	} else if i := strings.LastIndexByte(a, ':'); i >= 0 {
		host, port = a[:i], a[i+1:]
		if strings.IndexByte(host, ':') >= 0 {
			return "", "", false
		}
	}
	if host == "" || port != "" && !digits(port) {
		return "", "", false
	}
	return host, port, true
}

func digits(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validTarget accepts the visible ASCII a request target is made of, with
// whole percent escapes.
func validTarget(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] <= 0x20 || p[i] >= 0x7f {
			return false
		}
		if p[i] == '%' && (i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2])) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// decisionWait is how long a client gets to send the part of a request body
// a decision needs.
const decisionWait = 5 * time.Second

// send writes the request head and body to the server, and waits for the
// first byte of the answer (up to ResponseHeaderTimeout).
func (p *Proxy) send(ctx context.Context, up *upConn, head func(*bufio.Writer), body func(*bufio.Writer) error) error {
	p.armUpstream(up)
	stop := context.AfterFunc(ctx, func() { up.conn.SetDeadline(time.Now()) })
	defer stop()
	head(up.bw)
	if err := body(up.bw); err != nil {
		return err
	}
	if err := up.bw.Flush(); err != nil {
		return err
	}
	_, err := up.br.Peek(1)
	return p.awaitingAnswer(err)
}

// answer relays the server's answer to the client and emits f. It returns
// whether the client connection can serve another request.
func (p *Proxy) answer(c *clientConn, up *upConn, f *flow.Flow, method string) bool {
	f.Server = up.server
	b, ok, err := bufferedHead(up.br)
	var h wireHead
	plain := err == nil && ok && parseHead(b, &h) && h.first[0] == "HTTP/1.1"
	status := 0
	if plain {
		status, err = strconv.Atoi(h.first[1])
		plain = err == nil && len(h.first[1]) == 3 && status >= 200 && status < 600
	}
	bodyless := method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified
	if !plain || !bodyless && h.length < 0 {
		// chunked, close-delimited, interim, upgrade, HTTP/1.0: net/http reads it
		w := newResponseWriter(c.conn, c.br, c.bw, method)
		resp, err := p.readAnswer(up, method)
		if err != nil {
			up.conn.Close()
			p.upstreamFailed(w, f, f.Host, err)
			return w.finish() == nil
		}
		up.t.stallReads(p.opts.IdleTimeout)
		p.relay(w, resp, up, f, nil)
		return w.finish() == nil && !w.close
	}
	up.br.Discard(h.size)
	up.t.stallReads(p.opts.IdleTimeout) // a body that stops coming is cut
	bw := c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(h.first[1])
	bw.WriteString(" ")
	bw.WriteString(h.first[2])
	bw.WriteString("\r\n")
	h.writeHeaders(bw, false)
	var rec capped
	rec.max = p.responseLimit(h.headers.Get("Content-Type"))
	n := h.length
	if bodyless {
		n = 0
	}
	var copyErr error
	if n > 0 {
		copyErr = copyN(bw, up.br, n, &rec)
	}
	if copyErr == nil {
		copyErr = bw.Flush()
	}
	p.release(up, copyErr == nil && !h.close)
	f.Response = &flow.Response{Status: status, Reason: h.first[2], Proto: "HTTP/1.1", Headers: h.headers, Body: rec.body()}
	if copyErr != nil {
		f.Response.Body.Incomplete = true
		f.Note(flow.NoteResponseCut, "response cut: "+copyErr.Error())
	}
	f.BytesDown = rec.size
	f.End = p.opts.Now()
	p.emit(f)
	return copyErr == nil
}

// readFinal reads the server's answer head, past interim (1xx) answers.
func readFinal(br *bufio.Reader, method string) (*http.Response, error) {
	req := &http.Request{Method: method}
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		return resp, nil
	}
}

// copyN copies n bytes from src to dst through their buffers, keeping the
// first bytes in rec, and hands what it has on whenever src must wait for
// more (so a slow body streams).
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64, rec *capped) error {
	for n > 0 {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return err
			}
			if _, err := src.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		b, _ := src.Peek(int(min(int64(src.Buffered()), n)))
		rec.add(b)
		if _, err := dst.Write(b); err != nil {
			return err
		}
		src.Discard(len(b))
		n -= int64(len(b))
	}
	return nil
}

// capped keeps the first max bytes of a body and counts them all.
type capped struct {
	data []byte
	size int64
	max  int
}

func (c *capped) add(b []byte) {
	c.size += int64(len(b))
	if room := c.max - len(c.data); room > 0 {
		c.data = append(c.data, b[:min(len(b), room)]...)
	}
}

func (c *capped) body() flow.Body {
	return flow.Body{Data: c.data, Size: c.size, Truncated: int64(len(c.data)) < c.size}
}
