package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Every stage a client or server could stretch is bounded, so that a
// hostile or broken peer costs one goroutine, one socket and a few buffers
// for a known time, and never holds up anyone else:
//
//	accept → first byte → head          HeaderTimeout (431 past MaxHeaderBytes)
//	CONNECT 200 → ClientHello → handshake  HandshakeTimeout (server side too)
//	between requests, a stalled body     IdleTimeout
//	raw, passed-through, upgraded tunnel TunnelIdleTimeout (no byte either way)
//	dial                                 DialTimer
//	request sent → answer's head          ResponseHeaderTimeout (504)
//
// Deadlines are moved on coarsely (see timedConn), so that a connection
// streaming many small reads costs a clock read per read, not a timer reset.

// timedConn bounds the reads and the writes of a connection that make no
// progress. While a stall is set for a direction, each read (or write)
// fails with a timeout when it has waited that long, give or take an
// eighth: the deadline is moved on only when less than seven eighths of it
// are left. Without one, the deadlines are the caller's: an explicit
// SetReadDeadline (SetWriteDeadline, SetDeadline) turns the stall of its
// direction off, so a nudge from another goroutine (shutdown, a cancelled
// request) is never overwritten by the next read.
type timedConn struct {
	net.Conn
	mu                    sync.Mutex // orders a stall's deadline against an explicit one
	readStall, writeStall atomic.Int64
	readBy, writeBy       atomic.Int64 // the deadline a stall set last, Unix nanoseconds
}

func newTimedConn(c net.Conn) *timedConn { return &timedConn{Conn: c} }

func (c *timedConn) Read(b []byte) (int, error) {
	if d := c.readStall.Load(); d > 0 {
		c.refresh(&c.readStall, &c.readBy, d, c.Conn.SetReadDeadline)
	}
	return c.Conn.Read(b)
}

func (c *timedConn) Write(b []byte) (int, error) {
	if d := c.writeStall.Load(); d > 0 {
		c.refresh(&c.writeStall, &c.writeBy, d, c.Conn.SetWriteDeadline)
	}
	return c.Conn.Write(b)
}

func (c *timedConn) refresh(stall, by *atomic.Int64, d int64, set func(time.Time) error) {
	now := time.Now()
	if by.Load()-now.UnixNano() >= d-d/8 {
		return
	}
	c.mu.Lock()
	if stall.Load() == d { // not turned off meanwhile
		t := now.Add(time.Duration(d))
		by.Store(t.UnixNano())
		set(t)
	}
	c.mu.Unlock()
}

// stallReads makes each read fail once it has waited d; d <= 0 clears
// the read deadline and leaves it to the caller.
func (c *timedConn) stallReads(d time.Duration) {
	c.stall(&c.readStall, &c.readBy, d, c.Conn.SetReadDeadline)
}

// stallWrites is stallReads for writes.
func (c *timedConn) stallWrites(d time.Duration) {
	c.stall(&c.writeStall, &c.writeBy, d, c.Conn.SetWriteDeadline)
}

func (c *timedConn) stall(stall, by *atomic.Int64, d time.Duration, set func(time.Time) error) {
	d = max(d, 0)
	if d > 0 && stall.Load() == int64(d) {
		return // the common case, between two requests: nothing to do
	}
	c.mu.Lock()
	stall.Store(int64(d))
	by.Store(0) // the next read or write sets its deadline
	if d == 0 {
		set(time.Time{})
	}
	c.mu.Unlock()
}

func (c *timedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readStall.Store(0)
	return c.Conn.SetReadDeadline(t)
}

func (c *timedConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeStall.Store(0)
	return c.Conn.SetWriteDeadline(t)
}

func (c *timedConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readStall.Store(0)
	c.writeStall.Store(0)
	return c.Conn.SetDeadline(t)
}

// CloseWrite half-closes the connection underneath, for tunnels.
func (c *timedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// timedOf finds the timedConn under a client connection: itself, or under
// the TLS of a decrypted tunnel; nil when there is none.
func timedOf(c net.Conn) *timedConn {
	for c != nil {
		switch x := c.(type) {
		case *timedConn:
			return x
		case *bufferedConn:
			c = x.Conn
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// quiet clears c's deadlines and stalls: from now on its deadlines are
// the caller's (a tunnel's idle watch, net/http's HTTP/2 server).
func quiet(c net.Conn) {
	if t := timedOf(c); t != nil {
		t.SetDeadline(time.Time{})
	}
}

// until is the deadline d from now, or none for a negative d.
func until(d time.Duration) time.Time {
	if d < 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// errHeadTooLarge ends the read of a head larger than the limit.
var errHeadTooLarge = errors.New("head too large")

// headLimit sits between a connection and its buffered reader and bounds
// what is read while a head is: textproto reads a line of any length, and
// http.ReadRequest and http.ReadResponse a head of any size.
type headLimit struct {
	r    io.Reader
	left int64 // what may still be read for the head; < 0: no head is being read
	read int64 // bytes read in all
	hit  bool
}

func newHeadLimit(r io.Reader) *headLimit { return &headLimit{r: r, left: -1} }

// start bounds what is read from now on to n bytes, until stop.
func (l *headLimit) start(n int) { l.left, l.hit = int64(n), false }

func (l *headLimit) stop() { l.left = -1 }

func (l *headLimit) Read(b []byte) (int, error) {
	if l.left >= 0 {
		if l.left == 0 {
			l.hit = true
			return 0, errHeadTooLarge
		}
		b = b[:min(int64(len(b)), l.left)]
	}
	n, err := l.r.Read(b)
	l.read += int64(n)
	if l.left >= 0 {
		l.left -= int64(n)
	}
	return n, err
}

// primed gives the byte that was awaited on its own first (so that no
// buffer is taken for a connection that sends nothing), then reads on.
type primed struct {
	r   io.Reader
	b   byte
	has bool
}

func (p *primed) Read(b []byte) (int, error) {
	if !p.has || len(b) == 0 {
		return p.r.Read(b)
	}
	p.has = false
	b[0] = p.b
	if len(b) == 1 {
		return 1, nil
	}
	// the rest of what came with it (a whole head, usually), so that the
	// first request is as likely to be served on the fast path as the next
	n, err := p.r.Read(b[1:])
	return n + 1, err
}

// awaitFirst waits, without a buffer, for the first byte of a connection,
// until the deadline already set on it.
func awaitFirst(c net.Conn) (*primed, error) {
	var one [1]byte
	if _, err := io.ReadFull(c, one[:]); err != nil {
		return nil, err
	}
	return &primed{r: c, b: one[0], has: true}, nil
}

var (
	clientReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
	clientWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}
)

func getReader(r io.Reader) *bufio.Reader {
	br := clientReaders.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	clientReaders.Put(br)
}

func getWriter(w io.Writer) *bufio.Writer {
	bw := clientWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	clientWriters.Put(bw)
}

// idleWatch calls stop once no byte has moved for d (a tunnel, where
// either side may be quiet for long while the other talks).
type idleWatch struct {
	d     time.Duration
	last  atomic.Int64 // when a byte last moved, Unix nanoseconds
	mu    sync.Mutex
	t     *time.Timer
	done  bool
	fired atomic.Bool
}

// watchIdle starts a watch; d <= 0 watches nothing.
func watchIdle(d time.Duration, stop func()) *idleWatch {
	w := &idleWatch{d: d}
	w.moved()
	if d > 0 {
		w.mu.Lock()
		w.t = time.AfterFunc(d, func() { w.check(stop) })
		w.mu.Unlock()
	}
	return w
}

func (w *idleWatch) moved() { w.last.Store(time.Now().UnixNano()) }

func (w *idleWatch) check(stop func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	idle := time.Duration(time.Now().UnixNano() - w.last.Load())
	if idle >= w.d {
		w.done = true
		w.fired.Store(true)
		stop()
		return
	}
	w.t.Reset(w.d - idle)
}

// end stops the watch and reports whether it was what closed the tunnel.
func (w *idleWatch) end() bool {
	w.mu.Lock()
	w.done = true
	if w.t != nil {
		w.t.Stop()
	}
	w.mu.Unlock()
	return w.fired.Load()
}

var relayBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// relayCopy copies src to dst until src ends, telling w of every byte moved.
func relayCopy(dst io.Writer, src io.Reader, w *idleWatch) (int64, error) {
	buf := relayBuffers.Get().(*[]byte)
	defer relayBuffers.Put(buf)
	var n int64
	for {
		k, rerr := src.Read(*buf)
		if k > 0 {
			w.moved()
			wk, werr := dst.Write((*buf)[:k])
			n += int64(wk)
			if werr != nil {
				return n, werr
			}
			w.moved()
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// noAnswerError: the server took the request and sent no answer in time.
type noAnswerError struct {
	after time.Duration
	err   error
}

func (e *noAnswerError) Error() string {
	return fmt.Sprintf("no answer within %s (%v)", e.after, e.err)
}

func (e *noAnswerError) Unwrap() error { return e.err }

// awaitingAnswer turns a timeout while the answer's head is awaited into
// a noAnswerError.
func (p *Proxy) awaitingAnswer(err error) error {
	if err != nil && isTimeout(err) {
		return &noAnswerError{after: p.opts.ResponseHeaderTimeout, err: err}
	}
	return err
}
