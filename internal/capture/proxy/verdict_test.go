package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"phonehome/internal/capture"
	"phonehome/internal/flow"
)

// deciding is a Handler with a policy of its own: requests to /blocked are
// refused, the imei is taken out of requests to /redact (from the query and
// from a form body), and hosts named "passthrough" in their SNI are relayed.
type deciding struct {
	mu     sync.Mutex
	flows  []*flow.Flow
	hellos []flow.Hello
	seen   []string // the request bodies the decisions saw
}

func (d *deciding) Hello(_ context.Context, h flow.Hello) flow.Verdict {
	d.mu.Lock()
	d.hellos = append(d.hellos, h)
	d.mu.Unlock()
	return flow.Verdict{}
}

func (d *deciding) RequestBody(f *flow.Flow) int {
	if strings.Contains(f.Request.URL, "/redact") {
		return 4096
	}
	return 0
}

func (d *deciding) Request(_ context.Context, f *flow.Flow) (flow.Verdict, *flow.Request) {
	d.mu.Lock()
	d.seen = append(d.seen, string(f.Request.Body.Data))
	d.mu.Unlock()
	switch {
	case strings.Contains(f.Request.URL, "/blocked"):
		return flow.Verdict{Action: flow.ActionBlock, Rule: "||tracker.test^", List: "test", Status: 451}, nil
	case strings.Contains(f.Request.URL, "/redact"):
		out := *f.Request
		u, _ := url.Parse(out.URL)
		q := u.Query()
		q.Del("imei")
		u.RawQuery = q.Encode()
		out.URL = u.String()
		form, _ := url.ParseQuery(string(f.Request.Body.Data))
		form.Del("imei")
		out.Body.Data = []byte(form.Encode())
		out.Headers = nil
		for _, h := range f.Request.Headers {
			if !strings.EqualFold(h.Name, "X-Imei") {
				out.Headers = append(out.Headers, h)
			}
		}
		return flow.Verdict{Action: flow.ActionRedact, Rule: "imei", Redactions: []flow.Redaction{{Kind: "imei", Path: "query:imei"}}}, &out
	}
	return flow.Verdict{}, nil
}

func (d *deciding) Done(f *flow.Flow) {
	d.mu.Lock()
	d.flows = append(d.flows, f)
	d.mu.Unlock()
}

// TestVerdictsChangeWhatIsSent: a verdict set in Request changes what the
// server receives, on every path of the proxy: the plain HTTP/1 path, the
// general one (a chunked body), HTTPS inside a CONNECT tunnel and HTTP/2.
func TestVerdictsChangeWhatIsSent(t *testing.T) {
	var hits atomic.Int32
	var mu sync.Mutex
	var got []string
	echo := func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, fmt.Sprintf("%s %s imei-header=%q body=%s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Imei"), b))
		mu.Unlock()
		fmt.Fprintf(w, "server saw %s", r.URL.RequestURI())
	}
	plain := httptest.NewServer(http.HandlerFunc(echo))
	defer plain.Close()
	secure := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	secure.StartTLS()
	defer secure.Close()
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())

	d := &deciding{}
	pool, pu, cancel, served := serveDeciding(t, roots, d)

	for _, tc := range []struct {
		name    string
		base    string
		h2      bool
		chunked bool
	}{
		{"plain HTTP/1.1", plain.URL, false, false},
		{"HTTP/1.1, chunked body", plain.URL, false, true},
		{"HTTPS, HTTP/1.1 in CONNECT", secure.URL, false, false},
		{"HTTPS, HTTP/2", secure.URL, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: tc.h2}
			if !tc.h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			defer tr.CloseIdleConnections()
			before := hits.Load()
			mu.Lock()
			got = nil
			mu.Unlock()
			post := func(path, body string) (*http.Response, string) {
				var r io.Reader = strings.NewReader(body)
				if tc.chunked {
					r = io.MultiReader(strings.NewReader(body)) // unknown length: sent chunked
				}
				req, _ := http.NewRequest("POST", tc.base+path, r)
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Imei", "356938035643809")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("POST %s: %v", path, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp, string(b)
			}
			// blocked: phonehome answers, the server never hears of it
			resp, body := post("/blocked/track?imei=356938035643809", "imei=356938035643809&x=1")
			if resp.StatusCode != 451 || !strings.Contains(body, "blocked by phonehome") || hits.Load() != before {
				t.Errorf("blocked request: %d %q, server hits %d", resp.StatusCode, body, hits.Load()-before)
			}
			if tc.h2 && resp.Proto != "HTTP/2.0" {
				t.Errorf("expected HTTP/2, got %s", resp.Proto)
			}
			// redacted: the server gets the copy
			resp, body = post("/redact/track?imei=356938035643809&app=com.example", "imei=356938035643809&x=1")
			if resp.StatusCode != 200 || !strings.Contains(body, "server saw /redact/track?app=com.example") {
				t.Errorf("redacted request: %d %q", resp.StatusCode, body)
			}
			// allowed: unchanged, and the connection still serves (the
			// blocked request's body was read to its end)
			resp, body = post("/ok?imei=356938035643809", "imei=356938035643809")
			if resp.StatusCode != 200 || !strings.Contains(body, "imei=356938035643809") {
				t.Errorf("allowed request: %d %q", resp.StatusCode, body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 2 {
				t.Fatalf("server received %d requests, want 2: %q", len(got), got)
			}
			if strings.Contains(got[0], "356938035643809") || !strings.Contains(got[0], "body=x=1") {
				t.Errorf("the server must receive the redacted copy: %s", got[0])
			}
			if !strings.Contains(got[1], `imei-header="356938035643809"`) || !strings.Contains(got[1], "body=imei=356938035643809") {
				t.Errorf("an allowed request goes unchanged: %s", got[1])
			}
		})
	}
	stopAt := time.Now()
	cancel()
	<-served
	if took := time.Since(stopAt); took > 4*time.Second { // under the 5 s grace: idle connections do not wait for it
		t.Errorf("stopping took %v with only idle connections", took)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var blocked, redacted int
	for _, f := range d.flows {
		switch f.Verdict.Action {
		case flow.ActionBlock:
			blocked++
			if f.Response == nil || f.Response.Status != 451 || !f.Notes.Has(flow.NoteBlocked) && f.Verdict.Rule == "" {
				t.Errorf("blocked flow: %+v", f.Response)
			}
			if !bytes.Contains(f.Request.Body.Data, []byte("imei=")) {
				t.Errorf("the record keeps what the device sent: %q", f.Request.Body.Data)
			}
		case flow.ActionRedact:
			redacted++
			if !strings.Contains(f.Request.URL, "imei=356938035643809") || !bytes.Contains(f.Request.Body.Data, []byte("imei=")) {
				t.Errorf("the observed request is kept as sent, not as forwarded: %s %q", f.Request.URL, f.Request.Body.Data)
			}
		}
	}
	if blocked != 4 || redacted != 4 {
		t.Errorf("verdicts recorded: %d blocked, %d redacted; want 4 and 4", blocked, redacted)
	}
	for _, s := range d.seen {
		if s != "" && !strings.Contains(s, "imei=") {
			t.Errorf("a decision that asked for the body must see it: %q", s)
		}
	}
	if len(d.hellos) < 2 {
		t.Errorf("each TLS connection is decided on at its hello: %d", len(d.hellos))
	}
}

// helloBlocking blocks, at the hello, TLS connections whose SNI is
// "localhost"; it allows every request it is asked about.
type helloBlocking struct{ deciding }

func (h *helloBlocking) Hello(_ context.Context, hl flow.Hello) flow.Verdict {
	if hl.SNI == "localhost" {
		return flow.Verdict{Action: flow.ActionBlock, Rule: "localhost", Status: 451}
	}
	return flow.Verdict{}
}

func (h *helloBlocking) Request(context.Context, *flow.Flow) (flow.Verdict, *flow.Request) {
	return flow.Verdict{}, nil
}

// TestHelloBlockAnswersReadably: a TLS host blocked at its hello is
// intercepted so that every request on the connection gets phonehome's own
// answer (over HTTP/1.1 and HTTP/2), not a broken handshake; the server never
// hears of it, and each request is recorded with the hello's verdict.
func TestHelloBlockAnswersReadably(t *testing.T) {
	var hits atomic.Int32
	secure := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	secure.StartTLS()
	defer secure.Close()
	_, port, _ := net.SplitHostPort(secure.Listener.Addr().String())
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())
	h := &helloBlocking{}
	pool, pu, cancel, served := serveDeciding(t, roots, h)
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for range 2 {
			resp, err := client.Get("https://localhost:" + port + "/track")
			if err != nil {
				t.Fatalf("h2=%v: %v", h2, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 451 || !strings.Contains(string(b), "blocked by phonehome: block (localhost)") || h2 != (resp.Proto == "HTTP/2.0") {
				t.Errorf("h2=%v: %s %d %q", h2, resp.Proto, resp.StatusCode, b)
			}
		}
		tr.CloseIdleConnections()
	}
	cancel()
	<-served
	if n := hits.Load(); n != 0 {
		t.Errorf("the server received %d requests of a blocked host", n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.flows) != 4 {
		t.Fatalf("flows: %d, want one per request", len(h.flows))
	}
	for _, f := range h.flows {
		if f.Verdict.Action != flow.ActionBlock || f.Request == nil || f.Response == nil || f.Response.Status != 451 {
			t.Errorf("flow: %+v", f)
		}
	}
}

// serveDeciding serves a proxy with handler h that trusts roots upstream;
// it returns the pool that trusts the proxy's CA, the proxy's URL, and how
// to stop it and know it stopped.
func serveDeciding(t *testing.T, roots *x509.CertPool, h capture.Handler) (*x509.CertPool, *url.URL, context.CancelFunc, chan struct{}) {
	t.Helper()
	_, ca, m := testMinter(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	p := New(Options{Minter: m, Upstream: &tls.Config{RootCAs: roots}, Handler: h})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { p.Serve(ctx, ln); close(served) }()
	pu, _ := url.Parse("http://" + ln.Addr().String())
	return pool, pu, cancel, served
}
