package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"phonehome/internal/capture"
	"phonehome/internal/certs"
	"phonehome/internal/flow"
)

type harness struct {
	proxyURL string
	caFile   string
	ca       *x509.Certificate // phonehome's CA, as a client would install it
	caPool   *x509.CertPool
	mu       sync.Mutex
	flows    []*flow.Flow
	cancel   context.CancelFunc
	done     chan struct{}
}

func (h *harness) got() []*flow.Flow {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*flow.Flow(nil), h.flows...)
}

func start(t *testing.T, upstreamRoots *x509.CertPool) *harness {
	t.Helper()
	return startWith(t, &tls.Config{RootCAs: upstreamRoots})
}

func startWith(t *testing.T, upstreamTLS *tls.Config) *harness {
	t.Helper()
	dir, ca, m := testMinter(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	h := &harness{caFile: filepath.Join(dir, certs.CertFile), ca: ca.Cert, caPool: pool, done: make(chan struct{})}
	p := New(Options{Minter: m, Upstream: upstreamTLS, MaxBody: 1 << 16,
		Handler: capture.Observer(func(f *flow.Flow) { h.mu.Lock(); h.flows = append(h.flows, f); h.mu.Unlock() })})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.proxyURL = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { p.Serve(ctx, ln); close(h.done) }()
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
}

func curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "20"}, args...)...).CombinedOutput()
	return string(out), err
}

// upstreams starts a plain and a TLS upstream, closed when the test ends, and
// the pool that trusts the TLS one.
func upstreams(t *testing.T) (plain, secure *httptest.Server, roots *x509.CertPool) {
	plain = upstream()
	plain.Start()
	t.Cleanup(plain.Close)
	secure = upstream()
	secure.StartTLS()
	t.Cleanup(secure.Close)
	roots = x509.NewCertPool()
	roots.AddCert(secure.Certificate())
	return plain, secure, roots
}

func upstream() *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/ads", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ads":[],"q":%q}`, r.URL.RawQuery)
	})
	mux.HandleFunc("/track", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %d bytes", len(b))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for i := 0; i < 50; i++ {
			w.Write(chunk)
		}
	})
	return httptest.NewUnstartedServer(mux)
}

func TestHTTPAndHTTPSWithCurl(t *testing.T) {
	baseline := runtime.NumGoroutine()
	plain, secure, roots := upstreams(t)
	h := start(t, roots)

	out, err := curl(t, "-x", h.proxyURL, plain.URL+"/ads?imei=356938035643809")
	if err != nil || !strings.Contains(out, "imei=356938035643809") {
		t.Fatalf("HTTP through the proxy: %v %s", err, out)
	}
	out, err = curl(t, "-x", h.proxyURL, "--cacert", h.caFile, "-d", "sender=com.miui.systemAdSolution", secure.URL+"/track")
	if err != nil || out != "got 32 bytes" {
		t.Fatalf("HTTPS through the proxy: %v %s", err, out)
	}
	out, err = curl(t, "-x", h.proxyURL, "--cacert", h.caFile, "-H", "Transfer-Encoding: chunked", "--data-binary", "@/etc/hostname", secure.URL+"/track")
	if err != nil || !strings.HasPrefix(out, "got ") {
		t.Fatalf("chunked upload: %v %s", err, out)
	}
	out, err = curl(t, "-x", h.proxyURL, "--cacert", h.caFile, "-o", "/dev/null", "-w", "%{size_download}", secure.URL+"/big")
	if err != nil || out != "52428800" {
		t.Fatalf("a 50 MB download must pass whole: %v %s", err, out)
	}
	_, err = curl(t, "-x", h.proxyURL, secure.URL+"/track") // no --cacert: curl refuses our certificate
	if err == nil {
		t.Fatal("a client without phonehome's CA must refuse the certificate")
	}
	h.stop()

	flows := h.got()
	if len(flows) != 5 {
		t.Fatalf("want 5 flows, got %d", len(flows))
	}
	byPath := map[string]*flow.Flow{}
	for _, f := range flows {
		if f.Request != nil {
			byPath[f.Request.URL[strings.LastIndex(f.Request.URL, "/"):]] = f
		}
	}
	ads := byPath["/ads?imei=356938035643809"]
	if ads == nil || ads.Transport != flow.TransportHTTP || ads.Response.Status != 200 || !ads.Server.Addr.IsValid() {
		t.Errorf("HTTP flow: %+v", ads)
	}
	var track *flow.Flow // two POSTs went to /track: the form and the chunked upload
	for _, f := range flows {
		if f.Request != nil && string(f.Request.Body.Data) == "sender=com.miui.systemAdSolution" {
			track = f
		}
	}
	if track == nil || track.Transport != flow.TransportHTTPS || !track.TLS.Decrypted || track.Request.Body.Size != 32 {
		t.Errorf("the decrypted POST and its body must be recorded: %+v", track)
	}
	big := byPath["/big"]
	// /big is binary (application/octet-stream): it keeps the media prefix, not MaxBody
	if big == nil || big.Response.Body.Size != 50<<20 || len(big.Response.Body.Data) != 8<<10 || !big.Response.Body.Truncated {
		t.Errorf("the kept part of a large binary body is capped and the cap recorded: %+v", big.Response.Body.Size)
	}
	var refused *flow.Flow
	for _, f := range flows {
		if f.Transport == flow.TransportTLS {
			refused = f
		}
	}
	// (refused once: noted, and nothing decided for the host)
	if refused == nil || refused.Notes.Has(flow.NoteCertRefused) || !strings.Contains(refused.Notes.String(), "unknown certificate authority") {
		t.Errorf("a refused handshake is recorded: %+v", refused)
	}
	waitGoroutines(t, baseline)
}

func TestUntrustedUpstream(t *testing.T) {
	secure := upstream()
	secure.StartTLS()
	defer secure.Close()
	h := start(t, x509.NewCertPool()) // trusts nothing
	defer h.stop()
	pool := h.caPool
	client := &http.Client{Transport: &http.Transport{Proxy: func(*http.Request) (*url.URL, error) { return url.Parse(h.proxyURL) }, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(secure.URL + "/ads")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "not trusted") {
		t.Errorf("an untrusted upstream must be an error the user sees: %d %s", resp.StatusCode, body)
	}
	client.CloseIdleConnections()
}

func waitGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline+2 {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines: %d, baseline %d\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
	}
}

// connectThrough opens a CONNECT tunnel through the proxy.
func connectThrough(t *testing.T, proxyURL, target string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	buf := make([]byte, len("HTTP/1.1 200 Connection established\r\n\r\n"))
	if _, err := io.ReadFull(c, buf); err != nil || !strings.HasPrefix(string(buf), "HTTP/1.1 200") {
		t.Fatalf("CONNECT: %v %q", err, buf)
	}
	return c
}

// TestPinnedClientPassesThrough: a client that trusts only the real server's
// certificate (as a pinning app does) fails twice, then is passed through.
func TestPinnedClientPassesThrough(t *testing.T) {
	baseline := runtime.NumGoroutine()
	secure := upstream()
	secure.StartTLS()
	defer secure.Close()
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())
	h := start(t, roots)
	target := strings.TrimPrefix(secure.URL, "https://")
	pinned := &tls.Config{RootCAs: roots, ServerName: "example.com"} // httptest's certificate names example.com

	for i := 1; i <= 2; i++ {
		c := tls.Client(connectThrough(t, h.proxyURL, target), pinned)
		if err := c.Handshake(); err == nil {
			t.Fatalf("the pinning client must refuse phonehome's certificate (attempt %d)", i)
		}
		c.Close()
		// the proxy learns of the refusal a moment after the client gave up
		for deadline := time.Now().Add(5 * time.Second); len(h.got()) < i && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}

	c := tls.Client(connectThrough(t, h.proxyURL, target), pinned)
	if err := c.Handshake(); err != nil {
		t.Fatalf("the second connection must reach the real server untouched: %v", err)
	}
	fmt.Fprintf(c, "GET /ads?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	body, _ := io.ReadAll(c)
	c.Close()
	if !strings.Contains(string(body), `"q":"x=1"`) {
		t.Fatalf("answer through the passthrough: %q", body)
	}
	h.stop()
	flows := h.got()
	if len(flows) != 3 {
		t.Fatalf("flows: %+v", flows)
	}
	for i, f := range flows[:2] {
		t.Logf("refusal %d: %v", i+1, f.Notes)
		if f.Transport != flow.TransportTLS || f.TLS.Decrypted {
			t.Errorf("refusal %d: %+v", i+1, f)
		}
	}
	if first := flows[0]; first.Notes.Has(flow.NoteCertRefused) || !first.Notes.Has(flow.NoteOther) {
		t.Errorf("the first refusal decides nothing: %v", first.Notes)
	}
	if second := flows[1]; !second.Notes.Has(flow.NoteCertRefused) {
		t.Errorf("the second refusal decides: %v", second.Notes)
	}
	pass := flows[2]
	t.Logf("passthrough: %v", pass.Notes)
	if pass.Transport != flow.TransportTLS || pass.TLS.Decrypted || pass.TLS.SNI != "example.com" || pass.BytesUp == 0 || pass.BytesDown == 0 || !pass.Notes.Has(flow.NotePassthrough) {
		t.Errorf("passthrough flow: %+v %+v", pass, pass.TLS)
	}
	waitGoroutines(t, baseline)
}

// serveOnce listens on loopback until the test ends, hands the first
// connection to serve and closes it after; it returns the address.
func serveOnce(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	return ln.Addr().String()
}

// TestRawTunnel: after CONNECT, bytes that are not TLS are relayed as they are.
func TestRawTunnel(t *testing.T) {
	addr := serveOnce(t, func(c net.Conn) { io.Copy(c, c) }) // echo
	h := start(t, nil)
	c := connectThrough(t, h.proxyURL, addr)
	fmt.Fprint(c, "hello, not TLS")
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	c.Close()
	h.stop()
	if string(got) != "hello, not TLS" {
		t.Fatalf("echo through the tunnel: %q", got)
	}
	flows := h.got()
	if len(flows) != 1 || flows[0].Transport != flow.TransportTCP || flows[0].BytesUp != 14 || flows[0].BytesDown != 14 {
		t.Errorf("raw tunnel flow: %+v", flows)
	}
}

func TestCertificatePage(t *testing.T) {
	h := start(t, nil)
	defer h.stop()
	page, err := curl(t, "-x", h.proxyURL, "http://phonehome.cert/")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(h.caFile)
	ca := h.ca
	for _, want := range []string{"Android 7 and later", "iPhone", "Windows", "macOS", "Linux", "Firefox", `href="/ca.der"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	der, err := curl(t, "-x", h.proxyURL, "http://phonehome.cert/ca.der")
	if err != nil || der != string(ca.Raw) {
		t.Errorf("ca.der is not the CA: %v", err)
	}
	crt, _ := curl(t, "-x", h.proxyURL, "http://phonehome.cert/ca.crt")
	if crt != string(caPEM) {
		t.Errorf("ca.crt differs from the CA file")
	}
	if len(h.got()) != 0 {
		t.Error("the certificate page is phonehome's own traffic, not recorded")
	}
}

// wsFrame builds a masked client text frame.
func wsFrame(msg string) []byte {
	mask := []byte{1, 2, 3, 4}
	b := []byte{0x81, 0x80 | byte(len(msg))}
	b = append(b, mask...)
	for i := 0; i < len(msg); i++ {
		b = append(b, msg[i]^mask[i%4])
	}
	return b
}

// TestWebSocket relays a WebSocket through the proxy, in clear and inside an
// intercepted tunnel, against golang.org/x/net/websocket's echo server.
func TestWebSocket(t *testing.T) {
	echo := httptest.NewUnstartedServer(websocket.Handler(func(c *websocket.Conn) { io.Copy(c, c) }))
	echo.StartTLS()
	defer echo.Close()
	plainEcho := httptest.NewServer(websocket.Handler(func(c *websocket.Conn) { io.Copy(c, c) }))
	defer plainEcho.Close()
	roots := x509.NewCertPool()
	roots.AddCert(echo.Certificate())
	h := start(t, roots)
	pool := h.caPool

	try := func(c net.Conn, url, host string) {
		t.Helper()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://%s\r\n\r\n", url, host, host)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade through the proxy: %v %v", err, resp)
		}
		c.Write(wsFrame("android_id=3b6f1e0a9c2d4f81"))
		head := make([]byte, 2)
		io.ReadFull(br, head)
		msg := make([]byte, head[1]&0x7f)
		io.ReadFull(br, msg)
		if string(msg) != "android_id=3b6f1e0a9c2d4f81" {
			t.Errorf("echo: %q", msg)
		}
		c.Close()
	}
	plainHost := strings.TrimPrefix(plainEcho.URL, "http://")
	c, _ := net.Dial("tcp", strings.TrimPrefix(h.proxyURL, "http://"))
	try(c, plainEcho.URL+"/", plainHost)

	target := strings.TrimPrefix(echo.URL, "https://")
	tc := tls.Client(connectThrough(t, h.proxyURL, target), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	try(tc, "/", target)

	time.Sleep(100 * time.Millisecond)
	h.stop()
	flows := h.got()
	if len(flows) != 2 {
		t.Fatalf("want 2 flows, got %d", len(flows))
	}
	for _, f := range flows {
		if f.Response == nil || f.Response.Status != 101 || f.BytesUp == 0 || f.BytesDown == 0 {
			t.Errorf("WebSocket flow: %+v", f)
		}
	}
}

// TestHTTP2Client: curl speaks HTTP/2 to the proxy's intercepted tunnel while
// the proxy speaks whatever the server offers.
func TestHTTP2Client(t *testing.T) {
	secure := upstream()
	secure.StartTLS()
	defer secure.Close()
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())
	h := start(t, roots)
	out, err := curl(t, "--http2", "-x", h.proxyURL, "--cacert", h.caFile, "-w", " %{http_version}", secure.URL+"/ads?gaid=38400000-8cf0-11bd-b23e-10b96e40000d")
	if err != nil || !strings.HasSuffix(out, " 2") || !strings.Contains(out, "gaid=") {
		t.Fatalf("HTTP/2 through the proxy: %v %q", err, out)
	}
	h.stop()
	flows := h.got()
	if len(flows) != 1 || flows[0].Request.Proto != "HTTP/2.0" || flows[0].Transport != flow.TransportHTTPS {
		t.Errorf("flows: %+v", flows)
	}
}

// TestFileDescriptors: a run of requests leaves no descriptor open.
func TestFileDescriptors(t *testing.T) {
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd on this system")
		}
		return len(ents)
	}
	secure := upstream()
	secure.StartTLS()
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())
	before := fds()
	h := start(t, roots)
	for i := 0; i < 5; i++ {
		if _, err := curl(t, "-x", h.proxyURL, "--cacert", h.caFile, secure.URL+"/ads"); err != nil {
			t.Fatal(err)
		}
	}
	h.stop()
	secure.Close()
	time.Sleep(100 * time.Millisecond)
	if after := fds(); after > before {
		t.Errorf("file descriptors: %d before, %d after", before, after)
	}
}

// TestChromium browses a local HTTPS site through the proxy with headless
// Chromium, which trusts phonehome's CA by its key hash.
func TestChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian package chromium)")
	}
	site := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<html><body><h1 id="x">hello from the site</h1><img src="/pixel?uid=8837261&screen=1920x1080"></body></html>`)
	}))
	site.StartTLS()
	defer site.Close()
	roots := x509.NewCertPool()
	roots.AddCert(site.Certificate())
	h := start(t, roots)
	spki := sha256.Sum256(h.ca.RawSubjectPublicKeyInfo)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--user-data-dir="+t.TempDir(), "--proxy-server="+h.proxyURL, "--proxy-bypass-list=<-loopback>",
		"--ignore-certificate-errors-spki-list="+base64.StdEncoding.EncodeToString(spki[:]),
		"--dump-dom", site.URL+"/page")
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "hello from the site") {
		t.Fatalf("Chromium through the proxy: %v\n%s", err, out)
	}
	h.stop()
	var page, pixel bool
	for _, f := range h.got() {
		if f.Request == nil || f.Transport != flow.TransportHTTPS || !f.TLS.Decrypted {
			continue
		}
		page = page || strings.HasSuffix(f.Request.URL, "/page")
		pixel = pixel || strings.Contains(f.Request.URL, "/pixel?uid=8837261")
	}
	if !page || !pixel {
		t.Errorf("Chromium's requests must be decrypted and recorded: page %v pixel %v", page, pixel)
	}
}

// TestExpiredUpstream: an upstream whose certificate has expired is an error
// the client sees, unless the proxy was told to accept it.
func TestExpiredUpstream(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "stale") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(cert)

	h := start(t, roots)
	out, _ := curl(t, "-x", h.proxyURL, "--cacert", h.caFile, srv.URL+"/")
	h.stop()
	if !strings.Contains(out, "not trusted") || !strings.Contains(out, "expired") || !strings.Contains(out, "--insecure-upstream") {
		t.Errorf("an expired upstream certificate must be shown, with what to do: %q", out)
	}
	if fl := h.got(); len(fl) != 1 || len(fl[0].Notes) == 0 || !strings.Contains(fl[0].Notes[0].Text, "expired") {
		t.Errorf("and recorded on the flow: %+v", fl)
	}

	h2 := startWith(t, &tls.Config{InsecureSkipVerify: true})
	out, err := curl(t, "-x", h2.proxyURL, "--cacert", h2.caFile, srv.URL+"/")
	h2.stop()
	if err != nil || out != "stale" {
		t.Errorf("--insecure-upstream accepts it: %v %q", err, out)
	}
}

// Transparent mode without the kernel: a listener hands each connection to
// ServeIntercepted with the upstream as its original destination, as the
// REDIRECT would. curl connects to the listener believing it is the server
// (--connect-to), so the names come only from the Host header and the SNI.
func TestServeIntercepted(t *testing.T) {
	plain, secure, roots := upstreams(t)
	dir, _, m := testMinter(t)
	var mu sync.Mutex
	var flows []*flow.Flow
	// the upstream's certificate names example.com; verify it as that name
	// a source that knows the device (a WireGuard peer) names it on every flow
	device := func(a netip.Addr) string {
		if a.IsLoopback() {
			return "phone-a"
		}
		return ""
	}
	h := &helloSources{Handler: capture.Observer(func(f *flow.Flow) { mu.Lock(); flows = append(flows, f); mu.Unlock() })}
	p := New(Options{Minter: m, Upstream: &tls.Config{RootCAs: roots, ServerName: "example.com"}, Device: device,
		Source: "wireguard", Handler: h})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := func(orig string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		o, _ := netip.ParseAddrPort(orig)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go p.ServeIntercepted(ctx, c, o)
			}
		}()
		return ln.Addr().String()
	}
	httpAt := serve(plain.Listener.Addr().String())
	httpsAt := serve(secure.Listener.Addr().String())
	if out, err := curl(t, "--connect-to", "tracker.test:80:"+httpAt, "http://tracker.test/ads?gaid=38400000-8cf0-11bd-b23e-10b96e40000d"); err != nil || !strings.Contains(out, "gaid") {
		t.Fatalf("HTTP: %v %s", err, out)
	}
	if out, err := curl(t, "--cacert", filepath.Join(dir, certs.CertFile), "--connect-to", "sdk.test:443:"+httpsAt, "https://sdk.test/track", "-d", "imei=356938035643809"); err != nil || !strings.Contains(out, "got 20 bytes") {
		t.Fatalf("HTTPS: %v %s", err, out)
	}
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(flows) != 2 {
		t.Fatalf("flows: %d", len(flows))
	}
	if got := fmt.Sprint(h.hellos()); got != "[wireguard/phone-a]" {
		t.Errorf("the hello names the source and the device: %s", got)
	}
	if f := flows[0]; f.Host != "tracker.test" || f.Transport != flow.TransportHTTP || f.Server.String() != plain.Listener.Addr().String() {
		t.Errorf("HTTP named by its Host header and sent to the original destination: %s %s %s", f.Host, f.Transport, f.Server)
	}
	// the port is the original destination's (443 on a real network)
	_, port, _ := net.SplitHostPort(secure.Listener.Addr().String())
	if f := flows[1]; f.Host != "sdk.test" || f.Transport != flow.TransportHTTPS || f.Request.URL != "https://sdk.test:"+port+"/track" || f.Server.String() != secure.Listener.Addr().String() {
		t.Errorf("TLS named by its SNI: %s %s %s %s", f.Host, f.Transport, f.Request.URL, f.Server)
	}
	for _, f := range flows {
		if f.Device != "phone-a" {
			t.Errorf("%s flow: device %q, want the name Options.Device gives its client", f.Transport, f.Device)
		}
	}
}

// testMinter makes a CA in a temporary directory and a minter of it.
func testMinter(t *testing.T) (string, *certs.CA, *certs.Minter) {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := certs.LoadOrCreate(dir, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := certs.NewMinter(ca, 0, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return dir, ca, m
}

// helloSources is a Handler that records each hello's source and device.
type helloSources struct {
	capture.Handler
	mu   sync.Mutex
	seen []string
}

func (h *helloSources) Hello(ctx context.Context, hl flow.Hello) flow.Verdict {
	h.mu.Lock()
	h.seen = append(h.seen, hl.Source+"/"+hl.Device)
	h.mu.Unlock()
	return h.Handler.Hello(ctx, hl)
}

func (h *helloSources) hellos() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}
