package proxy

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"phonehome/internal/flow"
)

// countingHandler counts every call a source makes to its Handler.
type countingHandler struct{ hellos, requests, done atomic.Int32 }

func (c *countingHandler) Hello(context.Context, flow.Hello) flow.Verdict {
	c.hellos.Add(1)
	return flow.Verdict{}
}

func (c *countingHandler) RequestBody(*flow.Flow) int { return 0 }

func (c *countingHandler) Request(context.Context, *flow.Flow) (flow.Verdict, *flow.Request) {
	c.requests.Add(1)
	return flow.Verdict{}, nil
}

func (c *countingHandler) Done(*flow.Flow) { c.done.Add(1) }

func (c *countingHandler) check(t *testing.T) {
	t.Helper()
	if h, r, d := c.hellos.Load(), c.requests.Load(), c.done.Load(); h+r+d != 0 {
		t.Errorf("phonehome's own pages reached the Handler: %d Hello, %d Request, %d Done", h, r, d)
	}
}

// TestCertificatePageHTTPS: phonehome.cert answers over HTTPS as over
// HTTP, through CONNECT (TLS or plain HTTP inside) and transparently
// intercepted, even when --intercept leaves it out; nothing of it reaches
// the Handler, so no report ever names it.
func TestCertificatePageHTTPS(t *testing.T) {
	counted := &countingHandler{}
	h := startHostile(t, nil, func(o *Options) { o.Handler = counted; o.Intercept = []string{"*.example"} })
	h.caFile = filepath.Join(t.TempDir(), "phonehome.pem")
	writePEM(t, h.caFile, h.ca.Raw)
	const title = "Install phonehome's certificate"

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"https through CONNECT", []string{"-x", h.proxyURL, "--cacert", h.caFile, "https://phonehome.cert/"}},
		{"https, HTTP/2 offered", []string{"--http2", "-x", h.proxyURL, "--cacert", h.caFile, "https://phonehome.cert/"}},
		{"http", []string{"-x", h.proxyURL, "http://phonehome.cert/"}},
		{"http inside CONNECT", []string{"-p", "-x", h.proxyURL, "http://phonehome.cert/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := curl(t, tc.args...)
			if err != nil || !strings.Contains(out, title) {
				t.Fatalf("the certificate page: %v %.300s", err, out)
			}
		})
	}
	der, err := curl(t, "-x", h.proxyURL, "--cacert", h.caFile, "https://phonehome.cert/ca.der")
	if err != nil || der != string(h.ca.Raw) {
		t.Errorf("https://phonehome.cert/ca.der is not the CA: %v", err)
	}
	// a device that does not trust the CA yet gets nowhere, and is not
	// taken for one that pins phonehome.cert
	for i := 0; i < 3; i++ {
		if _, err := curl(t, "-x", h.proxyURL, "https://phonehome.cert/"); err == nil {
			t.Fatal("curl without the CA must refuse the page's certificate")
		}
	}
	if out, err := curl(t, "-x", h.proxyURL, "--cacert", h.caFile, "https://phonehome.cert/"); err != nil || !strings.Contains(out, title) {
		t.Fatalf("after refusals, the page is still served: %v %.300s", err, out)
	}

	t.Run("transparent", func(t *testing.T) {
		_, _, m := testMinter(t)
		p := New(Options{Minter: m, Handler: counted})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		orig := netip.MustParseAddrPort("192.0.2.1:443") // never dialled
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go p.ServeIntercepted(ctx, c, orig)
			}
		}()
		caFile := filepath.Join(t.TempDir(), "ca.pem")
		writePEM(t, caFile, m.CA().Cert.Raw)
		at := ln.Addr().String()
		if out, err := curl(t, "--cacert", caFile, "--connect-to", "phonehome.cert:443:"+at, "https://phonehome.cert/"); err != nil || !strings.Contains(out, title) {
			t.Errorf("https, transparent: %v %.300s", err, out)
		}
		if out, err := curl(t, "--connect-to", "phonehome.cert:80:"+at, "http://phonehome.cert/"); err != nil || !strings.Contains(out, title) {
			t.Errorf("http, transparent: %v %.300s", err, out)
		}
		cancel()
		p.Close()
	})
	h.stop()
	counted.check(t)
}
