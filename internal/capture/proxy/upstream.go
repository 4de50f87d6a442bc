package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"phonehome/internal/flow"
)

// The proxy speaks HTTP/1.1 to servers over its own pool of connections, on
// the goroutine that serves the client: a request is written and its answer
// read without handing it to other goroutines (net/http's Transport has a
// reader and a writer goroutine per connection, and each hand-off costs a
// wake-up: a quarter of a millisecond per request at concurrency 1).

const (
	maxIdlePerHost = 64
	idleTimeout    = 90 * time.Second
)

type upConn struct {
	conn   net.Conn
	t      *timedConn // under conn (and under its TLS): its stalls
	lim    *headLimit // between conn and br: bounds an answer's head
	br     *bufio.Reader
	bw     *bufio.Writer
	key    string
	idle   time.Time
	fresh  bool // dialled for this request: a failure is not a stale keep-alive
	server flow.Endpoint
}

type upstreamPool struct {
	mu        sync.Mutex
	idle      map[string][]*upConn
	dialer    *net.Dialer
	tls       *tls.Config
	timed     func(net.Conn) *timedConn
	handshake time.Duration
}

func newUpstreamPool(dialer *net.Dialer, cfg *tls.Config, timed func(net.Conn) *timedConn, handshake time.Duration) *upstreamPool {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	return &upstreamPool{idle: map[string][]*upConn{}, dialer: dialer, tls: cfg, timed: timed, handshake: handshake}
}

// get returns an idle connection for key, or nil.
func (u *upstreamPool) get(key string) *upConn {
	u.mu.Lock()
	defer u.mu.Unlock()
	for {
		list := u.idle[key]
		if len(list) == 0 {
			return nil
		}
		c := list[len(list)-1]
		u.idle[key] = list[:len(list)-1]
		if time.Since(c.idle) < idleTimeout {
			return c
		}
		c.conn.Close()
	}
}

// put keeps c for the next request to the same server.
func (u *upstreamPool) put(c *upConn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.idle[c.key]) >= maxIdlePerHost {
		c.conn.Close()
		return
	}
	c.idle, c.fresh = time.Now(), false
	u.idle[c.key] = append(u.idle[c.key], c)
}

// closeIdle closes every idle connection.
func (u *upstreamPool) closeIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, list := range u.idle {
		for _, c := range list {
			c.conn.Close()
		}
		delete(u.idle, k)
	}
}

// dial connects to addr (host:port, or the original destination for a
// transparently intercepted request) and, for https, verifies the server as
// host.
func (u *upstreamPool) dial(ctx context.Context, scheme, host, addr, key string) (*upConn, error) {
	raw, err := u.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t := u.timed(raw)
	var conn net.Conn = t
	if scheme == "https" {
		cfg := u.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(conn, cfg)
		// a server that accepts and never completes the handshake
		t.SetDeadline(until(u.handshake))
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			if isTimeout(err) {
				err = fmt.Errorf("TLS handshake not done within %s: %w", u.handshake, err)
			}
			return nil, err
		}
		t.SetDeadline(time.Time{})
		conn = tc
	}
	lim := newHeadLimit(conn)
	c := &upConn{conn: conn, t: t, lim: lim, br: bufio.NewReaderSize(lim, 64<<10), bw: bufio.NewWriterSize(conn, 64<<10), key: key, fresh: true}
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		c.server = flow.Endpoint{Addr: ap.Addr().Unmap(), Port: ap.Port()}
	}
	return c, nil
}

// roundTrip sends req to its server and reads the answer's head. The caller
// reads the body and then calls done(true) if the connection may serve
// another request, done(false) otherwise.
func (p *Proxy) roundTrip(req *http.Request) (*http.Response, *upConn, error) {
	ctx := req.Context()
	scheme, host := req.URL.Scheme, req.URL.Hostname()
	port := req.URL.Port()
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	retryable := req.Body == nil || req.Body == http.NoBody
	for attempt := 0; ; attempt++ {
		c, err := p.connFor(ctx, scheme, host, port)
		if err != nil {
			return nil, nil, err
		}
		resp, err := p.exchange(c, req)
		if err == nil {
			return resp, c, nil
		}
		c.conn.Close()
		// a keep-alive connection the server closed meanwhile: once more on a new one
		if c.fresh || !retryable || attempt > 0 || !isStale(err) {
			return nil, nil, err
		}
	}
}

// connFor returns an idle connection to the server, or a new one.
func (p *Proxy) connFor(ctx context.Context, scheme, host, port string) (*upConn, error) {
	authority := net.JoinHostPort(host, port)
	addr := authority
	if to, ok := ctx.Value(dialKey{}).(string); ok {
		addr = to // transparent mode: the connection's original destination
	}
	key := scheme + " " + authority + " " + addr
	if c := p.upstream.get(key); c != nil {
		return c, nil
	}
	return p.upstream.dial(ctx, scheme, host, addr, key)
}

func (p *Proxy) exchange(c *upConn, req *http.Request) (*http.Response, error) {
	dl, hasDeadline := req.Context().Deadline()
	if hasDeadline {
		c.conn.SetDeadline(dl)
	} else {
		p.armUpstream(c)
	}
	stop := context.AfterFunc(req.Context(), func() { c.conn.SetDeadline(time.Now()) })
	defer stop()
	if err := req.Write(c.bw); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	resp, err := p.readAnswer(c, req.Method)
	if err == nil && !hasDeadline {
		c.t.stallReads(p.opts.IdleTimeout) // a body that stops coming is cut
	}
	return resp, err
}

// armUpstream bounds what a server may keep waiting before a request is
// sent: each write to IdleTimeout, and the wait for the answer's head to
// ResponseHeaderTimeout (the caller moves reads to IdleTimeout once the
// head is in).
func (p *Proxy) armUpstream(c *upConn) {
	c.t.stallWrites(p.opts.IdleTimeout)
	c.t.stallReads(p.opts.ResponseHeaderTimeout)
}

// readAnswer reads the server's answer head, past interim (1xx) answers,
// bounded in time (ResponseHeaderTimeout, while it is awaited) and in size.
func (p *Proxy) readAnswer(c *upConn, method string) (*http.Response, error) {
	c.lim.start(p.opts.MaxHeaderBytes + c.br.Size())
	defer c.lim.stop()
	resp, err := readFinal(c.br, method)
	if err != nil && c.lim.hit {
		return nil, fmt.Errorf("the answer's head is larger than %d bytes", p.opts.MaxHeaderBytes)
	}
	return resp, p.awaitingAnswer(err)
}

func isStale(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &ne) && !ne.Timeout()
}

// release returns c to the pool when the exchange left it clean.
func (p *Proxy) release(c *upConn, reuse bool) {
	if c == nil {
		return
	}
	if reuse {
		p.upstream.put(c)
		return
	}
	c.conn.Close()
}
