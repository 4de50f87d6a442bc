package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"phonehome/internal/capture"
	"phonehome/internal/flow"
)

// rawUpstream is a server that records each request head as it came on the
// wire and answers with what answers[path] says, byte for byte.
type rawUpstream struct {
	ln      net.Listener
	mu      sync.Mutex
	heads   []string // request heads, in order
	bodies  []string
	conns   int
	answers map[string]string
	closeAt map[string]bool // close the connection after answering (without saying so)
}

func newRawUpstream(t *testing.T, answers map[string]string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, answers: answers, closeAt: map[string]bool{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns++
			u.mu.Unlock()
			go u.serve(c)
		}
	}()
	return u
}

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		n := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
			if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Content-Length") {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		if strings.Contains(strings.ToLower(head.String()), "transfer-encoding: chunked") {
			var err error
			if body, err = io.ReadAll(httputil.NewChunkedReader(br)); err != nil {
				return
			}
			br.ReadString('\n') // the blank line after the last chunk
		}
		path := strings.Fields(head.String())[1]
		u.mu.Lock()
		u.heads = append(u.heads, head.String())
		u.bodies = append(u.bodies, string(body))
		answer, closeAfter := u.answers[path], u.closeAt[path]
		u.mu.Unlock()
		if answer == "" {
			answer = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
		}
		if _, err := io.WriteString(c, answer); err != nil || closeAfter {
			return
		}
	}
}

// closeAfter makes the server close the connection after answering path,
// without saying so in the answer.
func (u *rawUpstream) closeAfter(path string) {
	u.mu.Lock()
	u.closeAt[path] = true
	u.mu.Unlock()
}

func (u *rawUpstream) lastHead() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.heads) == 0 {
		return ""
	}
	return u.heads[len(u.heads)-1]
}

// rawClient speaks to the proxy over one connection, writing requests as
// given and reading answers with net/http's parser.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialProxy(t *testing.T, h *harness) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, conn: c, br: bufio.NewReader(c)}
}

func (c *rawClient) do(method, req string) (*http.Response, string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, req); err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("answer to %q: %v", req, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("body of the answer to %q: %v", req, err)
	}
	return resp, string(b)
}

// A plain request goes to the server with its headers in the order and case
// the client sent, without the hop-by-hop ones; the answer comes back the
// same way, and the flow records both as they were.
func TestFastPathKeepsHeaders(t *testing.T) {
	u := newRawUpstream(t, map[string]string{
		"/a?x=1": "HTTP/1.1 200 Fine\r\nX-Zeta: 1\r\nconnection: X-Hop\r\nX-Hop: secret\r\nkeep-alive: timeout=5\r\nx-alpha: 2\r\nContent-Length: 5\r\n\r\nhello",
	})
	h := start(t, nil)
	defer h.stop()
	c := dialProxy(t, h)
	addr := u.ln.Addr().String()
	resp, body := c.do("POST", "POST http://"+addr+"/a?x=1 HTTP/1.1\r\nHost: "+addr+"\r\nx-lower: a\r\nProxy-Connection: keep-alive\r\nX-Upper: b\r\nConnection: keep-alive, X-Private\r\nX-Private: p\r\nContent-Length: 3\r\n\r\nabc")
	if resp.StatusCode != 200 || resp.Status != "200 Fine" || body != "hello" {
		t.Fatalf("answer: %s %q", resp.Status, body)
	}
	if resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Alpha") != "2" {
		t.Errorf("hop-by-hop headers of the answer must stay with the proxy, the rest pass: %v", resp.Header)
	}
	want := "POST /a?x=1 HTTP/1.1\r\nHost: " + addr + "\r\nx-lower: a\r\nX-Upper: b\r\nContent-Length: 3\r\n\r\n"
	if got := u.lastHead(); got != want {
		t.Errorf("the server got\n%q\nwant\n%q", got, want)
	}
	u.mu.Lock()
	if u.bodies[0] != "abc" {
		t.Errorf("request body: %q", u.bodies[0])
	}
	u.mu.Unlock()
	h.stop()
	flows := h.got()
	if len(flows) != 1 {
		t.Fatalf("want 1 flow, got %d", len(flows))
	}
	f := flows[0]
	names := func(hs flow.Headers) string {
		var b []string
		for _, x := range hs {
			b = append(b, x.Name)
		}
		return strings.Join(b, ",")
	}
	if got := names(f.Request.Headers); got != "Host,x-lower,Proxy-Connection,X-Upper,Connection,X-Private,Content-Length" {
		t.Errorf("recorded request headers: %s", got)
	}
	if got := names(f.Response.Headers); got != "X-Zeta,connection,X-Hop,keep-alive,x-alpha,Content-Length" {
		t.Errorf("recorded answer headers: %s", got)
	}
	if f.Request.URL != "http://"+addr+"/a?x=1" || string(f.Request.Body.Data) != "abc" || f.BytesUp != 3 ||
		f.Response.Status != 200 || f.Response.Reason != "Fine" || string(f.Response.Body.Data) != "hello" || f.BytesDown != 5 ||
		f.Host != "127.0.0.1" || !f.Server.Addr.IsValid() || f.Transport != flow.TransportHTTP {
		t.Errorf("flow: %+v, request %+v, answer %+v", f, f.Request, f.Response)
	}
}

// What the plain path does not take is served by the general one, on the
// same connection, and the connection goes on serving.
func TestFastPathHandsOver(t *testing.T) {
	u := newRawUpstream(t, map[string]string{
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
		"/hints":   "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/head":    "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
		"/empty":   "HTTP/1.1 204 No Content\r\n\r\n",
		"/same":    "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
		"/old":     "HTTP/1.0 200 OK\r\n\r\nuntil the end",
		"/plain":   "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast",
	})
	u.closeAfter("/old")
	h := start(t, nil)
	defer h.stop()
	c := dialProxy(t, h)
	base := "http://" + u.ln.Addr().String()
	for _, tc := range []struct{ method, path, extra, status, body string }{
		{"GET", "/chunked", "", "200 OK", "abcde"},
		{"GET", "/hints", "", "200 OK", "ok"},
		{"HEAD", "/head", "", "200 OK", ""},
		{"GET", "/empty", "", "204 No Content", ""},
		{"GET", "/same", "", "304 Not Modified", ""},
		{"GET", "/old", "", "200 OK", "until the end"},
		{"PROPFIND", "/plain", "", "200 OK", "last"},                                      // a method of its own
		{"POST", "/plain", "Transfer-Encoding: chunked\r\n", "200 OK", "last"},            // a chunked upload
		{"GET", "/plain", "X-Folded: a\r\n b\r\n", "200 OK", "last"},                      // obsolete folding
		{"GET", "/plain", "Content-Length: 0\r\nContent-Length: 0\r\n", "200 OK", "last"}, // a repeated length
	} {
		req := tc.method + " " + base + tc.path + " HTTP/1.1\r\nHost: x\r\n" + tc.extra + "\r\n"
		if strings.Contains(tc.extra, "chunked") {
			req += "0\r\n\r\n"
		}
		resp, body := c.do(tc.method, req)
		if resp.Status != tc.status || body != tc.body {
			t.Errorf("%s %s: %s %q, want %s %q", tc.method, tc.path, resp.Status, body, tc.status, tc.body)
		}
	}
	// the head of a request split across reads
	c.conn.Write([]byte("GET " + base + "/plain HTTP/1.1\r\nHo"))
	time.Sleep(50 * time.Millisecond)
	if resp, body := c.do("GET", "st: x\r\n\r\n"); resp.StatusCode != 200 || body != "last" {
		t.Errorf("split head: %s %q", resp.Status, body)
	}
}

// A server that closed a kept-alive connection meanwhile gets the request
// again on a new one; a client asking to close is closed after its answer.
func TestFastPathStaleAndClose(t *testing.T) {
	u := newRawUpstream(t, map[string]string{"/x": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"})
	u.closeAfter("/x") // closes after each answer without a word
	h := start(t, nil)
	defer h.stop()
	c := dialProxy(t, h)
	req := "GET http://" + u.ln.Addr().String() + "/x HTTP/1.1\r\nHost: x\r\n\r\n"
	for i := 0; i < 3; i++ {
		time.Sleep(20 * time.Millisecond) // the close reaches the proxy first
		if resp, body := c.do("GET", req); resp.StatusCode != 200 || body != "x" {
			t.Fatalf("request %d: %s %q", i, resp.Status, body)
		}
	}
	u.mu.Lock()
	conns := u.conns
	u.mu.Unlock()
	if conns != 3 {
		t.Errorf("the server saw %d connections, want 3", conns)
	}
	resp, _ := c.do("GET", strings.Replace(req, "Host: x\r\n", "Host: x\r\nConnection: close\r\n", 1))
	if resp.StatusCode != 200 {
		t.Fatalf("last request: %s", resp.Status)
	}
	if n, err := c.br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after Connection: close the proxy must close the connection: %d %v", n, err)
	}
}

// A request body that comes slowly streams through; so does an answer.
func TestFastPathStreams(t *testing.T) {
	got := make(chan string, 1)
	addr := serveOnce(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		got <- string(b)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfir")
		time.Sleep(100 * time.Millisecond)
		io.WriteString(c, "st!")
	})
	h := start(t, nil)
	defer h.stop()
	c := dialProxy(t, h)
	io.WriteString(c.conn, "POST http://"+addr+"/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
	time.Sleep(100 * time.Millisecond)
	io.WriteString(c.conn, "56789")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 3)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "fir" {
		t.Fatalf("the first part of the answer must come before the rest: %q %v", first, err)
	}
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "st!" || <-got != "0123456789" {
		t.Errorf("answer rest %q", rest)
	}
}

// What the plain parser accepts, net/http reads the same way: the same
// method, target, headers and body length.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte("GET http://a.example/x?y=1 HTTP/1.1\r\nHost: a.example\r\nUser-Agent: t\r\n\r\n"))
	f.Add([]byte("POST /t HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: b\r\nContent-Length: 01\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: b\r\nX: a\tb \r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		end := bytes.Index(b, []byte("\r\n\r\n"))
		if end < 0 {
			return
		}
		b = b[:end+4]
		var h wireHead
		if !parseHead(b, &h) || h.first[2] != "HTTP/1.1" || !simpleMethod(h.first[0]) {
			return
		}
		_, _, absolute := splitTarget(h.first[1], true)
		_, _, origin := splitTarget(h.first[1], false)
		if !absolute && !origin {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("accepted %q, net/http refuses it: %v", b, err)
		}
		if req.Method != h.first[0] || req.RequestURI != h.first[1] {
			t.Fatalf("%q: %s %s, net/http %s %s", b, h.first[0], h.first[1], req.Method, req.RequestURI)
		}
		wantLen := max(h.length, 0)
		if req.ContentLength != wantLen && !(h.length < 0 && req.ContentLength == 0) {
			t.Fatalf("%q: length %d, net/http %d", b, h.length, req.ContentLength)
		}
		mine := textproto.MIMEHeader{}
		for _, x := range h.headers {
			if !strings.EqualFold(x.Name, "Host") {
				mine.Add(x.Name, x.Value)
			}
		}
		for k, vs := range req.Header {
			if fmt.Sprint(mine[k]) != fmt.Sprint(vs) {
				t.Fatalf("%q: header %s %q, net/http %q", b, k, mine[k], vs)
			}
		}
		if len(mine) != len(req.Header) {
			t.Fatalf("%q: headers %v, net/http %v", b, mine, req.Header)
		}
	})
}

// benchProxy starts a proxy (flows counted, not kept) in front of a server
// answering 1 KiB, and returns a client that goes through it.
func benchProxy(b *testing.B, conns int) (*http.Client, string, *atomic.Int64) {
	b.Helper()
	body := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz"), 40)[:1024]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	b.Cleanup(srv.Close)
	var n atomic.Int64
	p := New(Options{Handler: capture.Observer(func(*flow.Flow) { n.Add(1) })})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Serve(ctx, ln); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	proxyURL, _ := url.Parse("http://" + ln.Addr().String())
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: conns}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, srv.URL + "/", &n
}

func get(b *testing.B, c *http.Client, u string) {
	resp, err := c.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
		b.Fatal(resp.Status, err)
	}
	resp.Body.Close()
}

// BenchmarkForward is one request at a time through the proxy over a kept
// connection: the client's, the proxy's and the server's work together.
func BenchmarkForward(b *testing.B) {
	c, u, n := benchProxy(b, 1)
	get(b, c, u)
	b.ReportAllocs()
	for b.Loop() {
		get(b, c, u)
	}
	if n.Load() < int64(b.N) {
		b.Fatalf("%d flows recorded for %d requests", n.Load(), b.N)
	}
}

// BenchmarkForwardParallel keeps 64 connections busy.
func BenchmarkForwardParallel(b *testing.B) {
	c, u, _ := benchProxy(b, 64)
	b.SetParallelism(64 / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			get(b, c, u)
		}
	})
}
