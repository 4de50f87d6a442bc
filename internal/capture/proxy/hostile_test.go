package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"phonehome/internal/capture"
	"phonehome/internal/flow"
)

// Hostile clients and servers, with real sockets on loopback: each attack
// must cost bounded time and memory, and the proxy must go on serving a
// normal client during and after it.

// startHostile starts a proxy with short timeouts, changed further by set,
// and stops it when the test ends.
func startHostile(t *testing.T, roots *x509.CertPool, set func(*Options)) *harness {
	t.Helper()
	_, ca, m := testMinter(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	h := &harness{ca: ca.Cert, caPool: pool, done: make(chan struct{})}
	opts := Options{Minter: m, Upstream: &tls.Config{RootCAs: roots}, MaxBody: 1 << 16,
		HeaderTimeout: 5 * time.Second, HandshakeTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		TunnelIdleTimeout: 5 * time.Second, ResponseHeaderTimeout: 5 * time.Second, DialTimer: 2 * time.Second,
		Handler: capture.Observer(func(f *flow.Flow) { h.mu.Lock(); h.flows = append(h.flows, f); h.mu.Unlock() })}
	if set != nil {
		set(&opts)
	}
	p := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.proxyURL = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { p.Serve(ctx, ln); close(h.done) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) addr() string { return strings.TrimPrefix(h.proxyURL, "http://") }

// client is a normal client of the proxy: Go's, one connection per request.
func (h *harness) client() *http.Client {
	pu, _ := url.Parse(h.proxyURL)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: h.caPool}, DisableKeepAlives: true}}
}

// servesOthers checks that a normal request through the proxy is answered,
// and quickly.
func servesOthers(t *testing.T, h *harness, u string) {
	t.Helper()
	start := time.Now()
	resp, err := h.client().Get(u)
	if err != nil {
		t.Fatalf("a normal client is not served: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `"ads"`) {
		t.Fatalf("a normal client is not served: %d %v %q", resp.StatusCode, err, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a normal request took %s", d)
	}
}

// heapInuse is the heap in use once what is garbage was collected (twice:
// sync.Pool keeps a victim cache for one cycle).
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func checkHeap(t *testing.T, before uint64, slack uint64) {
	t.Helper()
	if after := heapInuse(); after > before+slack {
		t.Errorf("heap in use: %d MiB before, %d MiB after the attackers left", before>>20, after>>20)
	}
}

// flowWith returns the first flow with the note code, or nil.
func (h *harness) flowWith(code flow.NoteCode) *flow.Flow {
	for _, f := range h.got() {
		if f.Notes.Has(code) {
			return f
		}
	}
	return nil
}

// waitFlow waits for a flow with the note code.
func (h *harness) waitFlow(t *testing.T, code flow.NoteCode) *flow.Flow {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if f := h.flowWith(code); f != nil {
			return f
		}
	}
	t.Fatalf("no flow noted %s: %+v", code, h.got())
	return nil
}

// closedWithin reads c until it ends and fails if that takes longer than d;
// it returns what was read.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) string {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d + 3*time.Second))
	b, err := io.ReadAll(c)
	if isTimeout(err) || time.Since(start) > d+time.Second {
		t.Fatalf("the connection was still open after %s (want closed within %s): %v", time.Since(start), d, err)
	}
	return string(b)
}

// answeredThenLetGo reads one 200 answer from c, then fails unless the
// proxy closes c within about idle; what names the failure.
func answeredThenLetGo(t *testing.T, c net.Conn, idle time.Duration, what string) {
	t.Helper()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", err, resp)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	c.SetReadDeadline(start.Add(idle + 3*time.Second))
	if _, err := br.ReadByte(); isTimeout(err) || time.Since(start) > idle+time.Second {
		t.Fatalf("%s after %s", what, time.Since(start))
	}
}

// dialConnect opens a tunnel to target through the proxy and returns the
// connection and the proxy's answer head.
func dialConnect(t *testing.T, h *harness, target string) (net.Conn, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", h.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	if resp.StatusCode == 200 && br.Buffered() > 0 {
		t.Fatalf("bytes after the CONNECT answer")
	}
	return c, resp
}

// silentServer accepts connections, reads what comes and never answers; it
// returns its address and a count of connections it still holds.
func silentServer(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var open atomic.Int32
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			open.Add(1)
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer open.Add(-1)
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String(), &open
}

// closedPort returns an address on loopback where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestGarbageAfterConnect: what a client sends after CONNECT that is not a
// TLS handshake, or only starts like one, is bounded in time; a host is not
// taken for pinned because of garbage; a client that says nothing gets its
// server's greeting (server-first protocols).
func TestGarbageAfterConnect(t *testing.T) {
	plain, secure, roots := upstreams(t)
	silent, held := silentServer(t)
	greeter := serveOnce(t, func(c net.Conn) { io.WriteString(c, "220 greeter ready\r\n"); io.Copy(io.Discard, c) })
	const tunnelIdle, handshake = 500 * time.Millisecond, time.Second
	h := startHostile(t, roots, func(o *Options) { o.TunnelIdleTimeout, o.HandshakeTimeout = tunnelIdle, handshake })
	servesOthers(t, h, plain.URL+"/ads")
	baseline := runtime.NumGoroutine()
	before := heapInuse()

	t.Run("raw garbage to a silent server", func(t *testing.T) {
		c, resp := dialConnect(t, h, silent)
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %d", resp.StatusCode)
		}
		c.Write([]byte("\x00\x01\x02 this is not TLS \xff\xfe"))
		servesOthers(t, h, plain.URL+"/ads") // meanwhile
		closedWithin(t, c, tunnelIdle)
		f := h.waitFlow(t, flow.NoteTunnel)
		if !strings.Contains(f.Notes.String(), "no byte either way") || f.BytesUp != 22 {
			t.Errorf("the raw tunnel's flow: %v, %d bytes up", f.Notes, f.BytesUp)
		}
	})

	t.Run("a TLS record header, then garbage, then nothing", func(t *testing.T) {
		c, _ := dialConnect(t, h, strings.TrimPrefix(secure.URL, "https://"))
		c.Write(append([]byte{22, 3, 1, 0x40, 0}, bytes.Repeat([]byte{0xee}, 100)...)) // promises 16 KiB
		closedWithin(t, c, handshake)
	})
	t.Run("a TLS record of garbage", func(t *testing.T) {
		c, _ := dialConnect(t, h, strings.TrimPrefix(secure.URL, "https://"))
		c.Write(append([]byte{22, 3, 1, 0, 100}, bytes.Repeat([]byte{0xee}, 100)...))
		closedWithin(t, c, handshake)
	})
	if f := h.flowWith(flow.NoteCertRefused); f != nil {
		t.Errorf("garbage was taken for a client refusing the certificate: %v", f.Notes)
	}
	if f := h.waitFlow(t, flow.NoteMalformed); f.Transport != flow.TransportTLS {
		t.Errorf("the broken handshake's flow: %+v", f)
	}
	// the host is still intercepted, not passed through
	resp, err := h.client().Get(secure.URL + "/ads")
	if err != nil {
		t.Fatalf("HTTPS after the garbage: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var decrypted bool
	for deadline := time.Now().Add(5 * time.Second); !decrypted && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, f := range h.got() {
			decrypted = decrypted || f.Request != nil && f.TLS != nil && f.TLS.Decrypted
		}
	}
	if !decrypted {
		t.Error("after garbage, the host must still be intercepted")
	}

	t.Run("nothing at all: the server speaks first", func(t *testing.T) {
		c, _ := dialConnect(t, h, greeter)
		c.SetReadDeadline(time.Now().Add(handshake + 3*time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "220 greeter ready\r\n" {
			t.Fatalf("a server-first protocol through CONNECT: %q %v", line, err)
		}
		c.Close()
	})

	servesOthers(t, h, plain.URL+"/ads")
	for deadline := time.Now().Add(5 * time.Second); held.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := held.Load(); n > 0 {
		t.Errorf("the silent server still holds %d connections from the proxy", n)
	}
	waitGoroutines(t, baseline)
	checkHeap(t, before, 8<<20)
}

// TestConnectUnreachable: a CONNECT to a closed port. Passed through by
// name, it is dialled first and answered 502; intercepted, the 200 comes
// first and the request inside the tunnel is answered 502; raw bytes or
// silence after the 200 find the tunnel closed at once (or after the
// handshake timeout), never hanging.
func TestConnectUnreachable(t *testing.T) {
	closed := closedPort(t)
	plain, _, _ := upstreams(t)
	const handshake = time.Second
	h := startHostile(t, nil, func(o *Options) { o.Ignore = []string{"localhost"}; o.HandshakeTimeout = handshake })
	baseline := runtime.NumGoroutine()

	_, port, _ := net.SplitHostPort(closed)
	c, resp := dialConnect(t, h, "localhost:"+port)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("CONNECT to a closed port, passed through: %d, want 502", resp.StatusCode)
	}
	c.Close()
	if f := h.waitFlow(t, flow.NoteUpstream); !f.Notes.Has(flow.NotePassthrough) || f.Host != "localhost" {
		t.Errorf("the refused CONNECT's flow: %+v", f)
	}

	resp2, err := h.client().Get("https://" + closed + "/ads")
	if err != nil {
		t.Fatalf("HTTPS to a closed port through the proxy: %v", err)
	}
	body, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "could not reach") {
		t.Errorf("inside the intercepted tunnel: %d %q, want 502", resp2.StatusCode, body)
	}

	c, resp = dialConnect(t, h, closed)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT, intercepted: %d", resp.StatusCode)
	}
	io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
	closedWithin(t, c, 500*time.Millisecond)

	c, _ = dialConnect(t, h, closed) // and says nothing
	closedWithin(t, c, handshake)

	servesOthers(t, h, plain.URL+"/ads")
	waitGoroutines(t, baseline)
}

// raiseFiles makes room for n more descriptors, or skips the test.
func raiseFiles(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot read the descriptor limit: %v", err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("needs %d file descriptors; the hard limit is %d (ulimit -Hn)", n, lim.Max)
	}
	old := lim
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot raise the descriptor limit to %d: %v", n, err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// TestSlowloris: 5,000 connections that send nothing or half a request
// line. Each costs a goroutine and its socket (and, once it sent a byte, a
// reader), all are let go after the header timeout (408 to those that
// said something), and a normal client is served all along.
func TestSlowloris(t *testing.T) {
	if testing.Short() {
		t.Skip("5,000 connections")
	}
	const attackers = 5000
	raiseFiles(t, 2*attackers+1000) // both ends of each connection live in this process
	plain, _, _ := upstreams(t)
	const headerTimeout = 3 * time.Second
	h := startHostile(t, nil, func(o *Options) { o.HeaderTimeout = headerTimeout })
	servesOthers(t, h, plain.URL+"/ads")
	baseline := runtime.NumGoroutine()
	before := heapInuse()

	conns := make([]net.Conn, attackers)
	dialled := make([]time.Time, attackers)
	var next atomic.Int32
	var wg sync.WaitGroup
	var dialErr atomic.Value
	start := time.Now()
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= attackers {
					return
				}
				c, err := net.Dial("tcp", h.addr())
				if err != nil {
					dialErr.Store(err)
					return
				}
				dialled[i] = time.Now()
				if i%2 == 1 {
					io.WriteString(c, "GET http://example.com/ HT") // and never the rest
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if err, _ := dialErr.Load().(error); err != nil {
		t.Fatalf("dialling the attackers: %v", err)
	}
	t.Logf("%d connections open in %s", attackers, time.Since(start).Round(time.Millisecond))
	if time.Since(start) > headerTimeout {
		t.Logf("dialling took longer than the header timeout: the first were let go already")
	}

	// under attack: a normal client is served, quickly
	for i := 0; i < 5; i++ {
		servesOthers(t, h, plain.URL+"/ads")
	}
	during := heapInuse()
	if during > before {
		per := (during - before) / attackers
		t.Logf("heap in use under attack: %d MiB more, %d bytes per connection", (during-before)>>20, per)
		if per > 48<<10 {
			t.Errorf("each idle connection costs %d bytes of heap", per)
		}
	}

	// every attacker is let go by the proxy after the header timeout
	var late, unanswered atomic.Int32
	next.Store(0)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				i := int(next.Add(1)) - 1
				if i >= attackers {
					return
				}
				c := conns[i]
				// (a deadline already past fails a read at once, even on a
				// connection closed long ago: give each a moment)
				c.SetReadDeadline(later(dialled[i].Add(headerTimeout+5*time.Second), time.Now().Add(200*time.Millisecond)))
				var got []byte
				var err error
				for err == nil {
					var n int
					n, err = c.Read(buf)
					got = append(got, buf[:n]...)
				}
				if isTimeout(err) {
					late.Add(1)
				} else if i%2 == 1 && !bytes.HasPrefix(got, []byte("HTTP/1.1 408")) {
					unanswered.Add(1)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	if n := late.Load(); n > 0 {
		t.Errorf("%d connections were still open 5 s after the header timeout", n)
	}
	if n := unanswered.Load(); n > 0 {
		t.Errorf("%d clients that sent half a head got no 408", n)
	}
	servesOthers(t, h, plain.URL+"/ads")
	waitGoroutines(t, baseline)
	checkHeap(t, before, 16<<20)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestAcceptOutOfDescriptors: when the process runs out of descriptors,
// Serve keeps its listener and accepts again once the timeouts free some;
// it used to return, and the proxy served no one.
func TestAcceptOutOfDescriptors(t *testing.T) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd on this system")
	}
	plain, _, _ := upstreams(t)
	var logs lockedBuffer
	h := startHostile(t, nil, func(o *Options) {
		o.HeaderTimeout = 500 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	servesOthers(t, h, plain.URL+"/ads")

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot read the descriptor limit: %v", err)
	}
	old := lim
	lim.Cur = uint64(len(ents)) + 64
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot lower the descriptor limit: %v", err)
	}
	restored := false
	restore := func() {
		if !restored {
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
			restored = true
		}
	}
	defer restore()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for len(conns) < 500 {
		c, err := net.Dial("tcp", h.addr())
		if err != nil {
			break // out of descriptors here
		}
		conns = append(conns, c)
	}
	// one more, left pending for an accept that finds no descriptor
	if len(conns) > 0 {
		conns[0].Close()
		if c, err := net.Dial("tcp", h.addr()); err == nil {
			conns[0] = c
		}
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-h.done:
		t.Fatal("Serve returned when it ran out of descriptors")
	default:
	}
	// the header timeout lets the silent clients go: descriptors come back
	time.Sleep(time.Second)
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	restore()
	if !strings.Contains(logs.String(), "accept failed") {
		t.Log("the accept never ran out of descriptors here (the dials did first)")
	}
	select {
	case <-h.done:
		t.Fatal("Serve returned when it ran out of descriptors")
	default:
	}
	servesOthers(t, h, plain.URL+"/ads")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHugeHeader: a 1 MiB header is answered 431 and the connection
// closed, on the explicit proxy and inside a decrypted tunnel; a head
// that never ends is read no further than the limit; a server's endless
// head is answered 502.
func TestHugeHeader(t *testing.T) {
	plain, secure, roots := upstreams(t)
	h := startHostile(t, roots, nil)
	servesOthers(t, h, plain.URL+"/ads")
	baseline := runtime.NumGoroutine()
	before := heapInuse()
	big := strings.Repeat("a", 1<<20)

	try := func(t *testing.T, c net.Conn, target, host string) {
		t.Helper()
		go fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", target, host, big)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer to a 1 MiB header: %v", err)
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("a 1 MiB header: %d, want 431", resp.StatusCode)
		}
		io.Copy(io.Discard, resp.Body)
		if _, err := br.ReadByte(); err == nil {
			t.Error("the connection must close after 431")
		}
	}
	t.Run("explicit", func(t *testing.T) {
		c, err := net.Dial("tcp", h.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		try(t, c, plain.URL+"/ads", strings.TrimPrefix(plain.URL, "http://"))
	})
	t.Run("tunnel", func(t *testing.T) {
		target := strings.TrimPrefix(secure.URL, "https://")
		raw, _ := dialConnect(t, h, target)
		c := tls.Client(raw, &tls.Config{RootCAs: h.caPool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
		defer c.Close()
		try(t, c, "/ads", target)
	})
	t.Run("endless", func(t *testing.T) {
		c, err := net.Dial("tcp", h.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var sent atomic.Int64
		go func() {
			fmt.Fprintf(c, "GET %s/ads HTTP/1.1\r\nX-Endless: ", plain.URL)
			chunk := bytes.Repeat([]byte("b"), 64<<10)
			for sent.Load() < 256<<20 {
				n, err := c.Write(chunk)
				sent.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("a head that never ends: %v %v", err, resp)
		}
		c.Close()
		t.Logf("the client got to send %d MiB", sent.Load()>>20)
	})
	t.Run("from the server", func(t *testing.T) {
		endless := serveOnce(t, func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Endless: ")
			chunk := bytes.Repeat([]byte("c"), 64<<10)
			for i := 0; i < 4096; i++ { // 256 MiB, if anyone read them
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		})
		resp, err := h.client().Get("http://" + endless + "/endless")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "larger than") {
			t.Fatalf("a server's endless head: %d %q, want 502", resp.StatusCode, b)
		}
		if f := h.waitFlow(t, flow.NoteUpstream); !strings.Contains(f.Notes.String(), "larger than") {
			t.Errorf("the flow: %v", f.Notes)
		}
	})
	servesOthers(t, h, plain.URL+"/ads")
	waitGoroutines(t, baseline)
	checkHeap(t, before, 8<<20)
}

// resetting is a server that answers with a head and part of the body,
// then resets the connection.
func resetting(chunked bool) *httptest.Server {
	return httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		part := strings.Repeat("x", 10000)
		if chunked {
			fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(part), part)
		} else {
			fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n%s", part)
		}
		bw.Flush()
		time.Sleep(50 * time.Millisecond) // the part is on its way before the reset
		raw := conn
		if tc, ok := conn.(*tls.Conn); ok {
			raw = tc.NetConn()
		}
		raw.(*net.TCPConn).SetLinger(0)
		raw.Close()
	}))
}

// TestUpstreamResetsMidBody: the client sees the cut (never an answer that
// ends well), and the flow is recorded cut.
func TestUpstreamResetsMidBody(t *testing.T) {
	plain, _, roots := upstreams(t)
	cl, ch := resetting(false), resetting(true)
	cl.Start()
	ch.Start()
	tl, th := resetting(false), resetting(true)
	tl.StartTLS()
	th.StartTLS()
	for _, s := range []*httptest.Server{cl, ch, tl, th} {
		t.Cleanup(s.Close)
	}
	roots.AddCert(tl.Certificate()) // httptest's one certificate
	h := startHostile(t, roots, nil)
	servesOthers(t, h, plain.URL+"/ads")
	baseline := runtime.NumGoroutine()

	for _, tc := range []struct {
		name, url string
		h2        bool
	}{
		{"plain, length", cl.URL + "/length", false},
		{"plain, chunked", ch.URL + "/chunked", false},
		{"https, length", tl.URL + "/tls-length", false},
		{"https, chunked", th.URL + "/tls-chunked", false},
		{"https over HTTP/2, length", tl.URL + "/h2-length", true},
		{"https over HTTP/2, chunked", th.URL + "/h2-chunked", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.client()
			if tc.h2 {
				c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
			}
			resp, err := c.Get(tc.url)
			if err != nil {
				t.Fatalf("the head must come through: %v", err)
			}
			if tc.h2 && resp.ProtoMajor != 2 {
				t.Fatalf("HTTP/2 to the proxy: %s", resp.Proto)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("the client must see the cut, got a whole answer of %d bytes", len(b))
			}
			path := tc.url[strings.LastIndex(tc.url, "/"):]
			var f *flow.Flow
			for deadline := time.Now().Add(5 * time.Second); f == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				for _, g := range h.got() {
					if g.Request != nil && strings.HasSuffix(g.Request.URL, path) {
						f = g
					}
				}
			}
			if f == nil || !f.Notes.Has(flow.NoteResponseCut) || !f.Response.Body.Incomplete || f.Response.Status != 200 {
				t.Fatalf("the flow must be recorded cut: %+v", f)
			}
		})
	}
	servesOthers(t, h, plain.URL+"/ads")
	waitGoroutines(t, baseline)
}

// TestUpstreamNeverAnswers: a server that takes the request and never
// answers is answered 504 for it within the response-header timeout (and
// one that never finishes its TLS handshake 502 within the handshake
// timeout), and the flow is noted.
func TestUpstreamNeverAnswers(t *testing.T) {
	plain, _, roots := upstreams(t)
	release := make(chan struct{})
	hang := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
	mute := httptest.NewServer(http.HandlerFunc(hang))
	muteTLS := httptest.NewUnstartedServer(http.HandlerFunc(hang))
	muteTLS.StartTLS()
	roots.AddCert(muteTLS.Certificate())
	noHandshake, _ := silentServer(t)
	t.Cleanup(func() { close(release); mute.Close(); muteTLS.Close() })
	const answer, handshake = 500 * time.Millisecond, 1500 * time.Millisecond
	h := startHostile(t, roots, func(o *Options) { o.ResponseHeaderTimeout, o.HandshakeTimeout = answer, handshake })
	servesOthers(t, h, plain.URL+"/ads")
	baseline := runtime.NumGoroutine()

	for _, tc := range []struct {
		name, method, url string
		within            time.Duration
		status            int
		h2                bool
	}{
		{"plain GET", "GET", mute.URL + "/get", answer, 504, false},
		{"plain POST of unknown length", "POST", mute.URL + "/post", answer, 504, false},
		{"https", "GET", muteTLS.URL + "/tls", answer, 504, false},
		{"https over HTTP/2", "GET", muteTLS.URL + "/h2", answer, 504, true},
		{"no TLS handshake", "GET", "https://" + noHandshake + "/handshake", handshake, 502, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.client()
			if tc.h2 {
				c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
			}
			var body io.Reader
			if tc.method == "POST" {
				body = io.MultiReader(strings.NewReader("imei=356938035643809")) // no length: chunked
			}
			req, _ := http.NewRequest(tc.method, tc.url, body)
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, b, tc.status)
			}
			if took < tc.within*7/8-50*time.Millisecond || took > tc.within+time.Second {
				t.Errorf("answered after %s, want about %s", took, tc.within)
			}
			path := tc.url[strings.LastIndex(tc.url, "/"):]
			var f *flow.Flow
			for deadline := time.Now().Add(5 * time.Second); f == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				for _, g := range h.got() {
					if g.Request != nil && strings.HasSuffix(g.Request.URL, path) {
						f = g
					}
				}
			}
			if f == nil || !f.Notes.Has(flow.NoteUpstream) {
				t.Fatalf("the flow must be noted: %+v", f)
			}
			t.Logf("%s: %v", resp.Status, f.Notes)
		})
	}
	servesOthers(t, h, plain.URL+"/ads")
	waitGoroutines(t, baseline)
}

// TestIdleTimeouts: an idle keep-alive client, explicit or inside a
// decrypted tunnel, is let go after IdleTimeout; a raw tunnel after
// TunnelIdleTimeout with no byte either way, but not while one side talks;
// a client that stops sending the body it announced, or stops reading the
// answer, is cut after IdleTimeout.
func TestIdleTimeouts(t *testing.T) {
	plain, secure, roots := upstreams(t)
	const idle, tunnelIdle = 500 * time.Millisecond, time.Second
	h := startHostile(t, roots, func(o *Options) { o.IdleTimeout, o.TunnelIdleTimeout = idle, tunnelIdle })
	servesOthers(t, h, plain.URL+"/ads")
	baseline := runtime.NumGoroutine()

	t.Run("explicit keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", h.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s/ads HTTP/1.1\r\nHost: %s\r\n\r\n", plain.URL, strings.TrimPrefix(plain.URL, "http://"))
		answeredThenLetGo(t, c, idle, "an idle keep-alive client still held")
	})
	t.Run("decrypted tunnel", func(t *testing.T) {
		target := strings.TrimPrefix(secure.URL, "https://")
		raw, _ := dialConnect(t, h, target)
		c := tls.Client(raw, &tls.Config{RootCAs: h.caPool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
		defer c.Close()
		fmt.Fprintf(c, "GET /ads HTTP/1.1\r\nHost: %s\r\n\r\n", target)
		answeredThenLetGo(t, c, idle, "an idle tunnel still open")
	})
	t.Run("raw tunnel, one side talking", func(t *testing.T) {
		ticker := serveOnce(t, func(c net.Conn) {
			for i := 0; i < 10; i++ {
				if _, err := io.WriteString(c, "tick\n"); err != nil {
					return
				}
				time.Sleep(tunnelIdle / 5)
			}
		})
		c, _ := dialConnect(t, h, ticker)
		io.WriteString(c, "not TLS\n")
		start := time.Now()
		got := closedWithin(t, c, 10*tunnelIdle/5+tunnelIdle)
		if strings.Count(got, "tick") != 10 {
			t.Errorf("a tunnel where the server talks was closed after %s: %q", time.Since(start), got)
		}
	})
	t.Run("body that stops coming", func(t *testing.T) {
		c, err := net.Dial("tcp", h.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST %s/track HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\nonly this", plain.URL, strings.TrimPrefix(plain.URL, "http://"))
		closedWithin(t, c, idle)
	})
	t.Run("answer never read", func(t *testing.T) {
		c, err := net.Dial("tcp", h.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(4 << 10)
		fmt.Fprintf(c, "GET %s/big HTTP/1.1\r\nHost: %s\r\n\r\n", plain.URL, strings.TrimPrefix(plain.URL, "http://"))
		f := h.waitFlow(t, flow.NoteResponseCut) // 50 MB that nobody reads
		if f.Response.Body.Size >= 50<<20 {
			t.Errorf("the answer went whole to a client that read none of it: %+v", f.Response.Body)
		}
	})
	servesOthers(t, h, plain.URL+"/ads")
	waitGoroutines(t, baseline)
}

// The limits are documented with their defaults; New fills them in.
func TestTimeoutDefaults(t *testing.T) {
	p := New(Options{})
	o := p.opts
	for name, got := range map[string]time.Duration{"HeaderTimeout": o.HeaderTimeout, "HandshakeTimeout": o.HandshakeTimeout,
		"IdleTimeout": o.IdleTimeout, "TunnelIdleTimeout": o.TunnelIdleTimeout, "DialTimer": o.DialTimer,
		"ResponseHeaderTimeout": o.ResponseHeaderTimeout} {
		if got <= 0 {
			t.Errorf("%s has no default", name)
		}
	}
	if o.MaxHeaderBytes != http.DefaultMaxHeaderBytes {
		t.Errorf("MaxHeaderBytes: %d", o.MaxHeaderBytes)
	}
	if o.PinRefusals != 2 || o.PinWindow != 10*time.Minute || o.PinCooldown != 10*time.Minute {
		t.Errorf("the pinning rule's defaults: %d refusals within %s, passed through for %s", o.PinRefusals, o.PinWindow, o.PinCooldown)
	}
	if p := New(Options{IdleTimeout: -1}); p.opts.IdleTimeout >= 0 {
		t.Error("a negative timeout must mean none, not the default")
	}
	if err := (&noAnswerError{err: os.ErrDeadlineExceeded}); !errors.Is(err, os.ErrDeadlineExceeded) || isStale(err) {
		t.Error("no answer in time is a timeout, never a stale connection to try again on")
	}
}
