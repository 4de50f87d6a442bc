// Command genpcap writes a large pcap of mixed phone-like traffic for the
// analyze benchmark: keep-alive HTTP/1.1 with Content-Length and chunked bodies,
// DNS lookups, and TLS connections with real handshakes. It prints how many
// HTTP requests it wrote, so the benchmark can check every one was found.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"time"

	"phonehome/internal/capture/pcap"
	"phonehome/internal/synth"
)

type countingWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}

func main() {
	out := flag.String("o", "bench.pcap", "output file")
	sizeMB := flag.Int("size", 512, "size of the file in MB (10^6 bytes)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	fh, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	cw := &countingWriter{w: bufio.NewWriterSize(fh, 1<<20)}
	pw, err := pcap.NewWriter(cw, pcap.LinkEthernet)
	if err != nil {
		log.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(*seed, 2))
	w := synth.New(pw, time.Date(2026, 11, 18, 7, 0, 0, 0, time.UTC))
	w.Step = 50 * time.Microsecond

	hosts := []string{"tracking.intl.miui.com", "api.ad.intl.xiaomi.com", "data.mistat.intl.xiaomi.com", "graph.facebook.com",
		"app-measurement.com", "t.appsflyer.com", "api.branch.io", "sdk.split.io", "cdn.example-news.com", "img.example-shop.com"}
	// A few real TLS conversations, replayed on new ports.
	var tlsConvs [][]synth.Chunk
	for i, h := range hosts[:4] {
		c, err := synth.TLSConversation(h, []string{"h2", "http/1.1"}, 1500+500*i, 3000+8000*i)
		if err != nil {
			log.Fatal(err)
		}
		tlsConvs = append(tlsConvs, c)
	}
	target := int64(*sizeMB) * 1e6
	requests, conns, tlsCount, dnsCount := 0, 0, 0, 0
	port := uint16(20000)
	dnsID := uint16(0)
	resolver := netip.AddrPortFrom(netip.MustParseAddr("192.168.1.1"), 53)
	for cw.n < target {
		phone := netip.AddrFrom4([4]byte{192, 168, 1, byte(20 + rng.IntN(8))})
		port++
		if port < 20000 {
			port = 20000
		}
		host := hosts[rng.IntN(len(hosts))]
		server := netip.AddrFrom4([4]byte{161, 117, byte(rng.IntN(4)), byte(1 + rng.IntN(200))})
		dnsID++
		if err := w.DNS(netip.AddrPortFrom(phone, port), resolver, dnsID, host, server); err != nil {
			log.Fatal(err)
		}
		dnsCount++
		port++
		conns++
		if rng.IntN(4) == 0 { // one connection in four is TLS
			c, err := w.TCP(netip.AddrPortFrom(phone, port), netip.AddrPortFrom(server, 443))
			if err != nil {
				log.Fatal(err)
			}
			for _, ch := range tlsConvs[rng.IntN(len(tlsConvs))] {
				if err := c.Send(ch.FromClient, ch.Data); err != nil {
					log.Fatal(err)
				}
			}
			if err := c.Close(); err != nil {
				log.Fatal(err)
			}
			tlsCount++
			continue
		}
		c, err := w.TCP(netip.AddrPortFrom(phone, port), netip.AddrPortFrom(server, 80))
		if err != nil {
			log.Fatal(err)
		}
		for n := 1 + rng.IntN(8); n > 0; n-- {
			if err := c.Send(true, []byte(request(rng, host, requests))); err != nil {
				log.Fatal(err)
			}
			if err := c.Send(false, []byte(response(rng))); err != nil {
				log.Fatal(err)
			}
			requests++
		}
		if err := c.Close(); err != nil {
			log.Fatal(err)
		}
	}
	if err := cw.w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("bytes=%d http_requests=%d tcp_connections=%d tls_connections=%d dns_lookups=%d\n", cw.n, requests, conns, tlsCount, dnsCount)
}

const ua = "Dalvik/2.1.0 (Linux; U; Android 12; M2101K6G MIUI/V13.0.6.0.SKEMIXM)"

func request(rng *rand.Rand, host string, n int) string {
	if rng.IntN(3) == 0 {
		return fmt.Sprintf("GET /api/v%d/config?app=com.miui.home&n=%d&ts=%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept-Encoding: gzip\r\n\r\n",
			1+rng.IntN(3), n, 1731916800000+int64(n), host, ua)
	}
	body := fmt.Sprintf(`{"android_id":"3b6f1e0a9c2d4f81","event":"e%d","ts":%d,"props":"%s"}`, n, 1731916800000+int64(n), strings.Repeat("x", rng.IntN(3000)))
	return fmt.Sprintf("POST /track/v1?sender=com.miui.systemAdSolution HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		host, ua, len(body), body)
}

// response sizes follow background app traffic: mostly small API answers,
// some pages of JSON, a few downloads.
func response(rng *rand.Rand) string {
	var size int
	switch r := rng.IntN(100); {
	case r < 70:
		size = 100 + rng.IntN(1900)
	case r < 95:
		size = 2000 + rng.IntN(14000)
	default:
		size = 20000 + rng.IntN(180000)
	}
	body := strings.Repeat("a", size)
	if rng.IntN(6) == 0 {
		var b strings.Builder
		b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
		for len(body) > 0 {
			k := min(len(body), 8192)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", k, body[:k])
			body = body[k:]
		}
		b.WriteString("0\r\n\r\n")
		return b.String()
	}
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", size, body)
}
