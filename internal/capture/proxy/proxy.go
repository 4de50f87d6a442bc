// Package proxy is phonehome's explicit HTTP(S) proxy: a device points its
// proxy setting here, plain HTTP is forwarded as it comes, and CONNECT tunnels
// are decrypted with a certificate minted for the host, so every request can
// be recorded and analysed. Recording never holds up forwarding: bodies are
// copied through as they stream, and only the first MaxBody bytes are kept.
package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"phonehome/internal/capture"
	"phonehome/internal/capture/hello"
	"phonehome/internal/certs"
	"phonehome/internal/flow"
)

// Options configure a proxy.
type Options struct {
	Minter   *certs.Minter
	Upstream *tls.Config // how upstream servers are verified (nil: system roots)
	MaxBody  int         // bytes of each body kept for analysis (default 1 MiB)
	// MaxMediaBody is what is kept of a response body of a bulk type
	// (pictures, video, audio, archives; see flow.BulkType), default 8 KiB:
	// the rest is relayed and counted, not kept.
	MaxMediaBody int
	// Handler decides on each connection and request before anything is
	// forwarded, and receives each flow when it is done (see capture.Handler).
	// nil records nothing.
	Handler   capture.Handler
	Logger    *slog.Logger
	Now       func() time.Time
	Allow     []netip.Prefix // clients allowed; empty: everyone who can reach the listener
	Ignore    []string       // host patterns (path.Match, "*.example.com") never intercepted
	Intercept []string       // if set, only hosts matching one of these are intercepted

	// Timeouts bound each stage a client or a server could stretch forever
	// (see timeouts.go). Zero takes the default; a negative value removes
	// the bound, except for DialTimer.

	// HeaderTimeout is how long a client has to send a whole request head:
	// the first from the accept (from the end of the handshake, in a
	// decrypted tunnel), the next ones from their first byte. A client that
	// sends nothing, or half a head, is let go (408 if it sent something).
	// Default 20 s.
	HeaderTimeout time.Duration
	// HandshakeTimeout is how long a client has after a CONNECT's 200 (or
	// after its first bytes, when transparently intercepted) to finish its
	// TLS handshake, the wait for its ClientHello included; it also bounds
	// the proxy's own handshake with each server. A client that sends
	// nothing at all in that time after CONNECT is taken to wait for its
	// server to speak first (SMTP, IMAP, ...) and is relayed raw.
	// Default 10 s.
	HandshakeTimeout time.Duration
	// IdleTimeout is how long a client connection may wait between
	// requests (on the explicit proxy, in decrypted tunnels, over HTTP/2,
	// transparently intercepted), and how long a body may make no
	// progress in either direction (a client or a server that stops
	// sending, a client that stops reading) before it is cut. Default 2 min.
	IdleTimeout time.Duration
	// TunnelIdleTimeout closes a tunnel relayed without being read (raw
	// bytes, a host passed through, a WebSocket after its upgrade) once no
	// byte has moved either way for this long. Default 10 min.
	TunnelIdleTimeout time.Duration
	// DialTimer is the upstream dial timeout (default 15 s).
	DialTimer time.Duration
	// ResponseHeaderTimeout is how long a server may take, once a request
	// was sent whole, to send the head of its answer: past it the client is
	// answered 504 and the flow noted flow.NoteUpstream. Default 2 min.
	ResponseHeaderTimeout time.Duration
	// MaxHeaderBytes bounds a request head (request line and headers): a
	// client that sends a larger one is answered 431 and let go. A
	// server's answer head is bounded to it as well (the client is answered
	// 502). Default 1 MiB, as net/http's server.
	MaxHeaderBytes int

	// PinRefusals, PinWindow and PinCooldown are the rule by which a
	// client that refuses phonehome's certificate (it pins its server's,
	// or does not trust the CA: it ends the handshake with an alert such as
	// bad_certificate or unknown_ca) gets its server's own: once that
	// client address refused PinRefusals times (default 2) within PinWindow
	// (default 10 min) for a host, the host is passed through untouched for
	// it, and it alone, for PinCooldown (default 10 min); then interception
	// is tried again and refusals are counted afresh. A client that hangs
	// up, resets, times out or sends a ClientHello TLS rejects never counts.
	// Zero or negative takes the default.
	PinRefusals int
	PinWindow   time.Duration
	PinCooldown time.Duration

	// Name names an address (from DNS answers) for a transparently
	// intercepted connection that carries no name itself; nil or "": none.
	Name func(netip.Addr) string
	// Device names the device behind a client address when the source
	// knows it (a WireGuard peer, whose tunnel address its key vouches
	// for): every flow and hello from that client carries the name. nil or
	// "": the device is known by its address.
	Device func(netip.Addr) string
	// Own reports whether an address is one of phonehome's own services on
	// this machine (the web UI, the debug listener). No client may reach
	// them through the proxy: an app on a watched phone could otherwise
	// change the rules or read what was captured. nil: none.
	Own func(netip.AddrPort) bool
	// Source names the capture source in the hellos of connections that
	// entered transparently (ServeIntercepted), such as "wireguard"; ""
	// says "transparent".
	Source string
}

// Proxy is an http.Handler that forwards and records.
type Proxy struct {
	opts     Options
	upstream *upstreamPool
	dialer   *net.Dialer    // every connection to a server: the pool's, tunnels', passthroughs'
	wg       sync.WaitGroup // hijacked tunnels in progress
	pins     *pinBook       // clients that refused phonehome's certificate, per host
}

// New returns a proxy.
func New(opts Options) *Proxy {
	if opts.MaxBody <= 0 {
		opts.MaxBody = 1 << 20
	}
	if opts.MaxMediaBody <= 0 {
		opts.MaxMediaBody = 8 << 10
	}
	opts.MaxMediaBody = min(opts.MaxMediaBody, opts.MaxBody)
	if opts.Handler == nil {
		opts.Handler = capture.Observer(func(*flow.Flow) {})
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DialTimer <= 0 {
		opts.DialTimer = 15 * time.Second
	}
	for _, t := range []struct {
		d   *time.Duration
		def time.Duration
	}{
		{&opts.HeaderTimeout, 20 * time.Second},
		{&opts.HandshakeTimeout, 10 * time.Second},
		{&opts.IdleTimeout, 2 * time.Minute},
		{&opts.TunnelIdleTimeout, 10 * time.Minute},
		{&opts.ResponseHeaderTimeout, 2 * time.Minute},
	} {
		if *t.d == 0 {
			*t.d = t.def
		}
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	if opts.PinRefusals <= 0 {
		opts.PinRefusals = defaultPinRefusals
	}
	if opts.PinWindow <= 0 {
		opts.PinWindow = defaultPinWindow
	}
	if opts.PinCooldown <= 0 {
		opts.PinCooldown = defaultPinCooldown
	}
	p := &Proxy{opts: opts, pins: newPinBook(opts.PinRefusals, opts.PinWindow, opts.PinCooldown)}
	p.dialer = &net.Dialer{Timeout: opts.DialTimer, Control: p.refuseOwn}
	p.upstream = newUpstreamPool(p.dialer, opts.Upstream, p.timed, opts.HandshakeTimeout)
	return p
}

// errOwnService is why a dial to phonehome's own services is refused.
var errOwnService = errors.New("refused: that is phonehome's own service (its web UI), which no device may reach through the proxy")

// refuseOwn is the dialer's check, on the resolved address, before it
// connects: whatever name a client used, Options.Own's addresses are refused.
func (p *Proxy) refuseOwn(_, address string, _ syscall.RawConn) error {
	if p.opts.Own == nil {
		return nil
	}
	if ap, err := netip.ParseAddrPort(address); err == nil && p.opts.Own(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())) {
		return errOwnService
	}
	return nil
}

// Close waits for hijacked tunnels and closes idle upstream connections.
func (p *Proxy) Close() {
	p.wg.Wait()
	p.upstream.closeIdle()
}

func (p *Proxy) allowed(remote string) bool {
	if len(p.opts.Allow) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	for _, pfx := range p.opts.Allow {
		if pfx.Contains(ap.Addr().Unmap()) {
			return true
		}
	}
	return false
}

// ServeHTTP handles absolute-form requests and CONNECT.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.allowed(r.RemoteAddr) {
		http.Error(w, "phonehome: this client is not allowed to use the proxy (see --allow)", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodConnect {
		p.connect(w, r)
		return
	}
	if p.servesCertPage(w, r) {
		return
	}
	if !r.URL.IsAbs() {
		http.Error(w, "phonehome is a proxy: set it as your device's HTTP proxy and request absolute URLs", http.StatusBadRequest)
		return
	}
	p.forward(w, r, "http", r.RemoteAddr)
}

// forward sends r upstream and the answer back, recording both.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, scheme, client string) {
	start := p.opts.Now()
	f := &flow.Flow{Start: start, Host: r.URL.Hostname(), Transport: flow.TransportHTTP, Client: endpoint(client), Device: p.device(client)}
	if scheme == "https" {
		f.Transport = flow.TransportHTTPS
		f.TLS = &flow.TLSInfo{SNI: r.URL.Hostname(), Decrypted: true}
	}
	req := &flow.Request{Method: r.Method, URL: r.URL.String(), Proto: r.Proto, Headers: headers(r.Header, r.Host)}
	f.Request = req
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Close = false // "Connection: close" is the client's hop: the upstream connection stays for the next client
	upgrade := upgradeProto(r.Header)
	removeHopHeaders(out.Header)
	if upgrade != "" { // WebSocket and friends: the hop headers are the point
		out.Header.Set("Connection", "Upgrade")
		out.Header.Set("Upgrade", upgrade)
	}
	var reqBody *recorder
	if r.Body != nil && r.Body != http.NoBody {
		reqBody = newRecorder(r.Body, p.opts.MaxBody)
		out.Body = reqBody
	}
	requestBody := func() flow.Body {
		if reqBody == nil {
			return flow.Body{}
		}
		return reqBody.body(2 * time.Second)
	}
	// the decision, before anything goes upstream
	var prefix []byte
	whole := reqBody == nil
	if reqBody != nil {
		if n := min(p.opts.Handler.RequestBody(f), p.opts.MaxBody); n > 0 {
			var err error
			prefix, whole, err = readPrefix(reqBody, n)
			req.Body = flow.Body{Data: prefix, Size: int64(len(prefix)), Truncated: !whole}
			if err != nil && !whole {
				req.Body.Incomplete = true
			}
			out.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(prefix), reqBody), reqBody}
		}
	}
	v, red := requestVerdict(r.Context(), p.opts.Handler, f)
	f.Verdict = v // what was done, whatever the handler recorded
	if v.Action == flow.ActionBlock {
		p.block(w, f, v, reqBody)
		return
	}
	if red != nil && p.redacted(out, f, red, prefix, whole) {
		reqBody.Close() // read to its end for the decision; the copy goes instead
	}
	resp, up, err := p.roundTrip(out)
	if err != nil {
		req.Body = requestBody()
		f.BytesUp = req.Body.Size
		p.upstreamFailed(w, f, r.URL.Host, err)
		return
	}
	p.relay(w, resp, up, f, reqBody)
}

// readPrefix reads up to n bytes of a request body for a decision; whole
// says the body ended within them.
func readPrefix(r io.Reader, n int) (b []byte, whole bool, err error) {
	b = make([]byte, n+1)
	k, err := io.ReadFull(r, b)
	if k <= n && (err == io.EOF || err == io.ErrUnexpectedEOF) {
		return b[:k], true, nil
	}
	return b[:min(k, n)], false, err
}

// blockStatus is the status a blocked request is answered with.
func blockStatus(v flow.Verdict) int {
	if v.Status >= 200 && v.Status < 600 {
		return v.Status
	}
	return http.StatusForbidden
}

// blockMessage is the body phonehome answers a blocked request with.
func blockMessage(v flow.Verdict) string { return "blocked by phonehome: " + v.String() + "\n" }

// block answers a blocked request on phonehome's behalf: the server is never
// contacted. What the client sent of the body is read (up to a bound) so
// that its connection can serve the next request.
func (p *Proxy) block(w http.ResponseWriter, f *flow.Flow, v flow.Verdict, body *recorder) {
	status, msg := blockStatus(v), blockMessage(v)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(status)
	io.WriteString(w, msg)
	if body != nil {
		io.CopyN(io.Discard, body, 256<<10)
		body.Close()
		f.Request.Body = body.body(0)
		f.BytesUp = f.Request.Body.Size
	}
	f.Response = blockedResponse(f.Request.Proto, status, msg)
	f.End = p.opts.Now()
	p.emit(f)
}

// blockedResponse is the record of phonehome's own answer to a blocked request.
func blockedResponse(proto string, status int, msg string) *flow.Response {
	return &flow.Response{Status: status, Reason: http.StatusText(status), Proto: proto,
		Headers: flow.Headers{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}, {Name: "Content-Length", Value: strconv.Itoa(len(msg))}},
		Body:    flow.Body{Data: []byte(msg), Size: int64(len(msg))}}
}

// redacted makes out, the request about to be sent, the policy's copy: its
// target, headers and, when the whole body was read for the decision, body
// (then it reports true).
func (p *Proxy) redacted(out *http.Request, f *flow.Flow, red *flow.Request, prefix []byte, whole bool) bool {
	if u, err := url.Parse(red.URL); err == nil {
		out.URL.Path, out.URL.RawPath, out.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
	} else {
		f.Note(flow.NotePolicy, "the redacted URL does not parse: sent unchanged: "+err.Error())
	}
	if red.Method != "" {
		out.Method = red.Method
	}
	out.Header = http.Header{}
	for _, h := range red.Headers {
		switch {
		case strings.EqualFold(h.Name, "Host"):
			out.Host = h.Value
		case strings.EqualFold(h.Name, "Content-Length"):
		default:
			out.Header.Add(h.Name, h.Value)
		}
	}
	removeHopHeaders(out.Header)
	if bytes.Equal(red.Body.Data, prefix) {
		return false
	}
	if !whole {
		f.Note(flow.NotePolicy, "the body is larger than what was read for the decision: it was sent unredacted")
		return false
	}
	out.Body = io.NopCloser(bytes.NewReader(red.Body.Data))
	out.ContentLength = int64(len(red.Body.Data))
	return true
}

// upstreamFailed tells the client the server could not be reached (or was
// not trusted), and records why.
func (p *Proxy) upstreamFailed(w http.ResponseWriter, f *flow.Flow, authority string, err error) {
	f.Note(flow.NoteUpstream, "upstream: "+err.Error())
	f.End = p.opts.Now()
	p.emit(f)
	status := http.StatusBadGateway
	var na *noAnswerError
	if errors.As(err, &na) {
		http.Error(w, fmt.Sprintf("phonehome: %s did not answer within %s", authority, na.after), http.StatusGatewayTimeout)
		return
	}
	var cerr *tls.CertificateVerificationError
	if errors.As(err, &cerr) {
		http.Error(w, "phonehome: the server's certificate is not trusted: "+cerr.Err.Error()+" (phonehome run --insecure-upstream to accept it)", status)
		return
	}
	http.Error(w, "phonehome: could not reach "+authority+": "+err.Error(), status)
}

// relay sends the server's answer (its head read, its body still to come)
// to the client, records it in f and emits f. reqBody, when not nil, is the
// request body still being recorded.
func (p *Proxy) relay(w http.ResponseWriter, resp *http.Response, up *upConn, f *flow.Flow, reqBody *recorder) {
	f.Server = up.server
	if resp.StatusCode == http.StatusSwitchingProtocols {
		quiet(up.conn) // a tunnel from now on: its idle watch bounds it
		p.switchProtocols(w, resp, struct {
			io.Reader
			io.Writer
			io.Closer
		}{up.br, up.conn, up.conn}, f)
		return
	}
	removeHopHeaders(resp.Header)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	rec := newRecorder(resp.Body, p.responseLimit(resp.Header.Get("Content-Type")))
	buf := copyBuffers.Get().(*[]byte)
	_, copyErr := io.CopyBuffer(flushWriter{w}, rec, *buf) // large reads: one write and flush per read, not per 32 KiB
	copyBuffers.Put(buf)
	reuse := copyErr == nil && !resp.Close && (reqBody == nil || reqBody.done())
	if !reuse {
		up.conn.Close() // before the body's Close, which would read what is left of it
	}
	rec.Close()
	p.release(up, reuse)
	f.Response = &flow.Response{Status: resp.StatusCode, Reason: strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode))),
		Proto: resp.Proto, Headers: headers(resp.Header, ""), Body: rec.body(0)}
	if reqBody != nil {
		f.Request.Body = reqBody.body(2 * time.Second)
	}
	f.BytesUp = f.Request.Body.Size
	if copyErr != nil {
		f.Response.Body.Incomplete = true
		f.Note(flow.NoteResponseCut, "response cut: "+copyErr.Error())
	}
	f.BytesDown = f.Response.Body.Size
	f.End = p.opts.Now()
	p.emit(f)
	if copyErr != nil {
		cut(w)
	}
}

// cut makes sure the client sees that an answer was cut, rather than a
// shorter one that ends well: no last chunk, no END_STREAM.
func cut(w http.ResponseWriter) {
	if cw, ok := w.(*connWriter); ok {
		cw.abort()
		return
	}
	panic(http.ErrAbortHandler) // net/http resets the stream (or closes the connection) quietly
}

// emit hands a finished flow to the handler; the proxy never touches it again.
func (p *Proxy) emit(f *flow.Flow) { p.opts.Handler.Done(f) }

// responseLimit is how much of a response body of the given type is kept.
func (p *Proxy) responseLimit(contentType string) int {
	if flow.BulkType(contentType) {
		return p.opts.MaxMediaBody
	}
	return p.opts.MaxBody
}

// connect answers a CONNECT: the client's TLS is terminated with a minted
// certificate and the requests inside are served like plain ones.
//
// A host passed through by name (--ignore-hosts, --intercept, one whose
// certificate this client kept refusing: see Options.PinRefusals) is
// dialled before the 200, so that a server that cannot be reached is
// answered 502 instead of a tunnel that leads nowhere. phonehome's own
// pages (CertHost) are served inside the tunnel, never dialled. Any other
// tunnel must be answered 200 first: its ClientHello, which the policy
// decides on before anything is dialled, comes only after it; an
// unreachable server is then answered 502 inside the decrypted tunnel, and
// bytes that are not TLS find the tunnel closed.
func (p *Proxy) connect(w http.ResponseWriter, r *http.Request) {
	host, portStr, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, portStr = r.Host, "443"
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "phonehome: cannot take over this connection", http.StatusInternalServerError)
		return
	}
	var up net.Conn
	why := ""
	if !ownHost(host) { // phonehome's own pages are served inside the tunnel, never dialled
		why = p.passthrough(r.RemoteAddr, host)
	}
	if why != "" {
		target := net.JoinHostPort(host, portStr)
		if up, err = p.dialer.Dial("tcp", target); err != nil {
			f := &flow.Flow{Start: p.opts.Now(), Host: host, Client: endpoint(r.RemoteAddr), Device: p.device(r.RemoteAddr), Transport: flow.TransportTCP}
			f.Note(flow.NotePassthrough, why)
			f.Note(flow.NoteUpstream, "upstream: "+err.Error())
			f.End = p.opts.Now()
			p.emit(f)
			http.Error(w, "phonehome: could not reach "+target+": "+err.Error(), http.StatusBadGateway)
			return
		}
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		if up != nil {
			up.Close()
		}
		return
	}
	p.wg.Add(1)
	defer p.wg.Done()
	defer conn.Close()
	_, err = rw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	if err == nil {
		err = rw.Flush()
	}
	if err != nil {
		if up != nil {
			up.Close()
		}
		return
	}
	// Bytes the client sent after CONNECT may already sit in rw's buffer;
	// the proxy's own is large enough for a ClientHello, net/http's is not.
	client := rw.Reader
	if client.Size() < 16<<10 {
		client = bufio.NewReaderSize(&bufferedConn{Conn: conn, r: rw.Reader}, 16<<10)
	}
	p.serveTunnel(r.Context(), conn, client, r.Host, host, portStr, r.RemoteAddr, "", up)
}

// serveTunnel serves what a client sends inside a tunnel to authority
// (host:port, from CONNECT or from the intercepted connection): TLS is
// terminated with a minted certificate unless the host is passed through;
// other bytes are relayed raw. dial, when set, is the address to connect to
// instead of resolving the host (a transparently intercepted connection's
// original destination). up, when not nil, is the server already dialled
// for a tunnel passed through; it is closed here if it is not used.
func (p *Proxy) serveTunnel(ctx context.Context, conn net.Conn, client *bufio.Reader, authority, host, portStr, remote, dial string, up net.Conn) {
	target := authority
	if dial != "" {
		target = dial
	}
	unused := func() {
		if up != nil {
			up.Close()
		}
	}
	// the ClientHello, and the whole handshake, within HandshakeTimeout
	conn.SetReadDeadline(until(p.opts.HandshakeTimeout))
	if dial == "" && ownHost(host) { // a CONNECT to phonehome's own pages (transparently, the SNI names them)
		unused()
		p.serveOwn(ctx, conn, client, portStr, remote)
		return
	}
	first, err := client.Peek(5)
	if err != nil {
		b, _ := client.Peek(client.Buffered())
		if !isTimeout(err) || len(b) > 0 && b[0] == 22 {
			unused()
			return // the client went away without a word, or in the middle of a TLS record
		}
		// nothing at all (or a few bytes that are not TLS): a protocol
		// whose server speaks first, or a short greeting awaiting an answer
		p.tunnel(client, conn, target, host, remote, nil, up, flow.Note{Code: flow.NoteTunnel,
			Text: fmt.Sprintf("the client sent no TLS within %s: relayed as a raw tunnel (a protocol whose server speaks first?)", p.opts.HandshakeTimeout)})
		return
	}
	if !hello.LooksLikeTLS(first) {
		p.tunnel(client, conn, target, host, remote, nil, up, flow.Note{Code: flow.NoteTunnel, Text: "not TLS: relayed as a raw tunnel"})
		return
	}
	sni := host
	ch, hasHello := peekHello(client)
	if hasHello && ch.SNI != "" {
		sni = ch.SNI
	}
	if dial != "" && sni != host { // transparent: the name comes from the ClientHello
		host = sni
		authority = net.JoinHostPort(sni, portStr)
	}
	if ownHost(sni) {
		unused()
		p.serveOwn(ctx, conn, client, portStr, remote)
		return
	}
	hl := flow.Hello{Time: p.opts.Now(), Client: endpoint(remote), Device: p.device(remote), SNI: sni, Source: "proxy"}
	if hasHello {
		hl.ALPN = ch.ALPN
	}
	if dial != "" {
		hl.Server, hl.Source = endpoint(dial), "transparent"
		if p.opts.Source != "" {
			hl.Source = p.opts.Source
		}
	}
	var held flow.Verdict // a block decided at the hello, held for every request
	switch v := p.opts.Handler.Hello(ctx, hl); v.Action {
	case flow.ActionBlock:
		if p.passthrough(remote, sni) == "" {
			// intercepted only so that each request is answered readably
			// (the status and the rule, as for plain HTTP); none is forwarded
			held = v
			break
		}
		// a host that would be passed through cannot be answered: refused
		f := &flow.Flow{Start: hl.Time, End: p.opts.Now(), Host: sni, Client: hl.Client, Device: hl.Device, Server: hl.Server,
			Transport: flow.TransportTLS, TLS: &flow.TLSInfo{SNI: sni, ALPN: hl.ALPN}, Verdict: v}
		f.Note(flow.NoteBlocked, "connection closed before the handshake: blocked by "+v.String())
		p.emit(f)
		unused()
		return
	case flow.ActionPassthrough:
		p.tunnel(client, conn, target, sni, remote, &flow.TLSInfo{SNI: sni, ALPN: hl.ALPN}, up,
			flow.Note{Code: flow.NotePassthrough, Text: "passed through by " + v.String()})
		return
	}
	if why := p.passthrough(remote, sni); why != "" {
		p.tunnel(client, conn, target, sni, remote, &flow.TLSInfo{SNI: sni}, up, flow.Note{Code: flow.NotePassthrough, Text: why})
		return
	}
	unused() // intercepted: the server is dialled per request, once the policy saw it
	tap := &alertTap{r: client}
	tconn := tls.Server(&bufferedConn{Conn: conn, r: tap}, &tls.Config{
		GetCertificate: p.opts.Minter.GetCertificate(host),
		NextProtos:     []string{"h2", "http/1.1"}, // what the client gets is chosen apart from what the server speaks
	})
	if err := tconn.HandshakeContext(ctx); err != nil {
		f := &flow.Flow{Start: p.opts.Now(), End: p.opts.Now(), Host: sni, Client: endpoint(remote), Device: p.device(remote),
			Transport: flow.TransportTLS, TLS: &flow.TLSInfo{SNI: sni}}
		if ap, err := netip.ParseAddrPort(dial); err == nil {
			f.Server = flow.Endpoint{Addr: ap.Addr().Unmap(), Port: ap.Port()}
		}
		p.handshakeFailed(f, remote, sni, hasHello, err, tap)
		f.Verdict = held
		p.emit(f)
		return
	}
	tap.off = true
	defer tconn.Close()
	if dial != "" {
		ctx = context.WithValue(ctx, dialKey{}, dial)
	}
	if held.Action == flow.ActionBlock {
		ctx = context.WithValue(ctx, heldKey{}, held)
	}
	if tconn.ConnectionState().NegotiatedProtocol == "h2" {
		p.serveH2(ctx, tconn, authority, host, portStr, remote)
		return
	}
	lim := newHeadLimit(tconn)
	p.serveHTTP1(ctx, tconn, bufio.NewReader(lim), lim, until(p.opts.HeaderTimeout), "https", authority, host, portStr, remote)
}

// serveOwn serves phonehome's own pages (CertHost) to a client that opened
// a tunnel to them: over TLS, with a certificate minted for CertHost, or
// over plain HTTP. Nothing is dialled, and nothing of it reaches the
// Handler: phonehome's own pages are no destination of the device's, and
// a device that refuses the certificate (it came to fetch the CA) is not
// counted as pinning. The caller set the handshake's deadline.
func (p *Proxy) serveOwn(ctx context.Context, conn net.Conn, client *bufio.Reader, portStr, remote string) {
	authority := net.JoinHostPort(CertHost, portStr)
	first, err := client.Peek(5)
	switch {
	case err != nil:
	case hello.LooksLikeTLS(first):
		tconn := tls.Server(&bufferedConn{Conn: conn, r: client}, &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.opts.Minter.Get(CertHost) },
			NextProtos:     []string{"http/1.1"}, // a page and three small files: HTTP/1.1 serves them
		})
		if err := tconn.HandshakeContext(ctx); err != nil {
			return
		}
		defer tconn.Close()
		lim := newHeadLimit(tconn)
		p.serveHTTP1(ctx, tconn, bufio.NewReader(lim), lim, until(p.opts.HeaderTimeout), "https", authority, CertHost, portStr, remote)
	case looksLikeHTTP(first):
		lim := newHeadLimit(client)
		p.serveHTTP1(ctx, conn, bufio.NewReader(lim), lim, until(p.opts.HeaderTimeout), "http", authority, CertHost, portStr, remote)
	}
}

// serveHTTP1 serves the HTTP/1 requests of one client connection inside a
// tunnel or transparently intercepted; br reads conn through lim. The
// first head must be whole by headBy.
func (p *Proxy) serveHTTP1(ctx context.Context, conn net.Conn, br *bufio.Reader, lim *headLimit, headBy time.Time, scheme, authority, host, portStr, remote string) {
	c := &clientConn{conn: conn, tc: timedOf(conn), lim: lim, br: br, remote: remote, scheme: scheme, authority: authority, first: true, idle: p.opts.IdleTimeout, headBy: headBy}
	conn.SetReadDeadline(headBy)
	defer c.releaseWriter()
	var stopping context.Context
	if s := stoppingCtx(ctx); s != ctx { // inside a CONNECT tunnel: on shutdown an idle client is let go
		stopping = s
		defer context.AfterFunc(stopping, func() { conn.SetReadDeadline(time.Now()) })()
	}
	if scheme == "https" && portStr == "443" {
		c.authority = stripPort(authority)
	}
	for {
		req, keep := p.nextRequest(ctx, c, stopping)
		if !keep {
			return
		}
		if req == nil { // served on the fast path
			c.releaseWriter()
			continue
		}
		req.URL.Scheme, req.URL.Host = scheme, authority
		if authority == "" { // cleartext, transparent: the Host header names the server
			req.URL.Host = req.Host
			if req.Host == "" {
				req.URL.Host, _ = ctx.Value(dialKey{}).(string)
			}
		}
		if scheme == "https" && portStr == "443" || scheme == "http" && portStr == "80" {
			req.URL.Host = stripPort(req.URL.Host)
		}
		req.RemoteAddr = remote
		rw := newResponseWriter(conn, br, c.bw, req.Method)
		if !p.servesCertPage(rw, req) { // phonehome's own pages, asked for by name (transparent, or in a tunnel to them)
			p.forward(rw, req.WithContext(ctx), scheme, remote)
		}
		if err := rw.finish(); err != nil || req.Close || rw.close {
			return
		}
		c.releaseWriter()
	}
}

// nextRequest waits for the next request on c and serves it there when it
// is a plain one (req is nil), or reads its head for the general path.
// keep is false when the connection is done: the client left, stayed idle
// too long, sent its head too slowly (408) or too large (431), or sent
// something that is not HTTP/1 (400 on the explicit proxy). stopping, when
// not nil, ends it between requests.
func (p *Proxy) nextRequest(ctx context.Context, c *clientConn, stopping context.Context) (req *http.Request, keep bool) {
	if !c.first {
		// between requests: an idle client is let go after IdleTimeout
		// (the first head has its own deadline, set by the caller)
		c.stallReads(c.idle)
	}
	if stopping != nil && stopping.Err() != nil {
		return nil, false
	}
	if c.br.Buffered() == 0 {
		if _, err := c.br.Peek(1); err != nil {
			return nil, false
		}
	}
	if handled, keep := p.serveFast(ctx, c); handled {
		c.first = false
		return nil, keep
	}
	// the general path: the head whole within HeaderTimeout of its first
	// byte, and within MaxHeaderBytes
	if !c.first && !headWhole(c.br) {
		c.headBy = until(p.opts.HeaderTimeout)
		c.conn.SetReadDeadline(c.headBy)
	}
	c.first = false
	c.lim.start(p.opts.MaxHeaderBytes + c.br.Size())
	mark := c.lim.read - int64(c.br.Buffered())
	req, err := http.ReadRequest(c.br)
	c.lim.stop()
	consumed := c.lim.read - int64(c.br.Buffered()) - mark
	if c.lim.hit || err == nil && consumed > int64(p.opts.MaxHeaderBytes) {
		writeError(c.conn, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("phonehome: the request head is larger than %d bytes", p.opts.MaxHeaderBytes))
		lingeringClose(c.conn)
		return nil, false
	}
	switch {
	case err == nil:
	case isTimeout(err) || !c.headBy.IsZero() && !time.Now().Before(c.headBy):
		// (bufio's ReadLine drops the timeout when it has part of a line,
		// which net/http then finds malformed: the clock says which it was)
		writeError(c.conn, http.StatusRequestTimeout, fmt.Sprintf("phonehome: the request head did not arrive within %s", p.opts.HeaderTimeout))
		return nil, false
	case c.explicit && err != io.EOF && !errors.Is(err, net.ErrClosed):
		writeError(c.conn, http.StatusBadRequest, "phonehome: not an HTTP request: "+err.Error())
		return nil, false
	default:
		return nil, false // the client closed, or sent something that is not HTTP/1
	}
	c.headDone()
	return req, true
}

// headWhole reports whether a whole head sits in br's buffer.
func headWhole(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

// lingeringClose is how a connection is closed after refusing a request
// the client may still be sending: shut the sending side, then read and
// drop what comes for a moment (up to 1 MiB), so that the answer is not
// lost to the reset that closing with unread bytes sends.
func lingeringClose(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	io.CopyN(io.Discard, conn, 1<<20)
}

func stripPort(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// ServeIntercepted serves a connection redirected to phonehome (transparent
// mode): orig is where the client meant to connect. TLS is named by its SNI,
// HTTP by its Host header; what is neither is relayed raw.
func (p *Proxy) ServeIntercepted(ctx context.Context, raw net.Conn, orig netip.AddrPort) {
	p.wg.Add(1)
	defer p.wg.Done()
	defer raw.Close()
	remote := raw.RemoteAddr().String()
	if !p.allowed(remote) {
		return
	}
	conn := p.timed(raw)
	// on shutdown, a connection idle between requests is let go
	defer context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })()
	dial := orig.String()
	port := strconv.Itoa(int(orig.Port()))
	// a client that never speaks is let go after HeaderTimeout, holding no buffer meanwhile
	headBy := until(p.opts.HeaderTimeout)
	conn.SetReadDeadline(headBy)
	pr, err := awaitFirst(conn)
	if err != nil {
		return
	}
	lim := newHeadLimit(pr)
	client := bufio.NewReaderSize(lim, 16<<10)
	first, err := client.Peek(5)
	if err != nil {
		return
	}
	name := orig.Addr().Unmap().String()
	if p.opts.Name != nil {
		if n := p.opts.Name(orig.Addr().Unmap()); n != "" {
			name = n // a ClientHello's SNI or a Host header still wins
		}
	}
	if hello.LooksLikeTLS(first) {
		p.serveTunnel(ctx, conn, client, net.JoinHostPort(name, port), name, port, remote, dial, nil)
		return
	}
	if looksLikeHTTP(first) {
		p.serveHTTP1(context.WithValue(ctx, dialKey{}, dial), conn, client, lim, headBy, "http", "", name, port, remote)
		return
	}
	p.tunnel(client, conn, dial, name, remote, nil, nil, flow.Note{Code: flow.NoteTunnel, Text: "not TLS or HTTP: relayed as a raw tunnel"})
}

// looksLikeHTTP reports whether b starts like an HTTP/1 request line.
func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "POST", "PUT ", "HEAD", "DELE", "OPTI", "PATC", "CONN", "TRAC"} {
		if len(b) >= 4 && string(b[:4]) == m {
			return true
		}
	}
	return false
}

// dialKey carries, in a request's context, the address to connect to instead
// of the URL's host.
type dialKey struct{}

// heldKey carries, on a connection whose hello was blocked, that verdict:
// its requests are answered by phonehome, whatever the request's rules say.
type heldKey struct{}

// requestVerdict asks h for f's verdict, unless the connection's hello was blocked.
func requestVerdict(ctx context.Context, h capture.Handler, f *flow.Flow) (flow.Verdict, *flow.Request) {
	if v, ok := ctx.Value(heldKey{}).(flow.Verdict); ok {
		return v, nil
	}
	return h.Request(ctx, f)
}

// serveH2 serves the requests of an HTTP/2 client on a decrypted connection,
// with net/http's HTTP/2 server over a listener that yields just this conn.
func (p *Proxy) serveH2(ctx context.Context, conn *tls.Conn, authority, host, port, remote string) {
	ln := &oneConn{conn: conn, done: make(chan struct{})}
	dial, _ := ctx.Value(dialKey{}).(string)
	// net/http runs each stream's handler on a goroutine of its own, and
	// writes the streams' last frames on the connection's own: this returns
	// only when the connection is closed and every handler has returned, so
	// no flow is handed on after the proxy has stopped and no answer is cut.
	var streams sync.WaitGroup
	closed := make(chan struct{})
	var closeOnce sync.Once
	quiet(conn) // net/http sets its own deadlines on an HTTP/2 connection
	srv := &http.Server{
		IdleTimeout:    p.opts.IdleTimeout,
		MaxHeaderBytes: p.opts.MaxHeaderBytes,
		HTTP2:          &http.HTTP2Config{WriteByteTimeout: p.opts.IdleTimeout},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			streams.Add(1)
			defer streams.Done()
			req.URL.Scheme, req.URL.Host = "https", authority
			if port == "443" {
				req.URL.Host = host
			}
			if dial != "" {
				req = req.WithContext(context.WithValue(req.Context(), dialKey{}, dial))
			}
			if v, ok := ctx.Value(heldKey{}).(flow.Verdict); ok {
				req = req.WithContext(context.WithValue(req.Context(), heldKey{}, v))
			}
			p.forward(w, req, "https", remote)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				closeOnce.Do(func() { close(closed) })
				ln.Close()
			}
		},
	}
	// on shutdown the client is told (GOAWAY) to open no new streams; those
	// in flight finish, and the connection closes once it is idle
	shutdown := make(chan struct{})
	stop := context.AfterFunc(stoppingCtx(ctx), func() {
		defer close(shutdown)
		sctx, cancel := context.WithTimeout(ctx, shutdownGrace)
		defer cancel()
		srv.Shutdown(sctx)
	})
	srv.Serve(ln)
	select {
	case <-closed:
	case <-ctx.Done(): // the grace is over
		conn.Close()
		<-closed
	}
	if !stop() {
		<-shutdown
	}
	streams.Wait()
}

// oneConn is a listener that accepts one connection, then waits to be closed.
type oneConn struct {
	conn net.Conn
	once sync.Once
	done chan struct{}
	used bool
	mu   sync.Mutex
}

func (l *oneConn) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.used {
		l.used = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConn) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConn) Addr() net.Addr { return l.conn.LocalAddr() }

// upgradeProto returns the protocol a request asks to switch to, or "".
func upgradeProto(h http.Header) string {
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// switchProtocols completes an upgrade (a WebSocket, usually): the 101 goes to
// the client, and from then on bytes are relayed both ways and counted.
func (p *Proxy) switchProtocols(w http.ResponseWriter, resp *http.Response, upstream io.ReadWriteCloser, f *flow.Flow) {
	f.Response = &flow.Response{Status: resp.StatusCode, Reason: "Switching Protocols", Proto: resp.Proto, Headers: headers(resp.Header, "")}
	defer upstream.Close()
	hj, ok := w.(http.Hijacker)
	if !ok {
		f.Note(flow.NoteUpgrade, "upgrade could not be relayed")
		f.End = p.opts.Now()
		p.emit(f)
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		f.Note(flow.NoteUpgrade, "upgrade: "+err.Error())
		p.emit(f)
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\n")
	resp.Header.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	quiet(conn)
	watch := watchIdle(p.opts.TunnelIdleTimeout, func() {
		conn.SetDeadline(time.Now())
		upstream.Close()
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.BytesUp, _ = relayCopy(upstream, brw.Reader, watch)
		upstream.Close()
	}()
	f.BytesDown, _ = relayCopy(conn, upstream, watch)
	closeWrite(conn)
	wg.Wait()
	f.Notef(flow.NoteUpgrade, "%s: %d bytes up, %d down after the upgrade", resp.Header.Get("Upgrade"), f.BytesUp, f.BytesDown)
	if watch.end() {
		f.Notef(flow.NoteTunnel, "closed after %s with no byte either way", p.opts.TunnelIdleTimeout)
	}
	f.End = p.opts.Now()
	p.emit(f)
}

// peekHello reads the ClientHello without consuming it.
func peekHello(r *bufio.Reader) (hello.ClientHello, bool) {
	head, err := r.Peek(5)
	if err != nil {
		return hello.ClientHello{}, false
	}
	n := 5 + (int(head[3])<<8 | int(head[4]))
	b, err := r.Peek(min(n, r.Size()))
	if err != nil && len(b) < n {
		return hello.ClientHello{}, false
	}
	ch, err := hello.ParseClientHelloRecords(b)
	return ch, err == nil
}

// passthrough says why host is not to be intercepted for the client at
// remote, or "" to intercept it.
func (p *Proxy) passthrough(remote, host string) string {
	host = strings.ToLower(host)
	for _, pat := range p.opts.Ignore {
		if ok, _ := path.Match(strings.ToLower(pat), host); ok {
			return "matches --ignore-hosts " + pat + ": passed through"
		}
	}
	if len(p.opts.Intercept) > 0 {
		hit := false
		for _, pat := range p.opts.Intercept {
			if ok, _ := path.Match(strings.ToLower(pat), host); ok {
				hit = true
			}
		}
		if !hit {
			return "not in --intercept: passed through"
		}
	}
	client := endpoint(remote).Addr
	if s, ok := p.pins.passed(client, host, p.opts.Now()); ok {
		return fmt.Sprintf("%s refused phonehome's certificate for %s %d times (%s: the app pins its certificate, or the device does not trust phonehome's CA): "+
			"passed through untouched for this client until %s, then intercepted again", client, host, s.count, alertName(s.alert), s.until.Format(time.DateTime))
	}
	return ""
}

// handshakeFailed notes on f how the client's handshake with phonehome for
// sni failed, and counts it if the client refused the certificate: the
// note is typed flow.NoteCertRefused only on the refusal that decides to
// pass the host through for the client.
func (p *Proxy) handshakeFailed(f *flow.Flow, remote, sni string, hasHello bool, err error, tap *alertTap) {
	end, alert := classifyHandshake(err, tap)
	client := endpoint(remote).Addr
	switch end {
	case endRefused:
		now := p.opts.Now()
		n, until := p.pins.refused(client, sni, now, alert)
		if until.IsZero() {
			f.Notef(flow.NoteOther, "client %s refused phonehome's certificate for %s (%s), %d of %d times within %s before it is passed through for this client: still intercepted",
				client, sni, alertName(alert), n, p.opts.PinRefusals, p.opts.PinWindow)
			return
		}
		f.Notef(flow.NoteCertRefused, "client %s refused phonehome's certificate for %s %d times within %s (last: %s): the app pins its certificate, or the device does not trust phonehome's CA; "+
			"%s is passed through untouched for this client until %s, then intercepted again", client, sni, n, p.opts.PinWindow, alertName(alert), sni, until.Format(time.DateTime))
		p.opts.Logger.Warn("proxy: a client refuses phonehome's certificate: its host is passed through for it",
			"client", client, "host", sni, "refusals", n, "alert", alertName(alert), "until", until)
	case endAlert:
		f.Notef(flow.NoteOther, "the client ended the handshake with the alert %q: not about the certificate, not counted as a refusal", alertName(alert))
	case endDropped:
		f.Notef(flow.NoteOther, "client closed during the handshake (%v): not taken for a refusal of the certificate", err)
	case endTimeout:
		f.Notef(flow.NoteMalformed, "the client did not finish its TLS handshake within %s", p.opts.HandshakeTimeout)
	default:
		if !hasHello {
			f.Note(flow.NoteMalformed, "the client's TLS handshake could not be read: "+err.Error())
			return
		}
		f.Note(flow.NoteMalformed, "the client's TLS handshake could not be completed: "+err.Error())
	}
}

// tunnel relays bytes between the client and the CONNECT target without
// reading them, and records the connection's metadata. up, when not nil,
// is the target already dialled. Once no byte has moved either way for
// TunnelIdleTimeout, both sides are let go.
func (p *Proxy) tunnel(client *bufio.Reader, conn net.Conn, target, name, remote string, tlsInfo *flow.TLSInfo, up net.Conn, why flow.Note) {
	f := &flow.Flow{Start: p.opts.Now(), Host: name, Client: endpoint(remote), Device: p.device(remote), Transport: flow.TransportTCP, TLS: tlsInfo}
	if tlsInfo != nil {
		f.Transport = flow.TransportTLS
	}
	f.Notes = append(f.Notes, why)
	if up == nil {
		var err error
		if up, err = p.dialer.Dial("tcp", target); err != nil {
			f.Note(flow.NoteUpstream, "upstream: "+err.Error())
			f.End = p.opts.Now()
			p.emit(f)
			return
		}
	}
	defer up.Close()
	if ap, err := netip.ParseAddrPort(up.RemoteAddr().String()); err == nil {
		f.Server = flow.Endpoint{Addr: ap.Addr().Unmap(), Port: ap.Port()}
	}
	quiet(conn)
	conn.SetDeadline(time.Time{}) // a conn that is not a timedConn (net/http's, after Hijack)
	watch := watchIdle(p.opts.TunnelIdleTimeout, func() {
		now := time.Now()
		conn.SetDeadline(now)
		up.SetDeadline(now)
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.BytesUp, _ = relayCopy(up, client, watch)
		closeWrite(up)
	}()
	f.BytesDown, _ = relayCopy(conn, up, watch)
	closeWrite(conn)
	wg.Wait()
	if watch.end() {
		f.Notef(flow.NoteTunnel, "closed after %s with no byte either way", p.opts.TunnelIdleTimeout)
	}
	f.End = p.opts.Now()
	p.emit(f)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// bufferedConn reads what the hijacked reader already buffered first.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// recorder passes a body through and keeps its first max bytes. The
// transport may still be reading a request body after RoundTrip returns, so
// the record is locked and complete only once the body is closed.
type recorder struct {
	r      io.ReadCloser
	max    int
	mu     sync.Mutex
	data   []byte
	size   int64
	once   sync.Once
	closed chan struct{}
}

func newRecorder(r io.ReadCloser, max int) *recorder {
	return &recorder{r: r, max: max, closed: make(chan struct{})}
}

func (rc *recorder) Read(b []byte) (int, error) {
	if rc.r == nil {
		return 0, io.EOF
	}
	n, err := rc.r.Read(b)
	rc.mu.Lock()
	rc.size += int64(n)
	if room := rc.max - len(rc.data); room > 0 {
		rc.data = append(rc.data, b[:min(n, room)]...)
	}
	rc.mu.Unlock()
	return n, err
}

// done reports whether the body was read to its end and closed.
func (rc *recorder) done() bool {
	select {
	case <-rc.closed:
		return true
	default:
		return false
	}
}

func (rc *recorder) Close() error {
	rc.once.Do(func() { close(rc.closed) })
	if rc.r == nil {
		return nil
	}
	return rc.r.Close()
}

// body returns what was recorded, waiting up to wait for the body to be closed.
func (rc *recorder) body(wait time.Duration) flow.Body {
	select {
	case <-rc.closed:
	case <-time.After(wait):
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	data := append([]byte(nil), rc.data...)
	return flow.Body{Data: data, Size: rc.size, Truncated: int64(len(data)) < rc.size}
}

// flushWriter flushes after each write so streamed responses stream.
type flushWriter struct{ w http.ResponseWriter }

// copyBuffers are the buffers responses are relayed through.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func (fw flushWriter) Write(b []byte) (int, error) {
	n, err := fw.w.Write(b)
	if f, ok := fw.w.(http.Flusher); ok {
		f.Flush()
	}
	return n, err
}

var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, k := range strings.Split(f, ",") {
			h.Del(strings.TrimSpace(k))
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

func headers(h http.Header, host string) flow.Headers {
	out := make(flow.Headers, 0, len(h)+1)
	if host != "" {
		out = append(out, flow.Header{Name: "Host", Value: host})
	}
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, flow.Header{Name: k, Value: v})
		}
	}
	return out
}

// device is the name Options.Device gives the client at remote, or "".
func (p *Proxy) device(remote string) string {
	if p.opts.Device == nil {
		return ""
	}
	return p.opts.Device(endpoint(remote).Addr)
}

func endpoint(addr string) flow.Endpoint {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return flow.Endpoint{}
	}
	return flow.Endpoint{Addr: ap.Addr().Unmap(), Port: ap.Port()}
}

// shutdownGrace is how long requests in flight get to finish once the proxy
// is told to stop; connections still busy then are closed.
const shutdownGrace = 5 * time.Second

// Serve runs the proxy on ln until ctx ends, then stops accepting, finishes
// requests in flight (up to shutdownGrace), closes what is left and returns
// once every connection's goroutine has returned: no flow is emitted after
// Serve returns.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	var conns sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	// Requests run under hard, which ends only when the grace is over: a
	// request in flight when ctx ends is finished, not cut. ctx itself only
	// lets idle connections go.
	hard, cutInFlight := context.WithCancel(context.WithoutCancel(ctx))
	defer cutInFlight()
	connCtx := context.WithValue(hard, stoppingKey{}, ctx)
	var err error
	var backoff time.Duration
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			if ctx.Err() != nil || !retryAccept(err) {
				break
			}
			// out of descriptors or memory (5,000 idle clients, say): the
			// listener is kept, and tried again as the timeouts free some
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.opts.Logger.Warn("proxy: accept failed, trying again", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
		mu.Lock()
		open[c] = struct{}{}
		mu.Unlock()
		conns.Add(1)
		go func() {
			defer conns.Done()
			p.serveClient(connCtx, c)
			mu.Lock()
			delete(open, c)
			mu.Unlock()
		}()
	}
	// requests in flight finish, for a while; idle connections are let go at once
	done := make(chan struct{})
	go func() { conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		cutInFlight()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		<-done
	}
	p.Close()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// serveClient serves the HTTP/1 requests of one client of the explicit proxy
// on this goroutine: absolute-form requests are forwarded, CONNECT opens a
// tunnel, and the answer is written straight back.
func (p *Proxy) serveClient(ctx context.Context, raw net.Conn) {
	defer raw.Close()
	conn := p.timed(raw)
	stopping := stoppingCtx(ctx)
	nudge := context.AfterFunc(stopping, func() { conn.SetReadDeadline(time.Now()) })
	defer nudge()
	// No buffer is taken before the client's first byte: a connection
	// that sends nothing costs its goroutine and its socket, for
	// HeaderTimeout, which bounds the whole first head.
	headBy := until(p.opts.HeaderTimeout)
	conn.SetReadDeadline(headBy)
	pr, err := awaitFirst(conn)
	if err != nil {
		return
	}
	lim := newHeadLimit(pr)
	br := getReader(lim)
	remote := conn.RemoteAddr().String()
	c := &clientConn{conn: conn, tc: conn, lim: lim, br: br, remote: remote, scheme: "http", explicit: true, first: true, idle: p.opts.IdleTimeout, headBy: headBy}
	hijacked := false
	defer func() {
		c.releaseWriter()
		// a tunnel's reader may still be in a read on a goroutine of
		// net/http's HTTP/2 server for a moment: not handed to another
		if !hijacked {
			putReader(br)
		}
	}()
	for {
		req, keep := p.nextRequest(ctx, c, stopping)
		if !keep {
			return
		}
		if req == nil { // served on the fast path
			c.releaseWriter()
			continue
		}
		req.RemoteAddr = remote
		if req.Method == http.MethodConnect && !nudge() {
			return // stopping already: no new tunnel
		}
		rw := newResponseWriter(conn, br, c.bw, req.Method)
		rw.http10 = !req.ProtoAtLeast(1, 1)
		p.ServeHTTP(rw, req.WithContext(ctx))
		hijacked = rw.hijack
		if err := rw.finish(); err != nil || req.Close || rw.close {
			return
		}
		// what the handler left of the request body must not be read as the next request
		if req.Body != nil {
			if n, _ := io.CopyN(io.Discard, req.Body, 256<<10); n == 256<<10 {
				return
			}
		}
		c.releaseWriter()
	}
}

// timed wraps a connection the proxy serves or dials: a write that makes
// no progress for IdleTimeout fails (a peer that stopped reading).
func (p *Proxy) timed(c net.Conn) *timedConn {
	t := newTimedConn(c)
	t.stallWrites(p.opts.IdleTimeout)
	return t
}

// stoppingKey carries, in a connection's context, the context whose end
// means "stop taking requests" (the connection's own context ends later,
// when requests in flight are to be cut).
type stoppingKey struct{}

func stoppingCtx(ctx context.Context) context.Context {
	if s, ok := ctx.Value(stoppingKey{}).(context.Context); ok {
		return s
	}
	return ctx
}

// retryAccept reports whether an accept failed for want of a resource that
// comes back (descriptors, buffers, memory) rather than for good.
func retryAccept(err error) bool {
	return isTimeout(err) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeError answers a client whose request could not be read, and the
// connection closes.
func writeError(conn net.Conn, code int, msg string) {
	fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s\n",
		code, http.StatusText(code), len(msg)+1, msg)
}
