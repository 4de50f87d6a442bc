package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"phonehome/internal/flow"
)

// TestShutdownFinishesHTTP2InFlight: the proxy is told to stop while an
// HTTP/2 request waits for a slow server. The request is finished (not cut),
// its flow is emitted before Serve returns, and nothing is emitted after.
func TestShutdownFinishesHTTP2InFlight(t *testing.T) {
	for run := 0; run < 3; run++ {
		arrived := make(chan struct{}, 1)
		slow := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			time.Sleep(400 * time.Millisecond)
			io.WriteString(w, "finished")
		}))
		slow.StartTLS()
		roots := x509.NewCertPool()
		roots.AddCert(slow.Certificate())
		h := start(t, roots)
		var served atomic.Bool
		var late atomic.Int32
		h.mu.Lock()
		h.flows = nil
		h.mu.Unlock()

		pu, _ := url.Parse(h.proxyURL)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Proxy:             http.ProxyURL(pu),
			TLSClientConfig:   &tls.Config{RootCAs: h.caPool},
			ForceAttemptHTTP2: true,
		}}
		type result struct {
			body  string
			proto string
			err   error
		}
		res := make(chan result, 1)
		go func() {
			resp, err := client.Get(slow.URL + "/slow?idfa=6D92078A-8246-4BA4-AE5B-76104861E7DC")
			if err != nil {
				res <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			res <- result{string(b), resp.Proto, err}
		}()
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the request never reached the server")
		}
		h.cancel() // Ctrl-C, with the request in flight
		<-h.done
		served.Store(true)
		n := len(h.got())
		r := <-res
		if r.err != nil || r.body != "finished" || r.proto != "HTTP/2.0" {
			t.Fatalf("the request in flight was not finished: %+v", r)
		}
		if n != 1 || h.got()[0].Response == nil || h.got()[0].Response.Status != 200 {
			t.Fatalf("flows emitted before Serve returned: %d %+v", n, h.got())
		}
		time.Sleep(100 * time.Millisecond)
		if len(h.got()) != n || late.Load() != 0 {
			t.Fatalf("a flow was emitted after Serve returned")
		}
		if h.got()[0].Request.Proto != "HTTP/2.0" || h.got()[0].Transport != flow.TransportHTTPS {
			t.Errorf("flow: %+v", h.got()[0].Request)
		}
		client.CloseIdleConnections()
		slow.Close()
	}
}
