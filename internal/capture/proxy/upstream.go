package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
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
	br     *bufio.Reader
	bw     *bufio.Writer
	key    string
	idle   time.Time
	fresh  bool // dialled for this request: a failure is not a stale keep-alive
	server flow.Endpoint
}

type upstreamPool struct {
	mu     sync.Mutex
	idle   map[string][]*upConn
	dialer *net.Dialer
	tls    *tls.Config
}

func newUpstreamPool(timeout time.Duration, cfg *tls.Config) *upstreamPool {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	return &upstreamPool{idle: map[string][]*upConn{}, dialer: &net.Dialer{Timeout: timeout}, tls: cfg}
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
	conn, err := u.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if scheme == "https" {
		cfg := u.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	c := &upConn{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), bw: bufio.NewWriterSize(conn, 64<<10), key: key, fresh: true}
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
	if dl, ok := req.Context().Deadline(); ok {
		c.conn.SetDeadline(dl)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(req.Context(), func() { c.conn.SetDeadline(time.Now()) })
	defer stop()
	if err := req.Write(c.bw); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue // 100 Continue and other interim answers: the final one follows
		}
		return resp, nil
	}
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
