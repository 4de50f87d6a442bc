// Command proxyload measures an HTTP(S) proxy: requests per second over
// keep-alive connections, new TLS connections per second, and latency at
// concurrency 1. With -serve it is the upstream instead: 1 KiB responses over
// HTTP and HTTPS, its certificate written to a file for the proxies to trust.
//
// Like wrk, it speaks HTTP/1.1 itself (a fixed request, answers read by their
// Content-Length), so that its own work weighs little beside the proxy's;
// -nethttp uses Go's net/http client instead.
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	serve := flag.Bool("serve", false, "run the upstream servers")
	httpAddr := flag.String("http", "127.0.0.1:18100", "upstream HTTP address (with -serve)")
	certOut := flag.String("cert", "upstream.pem", "where -serve writes its certificate")
	proxy := flag.String("proxy", "", "proxy URL; empty: direct")
	target := flag.String("target", "", "URL to request")
	cacert := flag.String("cacert", "", "CA certificate to trust (the proxy's, or the upstream's when direct)")
	mode := flag.String("mode", "keepalive", "keepalive, handshake or latency")
	conc := flag.Int("c", 64, "concurrent connections")
	dur := flag.Duration("d", 5*time.Second, "how long to run")
	netHTTP := flag.Bool("nethttp", false, "use Go's net/http client instead of proxyload's own HTTP/1.1 one")
	flag.Parse()
	if *serve {
		runServers(*httpAddr, *certOut)
		return
	}
	pool := x509.NewCertPool()
	if *cacert != "" {
		b, err := os.ReadFile(*cacert)
		if err != nil {
			log.Fatal(err)
		}
		pool.AppendCertsFromPEM(b)
	}
	newClient := func(keepAlive bool) client {
		if *netHTTP {
			return newNetHTTP(pool, *proxy, *target, keepAlive)
		}
		c, err := newRaw(pool, *proxy, *target)
		if err != nil {
			log.Fatal(err)
		}
		c.keepAlive = keepAlive
		return c
	}
	get := func(c client) error { return c.get() }
	switch *mode {
	case "keepalive", "handshake":
		var n, errs atomic.Int64
		deadline := time.Now().Add(*dur)
		var wg sync.WaitGroup
		for i := 0; i < *conc; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := newClient(*mode == "keepalive")
				for time.Now().Before(deadline) {
					if err := get(c); err != nil {
						errs.Add(1)
						continue
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		fmt.Printf("%.0f\n", float64(n.Load())/dur.Seconds())
		if errs.Load() > 0 {
			fmt.Fprintf(os.Stderr, "%d errors\n", errs.Load())
		}
	case "latency":
		c := newClient(true)
		if err := get(c); err != nil { // warm the connection up
			log.Fatal(err)
		}
		var lat []time.Duration
		deadline := time.Now().Add(*dur)
		for time.Now().Before(deadline) && len(lat) < 20000 {
			t0 := time.Now()
			if err := get(c); err != nil {
				log.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		fmt.Printf("%.3f %.3f\n", ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]))
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func runServers(httpAddr, certOut string) {
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(ln, h)
	ts := httptest.NewUnstartedServer(h)
	ts.StartTLS()
	if err := os.WriteFile(certOut, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("http://%s https://%s\n", ln.Addr(), ts.Listener.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	<-ctx.Done()
	ts.Close()
}
