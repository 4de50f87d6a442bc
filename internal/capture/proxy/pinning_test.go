package proxy

import (
	"bufio"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"phonehome/internal/flow"
)

// A client that refuses phonehome's certificate, again and again, gets its
// server's own; one that only hangs up, sends a broken ClientHello or
// refuses once does not. All with real sockets, Go's TLS and curl.

// testClock is a clock the test moves forward.
type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// connectFrom opens a CONNECT tunnel to target through the proxy from the
// local address src (all of 127.0.0.0/8 is this host's).
func connectFrom(t *testing.T, h *harness, src, target string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", h.addr())
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 || br.Buffered() > 0 {
		t.Fatalf("CONNECT from %s: %v %v", src, err, resp)
	}
	return c
}

// waitFlows waits until the proxy emitted n flows and returns them.
func (h *harness) waitFlows(t *testing.T, n int) []*flow.Flow {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got := h.got(); len(got) >= n {
			return got
		}
	}
	t.Fatalf("want %d flows, got %d: %v", n, len(h.got()), h.got())
	return nil
}

// clientHello returns the ClientHello record Go's TLS client sends for name.
func clientHello(t *testing.T, name string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	go func() {
		tls.Client(a, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
		a.Close()
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	rec := make([]byte, 5)
	if _, err := io.ReadFull(b, rec); err != nil {
		t.Fatal(err)
	}
	rec = append(rec, make([]byte, int(rec[3])<<8|int(rec[4]))...)
	if _, err := io.ReadFull(b, rec[5:]); err != nil {
		t.Fatal(err)
	}
	a.Close()
	return rec
}

// garbled is a ClientHello that reads well as far as phonehome's parser
// goes (it names the host) but that no TLS server accepts: it offers only
// DEFLATE compression.
func garbled(t *testing.T, name string) []byte {
	t.Helper()
	b := clientHello(t, name)
	i := 5 + 4 + 2 + 32                   // record and handshake headers, version, random
	i += 1 + int(b[i])                    // session id
	i += 2 + (int(b[i])<<8 | int(b[i+1])) // cipher suites
	if b[i] != 1 || b[i+1] != 0 {
		t.Fatalf("compression methods at %d: % x", i, b[i:i+2])
	}
	b[i+1] = 1
	return b
}

// refusalNotes counts the flows noted as a decision to pass through after
// refusals, and those noted as one refusal.
func refusalNotes(flows []*flow.Flow) (decided, once int) {
	for _, f := range flows {
		if f.Notes.Has(flow.NoteCertRefused) {
			decided++
		}
		for _, n := range f.Notes {
			if n.Code == flow.NoteOther && strings.Contains(n.Text, "refused phonehome's certificate") {
				once++
			}
		}
	}
	return decided, once
}

// decryptedGet fetches u through the proxy with a client that trusts
// phonehome's CA, and checks that it was decrypted and recorded.
func decryptedGet(t *testing.T, h *harness, u string) {
	t.Helper()
	resp, err := h.client().Get(u)
	if err != nil {
		t.Fatalf("a client that trusts phonehome, to a host others hung up on: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	path := u[strings.LastIndex(u, "/"):]
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, f := range h.got() {
			if f.Request != nil && strings.HasSuffix(f.Request.URL, path) && f.TLS != nil && f.TLS.Decrypted {
				return
			}
		}
	}
	t.Fatalf("%s was not intercepted: %v", u, h.got())
}

// TestDroppedHandshakesAreNotPinning: a client that hangs up right after
// its ClientHello, three times, and one that sends a ClientHello TLS
// rejects, three times: the host is still intercepted, and no flow says
// the certificate was refused.
func TestDroppedHandshakesAreNotPinning(t *testing.T) {
	_, secure, roots := upstreams(t)
	h := startHostile(t, roots, nil)
	target := strings.TrimPrefix(secure.URL, "https://")
	for i := 0; i < 3; i++ {
		c := connectFrom(t, h, "127.0.0.1", target)
		c.Write(clientHello(t, "127.0.0.1"))
		c.Close()
		h.waitFlows(t, i+1)
	}
	for _, f := range h.got() {
		if f.Notes.Has(flow.NoteCertRefused) || f.Notes.Has(flow.NotePassthrough) || !strings.Contains(f.Notes.String(), "closed during the handshake") {
			t.Errorf("a client that hung up after its ClientHello: %v", f.Notes)
		}
	}
	decryptedGet(t, h, secure.URL+"/ads?after=hangups")

	n := len(h.got())
	for i := 0; i < 3; i++ {
		c := connectFrom(t, h, "127.0.0.1", target)
		c.Write(garbled(t, "127.0.0.1"))
		io.Copy(io.Discard, c) // the server's alert, then the close
		c.Close()
		h.waitFlows(t, n+i+1)
	}
	for _, f := range h.got()[n:] {
		if f.Notes.Has(flow.NoteCertRefused) || f.Notes.Has(flow.NotePassthrough) || !f.Notes.Has(flow.NoteMalformed) {
			t.Errorf("a garbled ClientHello: %v", f.Notes)
		}
	}
	decryptedGet(t, h, secure.URL+"/ads?after=garbage")
}

// TestPinningPerClient: a client that trusts only the server's own
// certificate (as a pinning app does: Go's TLS answers bad_certificate)
// refuses phonehome's twice and is then passed through, it alone: another
// client on another address is intercepted, and refusing once does not
// pass it through. After the cool-down, interception is tried again.
func TestPinningPerClient(t *testing.T) {
	_, secure, roots := upstreams(t)
	clock := &testClock{}
	const cooldown = 10 * time.Minute
	h := startHostile(t, roots, func(o *Options) { o.Now = clock.Now; o.PinCooldown = cooldown })
	target := strings.TrimPrefix(secure.URL, "https://")
	pinned := &tls.Config{RootCAs: roots, ServerName: "example.com"} // httptest's certificate names example.com
	refuse := func(src string, flows int) *flow.Flow {
		t.Helper()
		c := tls.Client(connectFrom(t, h, src, target), pinned)
		if err := c.Handshake(); err == nil {
			t.Fatalf("from %s: the pinning client must refuse phonehome's certificate", src)
		}
		c.Close()
		return h.waitFlows(t, flows)[flows-1]
	}
	passes := func(src string, flows int) *flow.Flow {
		t.Helper()
		c := tls.Client(connectFrom(t, h, src, target), pinned)
		if err := c.Handshake(); err != nil {
			t.Fatalf("from %s: must reach the real server untouched: %v", src, err)
		}
		fmt.Fprintf(c, "GET /ads?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
		body, _ := io.ReadAll(c)
		c.Close()
		if !strings.Contains(string(body), `"q":"x=1"`) {
			t.Fatalf("answer through the passthrough: %q", body)
		}
		return h.waitFlows(t, flows)[flows-1]
	}

	f := refuse("127.0.0.1", 1)
	if f.Notes.Has(flow.NoteCertRefused) || !strings.Contains(f.Notes.String(), "refused phonehome's certificate") || !strings.Contains(f.Notes.String(), "bad certificate") {
		t.Errorf("one refusal is noted, and decides nothing: %v", f.Notes)
	}
	f = refuse("127.0.0.1", 2)
	if !f.Notes.Has(flow.NoteCertRefused) {
		t.Fatalf("the second refusal decides: %v", f.Notes)
	}
	for _, want := range []string{"127.0.0.1", "2 times", "bad certificate", "until"} {
		if !strings.Contains(f.Notes.String(), want) {
			t.Errorf("the decision's note lacks %q: %v", want, f.Notes)
		}
	}
	f = passes("127.0.0.1", 3)
	if f.TLS == nil || f.TLS.Decrypted || !f.Notes.Has(flow.NotePassthrough) || f.BytesDown == 0 {
		t.Errorf("the passthrough's flow: %+v %v", f, f.Notes)
	}

	// another client, on another address: still intercepted, and one
	// refusal of its own passes nothing through
	pu := h.client()
	pu.Transport.(*http.Transport).DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext
	resp, err := pu.Get(secure.URL + "/ads?from=2")
	if err != nil {
		t.Fatalf("another client, trusting phonehome: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	f = h.waitFlows(t, 4)[3]
	if f.Client.Addr.String() != "127.0.0.2" || f.TLS == nil || !f.TLS.Decrypted || f.Request == nil {
		t.Errorf("another client's request must be decrypted: %+v", f)
	}
	f = refuse("127.0.0.2", 5)
	if f.Notes.Has(flow.NoteCertRefused) {
		t.Errorf("one refusal of another client decides nothing: %v", f.Notes)
	}

	// still passed through for the first, just before the cool-down ends
	clock.advance(cooldown - time.Minute)
	passes("127.0.0.1", 6)
	// after it, interception is tried again
	clock.advance(2 * time.Minute)
	f = refuse("127.0.0.1", 7)
	if f.Notes.Has(flow.NoteCertRefused) || f.Notes.Has(flow.NotePassthrough) {
		t.Errorf("after the cool-down, one refusal decides nothing yet: %v", f.Notes)
	}
	f = refuse("127.0.0.1", 8)
	if !f.Notes.Has(flow.NoteCertRefused) {
		t.Errorf("and two decide again: %v", f.Notes)
	}
	passes("127.0.0.1", 9)
	if decided, once := refusalNotes(h.got()); decided != 2 || once != 3 {
		t.Errorf("decisions %d (want 2), single refusals %d (want 3)", decided, once)
	}
}

// TestPinningCurl: curl with only the server's CA refuses phonehome's
// certificate (OpenSSL answers unknown_ca) twice, and the third time
// reaches the server untouched; from another address, curl with
// phonehome's CA is intercepted all along.
func TestPinningCurl(t *testing.T) {
	_, secure, roots := upstreams(t)
	h := startHostile(t, roots, nil)
	h.caFile = filepath.Join(t.TempDir(), "phonehome.pem")
	serverCA := filepath.Join(t.TempDir(), "server.pem")
	writePEM(t, h.caFile, h.ca.Raw)
	writePEM(t, serverCA, secure.Certificate().Raw)
	for i := 1; i <= 2; i++ {
		if out, err := curl(t, "--interface", "127.0.0.1", "-x", h.proxyURL, "--cacert", serverCA, secure.URL+"/ads"); err == nil {
			t.Fatalf("curl without phonehome's CA must refuse it: %s", out)
		}
		h.waitFlows(t, i)
	}
	got := h.got()
	if got[0].Notes.Has(flow.NoteCertRefused) || !got[1].Notes.Has(flow.NoteCertRefused) || !strings.Contains(got[1].Notes.String(), "unknown certificate authority") {
		t.Errorf("curl's refusals: %v / %v", got[0].Notes, got[1].Notes)
	}
	out, err := curl(t, "--interface", "127.0.0.1", "-x", h.proxyURL, "--cacert", serverCA, secure.URL+"/ads?third")
	if err != nil || !strings.Contains(out, `"q":"third"`) {
		t.Fatalf("the third time, curl must reach the server untouched: %v %s", err, out)
	}
	out, err = curl(t, "--interface", "127.0.0.2", "-x", h.proxyURL, "--cacert", h.caFile, secure.URL+"/ads?other")
	if err != nil || !strings.Contains(out, `"q":"other"`) {
		t.Fatalf("curl from another address, with phonehome's CA: %v %s", err, out)
	}
	f := h.waitFlows(t, 4)[3]
	if f.Request == nil || f.TLS == nil || !f.TLS.Decrypted {
		t.Errorf("another client must be intercepted: %+v", f)
	}
}

func writePEM(t *testing.T, path string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPinRule: the rule, without sockets: refusals counted per client and
// host within the window, the decision at the second, its end after the
// cool-down, a fresh count after it.
func TestPinRule(t *testing.T) {
	const window, cooldown = 10 * time.Minute, 5 * time.Minute
	b := newPinBook(2, window, cooldown)
	a, other := netip.MustParseAddr("192.168.1.20"), netip.MustParseAddr("192.168.1.21")
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	const bad = tls.AlertError(42)
	step := func(who netip.Addr, host string, when time.Duration, wantCount int, decides bool) {
		t.Helper()
		n, until := b.refused(who, host, at(when), bad)
		if n != wantCount || until.IsZero() == decides {
			t.Fatalf("refusal by %s for %s at +%s: count %d until %v; want %d, decides %v", who, host, when, n, until, wantCount, decides)
		}
	}
	passed := func(who netip.Addr, host string, when time.Duration) bool {
		_, ok := b.passed(who, host, at(when))
		return ok
	}
	step(a, "api.example", 0, 1, false)
	if passed(a, "api.example", time.Second) {
		t.Fatal("one refusal passes nothing through")
	}
	step(a, "api.example", window+time.Second, 1, false) // the first is out of the window
	step(other, "api.example", window+2*time.Second, 1, false)
	step(a, "cdn.example", window+3*time.Second, 1, false)
	step(a, "API.example.", window+4*time.Second, 2, true) // names as DNS compares them
	if !passed(a, "api.example", window+5*time.Second) || passed(other, "api.example", window+5*time.Second) || passed(a, "cdn.example", window+5*time.Second) {
		t.Fatal("passed through for that client and host only")
	}
	if s, _ := b.passed(netip.MustParseAddr("::ffff:192.168.1.20"), "api.example", at(window+5*time.Second)); s.count != 2 || s.alert != bad {
		t.Errorf("the decision, asked with a v4-mapped address: %+v", s)
	}
	// a handshake begun before the decision, refused after it
	step(a, "api.example", window+6*time.Second, 2, false)
	end := window + 4*time.Second + cooldown
	if !passed(a, "api.example", end-time.Nanosecond) || passed(a, "api.example", end) {
		t.Fatal("the decision lasts the cool-down, no more")
	}
	step(a, "api.example", end+time.Second, 1, false) // counted afresh
	step(a, "api.example", end+2*time.Second, 2, true)
}

// TestPinBookBounded: a flood of names costs a bounded book, and the
// decisions already made outlive it.
func TestPinBookBounded(t *testing.T) {
	b := newPinBook(2, time.Minute, time.Minute)
	a, pinning := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	now := time.Now()
	b.refused(pinning, "pinned.example", now, 46)
	b.refused(pinning, "pinned.example", now, 46)
	for i := 0; i < 3*maxPinPairs; i++ {
		b.refused(a, fmt.Sprintf("h%d.example", i), now, 48)
	}
	if n := len(b.pairs); n > maxPinPairs {
		t.Errorf("%d pairs kept", n)
	}
	if _, ok := b.passed(pinning, "pinned.example", now); !ok {
		t.Error("a decision was dropped for a flood of names")
	}
}

// TestClassifyHandshake: what counts as a refusal of the certificate.
func TestClassifyHandshake(t *testing.T) {
	remote := func(code uint8) error {
		// what crypto/tls returns for a received alert: its unexported
		// alert type, whose text is tls.AlertError's
		return fmt.Errorf("handshake: %w", &net.OpError{Op: "remote error", Err: tls.AlertError(code)})
	}
	clear := func(code uint8) *alertTap { return &alertTap{seen: tls.AlertError(code), got: true} }
	for _, tc := range []struct {
		name string
		err  error
		tap  *alertTap
		want handshakeEnd
	}{
		{"bad_certificate", remote(42), nil, endRefused},
		{"unknown_ca", remote(48), nil, endRefused},
		{"certificate_unknown", remote(46), nil, endRefused},
		{"unknown_ca in clear (OpenSSL, TLS 1.3)", errors.New("local error: tls: bad record MAC"), clear(48), endRefused},
		{"protocol_version", remote(70), nil, endAlert},
		{"EOF", io.EOF, nil, endDropped},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, nil, endDropped},
		{"timeout", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, nil, endTimeout},
		{"garbled", errors.New("tls: client offered only unsupported versions"), nil, endRejected},
	} {
		if got, _ := classifyHandshake(tc.err, tc.tap); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if a, ok := remoteAlert(remote(48)); !ok || a != 48 || alertName(a) != "unknown certificate authority" {
		t.Errorf("the alert's code and name: %d %v %q", a, ok, alertName(a))
	}
}

// tapStream is a TLS 1.3 client's flight as the proxy reads it: the
// ClientHello, a change_cipher_spec, then the alert in clear.
func tapStream() []byte {
	var b []byte
	b = append(b, 22, 3, 1, 0, 4, 1, 0, 0, 0) // a (tiny) handshake record
	b = append(b, 20, 3, 3, 0, 1, 1)          // change_cipher_spec
	b = append(b, 23, 3, 3, 0, 3, 21, 2, 42)  // encrypted: looks like an alert inside, is not one
	b = append(b, 21, 3, 3, 0, 2, 2, 48)      // unknown_ca, in clear
	return b
}

// TestAlertTap: the alert in clear is found however the reads split the
// stream, and not when it is not there.
func TestAlertTap(t *testing.T) {
	s := tapStream()
	for cut := 0; cut <= len(s); cut++ {
		tap := &alertTap{}
		tap.watch(s[:cut])
		tap.watch(s[cut:])
		if !tap.got || tap.seen != 48 {
			t.Fatalf("cut at %d: %v %d", cut, tap.got, tap.seen)
		}
	}
	one := &alertTap{}
	for i := range s[:len(s)-7] {
		one.watch(s[i : i+1])
	}
	if one.got {
		t.Errorf("an alert seen where there is none: %d", one.seen)
	}
}

func FuzzAlertTap(f *testing.F) {
	f.Add(tapStream(), 3)
	f.Add([]byte{21, 3, 3, 0, 2, 2}, 1)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		whole := &alertTap{}
		whole.watch(b)
		split := &alertTap{}
		if cut < 0 || cut > len(b) {
			cut = len(b) / 2
		}
		split.watch(b[:cut])
		split.watch(b[cut:])
		if whole.got != split.got || whole.seen != split.seen {
			t.Fatalf("one read: %v %d; split at %d: %v %d", whole.got, whole.seen, cut, split.got, split.seen)
		}
	})
}
