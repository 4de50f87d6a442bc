package pcap_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"phonehome/internal/capture/pcap"
	"phonehome/internal/flow"
	"phonehome/internal/synth"
)

var (
	cli = netip.MustParseAddrPort("192.168.1.23:40100")
	srv = netip.MustParseAddrPort("203.0.113.9:80")
	t0  = time.Date(2026, 11, 18, 7, 0, 0, 0, time.UTC)
)

// conversation writes an HTTP conversation with the given MSS and returns the pcap bytes.
func conversation(t testing.TB, mss int, exchanges ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	pw, err := pcap.NewWriter(&buf, pcap.LinkEthernet)
	if err != nil {
		t.Fatal(err)
	}
	w := synth.New(pw, t0)
	c, err := w.TCP(cli, srv)
	if err != nil {
		t.Fatal(err)
	}
	c.MSS = mss
	for _, ex := range exchanges {
		if err := c.Send(true, []byte(ex[0])); err != nil {
			t.Fatal(err)
		}
		if err := c.Send(false, []byte(ex[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// records splits a pcap into its header and packet records.
func records(b []byte) (hdr []byte, recs [][]byte) {
	hdr, b = b[:24], b[24:]
	for len(b) >= 16 {
		n := 16 + int(binary.LittleEndian.Uint32(b[8:]))
		recs = append(recs, b[:n])
		b = b[n:]
	}
	return hdr, recs
}

func join(hdr []byte, recs [][]byte) []byte {
	out := append([]byte(nil), hdr...)
	for _, r := range recs {
		out = append(out, r...)
	}
	return out
}

func read(t testing.TB, b []byte) ([]*flow.Flow, pcap.Stats) {
	t.Helper()
	var flows []*flow.Flow
	st, err := pcap.Read(bytes.NewReader(b), "test.pcap", pcap.Options{}, func(f *flow.Flow) { flows = append(flows, f) })
	if err != nil {
		t.Fatal(err)
	}
	return flows, st
}

var (
	chunkedResp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
	getReq      = "GET /track?sender=com.miui.systemAdSolution HTTP/1.1\r\nHost: tracking.intl.miui.com\r\n\r\n"
	postReq     = "POST /v1/batch HTTP/1.1\r\nHost: data.mistat.intl.xiaomi.com\r\nContent-Length: 26\r\n\r\n{\"android_id\":\"3b6f1e0a\"}\n"
	okResp      = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
)

func checkThree(t *testing.T, flows []*flow.Flow) {
	t.Helper()
	if len(flows) != 3 {
		t.Fatalf("want 3 flows, got %d", len(flows))
	}
	if f := flows[0]; f.Request.URL != "http://tracking.intl.miui.com/track?sender=com.miui.systemAdSolution" ||
		string(f.Response.Body.Data) != "hello world" || f.Response.Trailers.Get("X-Sum") != "42" || f.Host != "tracking.intl.miui.com" {
		t.Errorf("chunked exchange: %s body %q trailers %v", f.Request.URL, f.Response.Body.Data, f.Response.Trailers)
	}
	if f := flows[1]; string(f.Request.Body.Data) != "{\"android_id\":\"3b6f1e0a\"}\n" || string(f.Response.Body.Data) != "ok" {
		t.Errorf("post exchange: %q %q", f.Request.Body.Data, f.Response.Body.Data)
	}
	if f := flows[2]; f.Request.Method != "GET" || f.Response == nil {
		t.Errorf("third exchange: %+v", f)
	}
	for _, f := range flows {
		if len(f.Notes) > 0 || f.Request.Body.Incomplete || f.Response.Body.Incomplete {
			t.Errorf("%s: notes %v", f.Request.URL, f.Notes)
		}
	}
}

// TestSegmentBoundaries splits the same conversation into segments of every
// size from 1 byte up, so every parser state meets a boundary.
func TestSegmentBoundaries(t *testing.T) {
	for _, mss := range []int{1, 2, 3, 5, 7, 13, 64, 1448} {
		t.Run(fmt.Sprint(mss), func(t *testing.T) {
			flows, _ := read(t, conversation(t, mss, [2]string{getReq, chunkedResp}, [2]string{postReq, okResp}, [2]string{getReq, okResp}))
			checkThree(t, flows)
		})
	}
}

func TestOutOfOrderAndRetransmission(t *testing.T) {
	b := conversation(t, 16, [2]string{getReq, chunkedResp}, [2]string{postReq, okResp}, [2]string{getReq, okResp})
	hdr, recs := records(b)
	// Swap neighbours after the handshake and send some packets twice.
	var out [][]byte
	for i := 0; i < len(recs); i++ {
		if i > 3 && i+1 < len(recs) && i%3 == 0 {
			out = append(out, recs[i+1], recs[i], recs[i])
			i++
			continue
		}
		out = append(out, recs[i])
	}
	flows, st := read(t, join(hdr, out))
	checkThree(t, flows)
	if st.Retransmitted == 0 {
		t.Error("retransmissions not counted")
	}
}

func TestMissingSegment(t *testing.T) {
	bigBody := strings.Repeat("x", 5000)
	resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(bigBody), bigBody)
	b := conversation(t, 1000, [2]string{getReq, resp}, [2]string{postReq, okResp})
	hdr, recs := records(b)
	// Drop the packet that carries the third segment of the response.
	var out [][]byte
	seen := 0
	for _, r := range recs {
		if len(r) > 16+54+900 && bytes.Contains(r, []byte("xxxx")) {
			seen++
			if seen == 3 {
				continue
			}
		}
		out = append(out, r)
	}
	flows, st := read(t, join(hdr, out))
	if st.MissingBytes != 1000 || st.Gaps != 1 {
		t.Errorf("stats %+v", st)
	}
	if len(flows) != 2 {
		t.Fatalf("a lost segment inside a body must not lose the next exchange: %d flows", len(flows))
	}
	if b := flows[0].Response.Body; !b.Incomplete || b.Size != 5000 || len(b.Data) != 4000 {
		t.Errorf("body incomplete=%v size=%d kept=%d", b.Incomplete, b.Size, len(b.Data))
	}
	if string(flows[1].Request.Body.Data) != "{\"android_id\":\"3b6f1e0a\"}\n" {
		t.Errorf("second request %q", flows[1].Request.Body.Data)
	}
}

func TestMidStreamStart(t *testing.T) {
	b := conversation(t, 1448, [2]string{getReq, okResp}, [2]string{postReq, okResp})
	hdr, recs := records(b)
	// Start the capture after the handshake and the first request.
	flows, _ := read(t, join(hdr, recs[5:]))
	if len(flows) != 2 || flows[0].Request != nil || flows[0].Response == nil || flows[1].Request == nil {
		t.Fatalf("flows: %d", len(flows))
	}
	if len(flows[0].Notes) == 0 {
		t.Error("a response without its request must be noted")
	}
}

func TestMalformedPackets(t *testing.T) {
	b := conversation(t, 100, [2]string{getReq, okResp})
	hdr, recs := records(b)
	// Corrupt headers of a few packets: bad IHL, short frames, a huge TCP offset.
	bad := [][]byte{}
	for i, r := range recs {
		r = append([]byte(nil), r...)
		switch i {
		case 7:
			r[16+14] = 0x41 // IHL 1
		case 8:
			r = r[:16+20]
			binary.LittleEndian.PutUint32(r[8:], 20)
		case 9:
			r[16+14+20+12] = 0xf0
		}
		bad = append(bad, r)
	}
	_, st := read(t, join(hdr, bad))
	if st.Malformed != 3 {
		t.Errorf("malformed %d", st.Malformed)
	}
}

func TestMemoryBoundedByConnections(t *testing.T) {
	var buf bytes.Buffer
	pw, _ := pcap.NewWriter(&buf, pcap.LinkEthernet)
	w := synth.New(pw, t0)
	for i := 0; i < 50; i++ {
		c, _ := w.TCP(netip.AddrPortFrom(cli.Addr(), uint16(30000+i)), srv)
		_ = c.Send(true, []byte(getReq)) // never answered, never closed
	}
	a := pcap.NewAssembler("x", pcap.Options{MaxConns: 10}, func(*flow.Flow) {})
	_, recs := records(buf.Bytes())
	for _, r := range recs {
		a.Packet(pcap.LinkEthernet, t0, r[16:])
	}
	// Before the end of the file, all but the 10 newest connections must
	// already have been closed and emitted.
	if got := a.Stats().Flows; got != 40 {
		t.Errorf("%d flows emitted while reading, want 40", got)
	}
	a.Close()
	if got := a.Stats().Flows; got != 50 {
		t.Errorf("%d flows after Close, want 50", got)
	}
}

func TestUnsupportedLink(t *testing.T) {
	var buf bytes.Buffer
	pcap.NewWriter(&buf, 147) // a user-defined DLT
	_, err := pcap.Read(&buf, "x", pcap.Options{}, func(*flow.Flow) {})
	var fe *pcap.FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "link type 147") {
		t.Errorf("%v", err)
	}
}

func FuzzPcap(f *testing.F) {
	f.Add(conversation(f, 7, [2]string{getReq, chunkedResp}, [2]string{postReq, okResp}))
	f.Add(conversation(f, 1448, [2]string{"CONNECT a:443 HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n"}))
	f.Add(conversation(f, 3, [2]string{"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HTTP/1.0 200 OK\r\n\r\nbody until close"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = pcap.Read(bytes.NewReader(b), "fuzz", pcap.Options{MaxBody: 64, MaxOutOfOrder: 256, MaxConns: 4}, func(*flow.Flow) {})
	})
}

// FuzzHTTPStream feeds arbitrary client and server bytes through a real TCP
// conversation, exercising the HTTP/1 parser and reassembly together.
func FuzzHTTPStream(f *testing.F) {
	f.Add([]byte(getReq+postReq), []byte(chunkedResp+okResp), uint8(5))
	f.Add([]byte("GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n"), []byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching\r\n\r\nxx"), uint8(1))
	f.Add([]byte("HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, up, down []byte, mss uint8) {
		if mss == 0 || len(up) == 0 {
			return
		}
		b := conversation(t, int(mss), [2]string{string(up), string(down)})
		_, _ = pcap.Read(bytes.NewReader(b), "fuzz", pcap.Options{MaxBody: 128}, func(*flow.Flow) {})
	})
}

func BenchmarkReadHTTP(b *testing.B) {
	body := strings.Repeat("a", 20000)
	resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	var ex [][2]string
	for i := 0; i < 500; i++ {
		ex = append(ex, [2]string{postReq, resp})
	}
	data := conversation(b, 1448, ex...)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		_, err := pcap.Read(bytes.NewReader(data), "bench", pcap.Options{}, func(*flow.Flow) { n++ })
		if err != nil || n != 500 {
			b.Fatal(err, n)
		}
	}
}
