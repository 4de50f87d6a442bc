package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"phonehome/internal/capture/pcap"
	"phonehome/internal/flow"
)

func readAll(t *testing.T, path string) ([]*flow.Flow, Result, error) {
	t.Helper()
	var flows []*flow.Flow
	res, err := ReadFile(path, Options{}, func(f *flow.Flow) { flows = append(flows, f) })
	return flows, res, err
}

func requests(flows []*flow.Flow) []string {
	var out []string
	for _, f := range flows {
		if f.Request != nil {
			status := 0
			if f.Response != nil {
				status = f.Response.Status
			}
			out = append(out, f.Request.Method+" "+f.Request.URL+" "+itoa(status))
		}
	}
	return out
}

func itoa(n int) string {
	b := []byte{}
	if n == 0 {
		return "0"
	}
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func byKind(flows []*flow.Flow, t flow.Transport) []*flow.Flow {
	var out []*flow.Flow
	for _, f := range flows {
		if f.Transport == t {
			out = append(out, f)
		}
	}
	return out
}

// httpSession is what make-fixtures.sh's traffic_http sends, in order.
var httpSession = []string{
	"GET http://127.0.0.1:18080/getSplashScreenAds?imei=356938035643809&sender=com.miui.systemAdSolution 200",
	"GET http://127.0.0.1:18080/big 200",
	"GET http://127.0.0.1:18080/chunked 200",
	"GET http://127.0.0.1:18080/not-modified 304",
	"POST http://127.0.0.1:18080/track/v1 204",
	"POST http://127.0.0.1:18080/upload 204",
	"HEAD http://127.0.0.1:18080/head 200",
	"GET http://pipeline.test/pipelined/1 200",
	"GET http://pipeline.test/pipelined/2 200",
	"HEAD http://pipeline.test/pipelined/3 200",
}

// checkHTTPSession checks bodies and framing of the traffic_http exchanges.
func checkHTTPSession(t *testing.T, flows []*flow.Flow) {
	t.Helper()
	const body = `{"ads":[{"id":1,"url":"http://ad.example/x"}],"imei":"356938035643809"}`
	server, _ := os.ReadFile("testdata/fixture_server.py")
	for _, f := range flows {
		if f.Request == nil || f.Response == nil {
			t.Errorf("flow %d: request and response expected: %+v", f.Seq, f)
			continue
		}
		if f.Transport != flow.TransportHTTP {
			t.Errorf("%s: transport %v", f.Request.URL, f.Transport)
		}
		rb := f.Response.Body
		switch path := f.Request.URL[strings.Index(f.Request.URL[8:], "/")+8:]; path {
		case "/big":
			if rb.Size != int64(len(body)*1500) || rb.Incomplete || string(rb.Data[:len(body)]) != body {
				t.Errorf("/big body: size %d incomplete %v", rb.Size, rb.Incomplete)
			}
		case "/chunked":
			if string(rb.Data) != strings.Repeat(body, 3) {
				t.Errorf("/chunked body not de-chunked: %q", rb.Data)
			}
		case "/track/v1":
			if string(f.Request.Body.Data) != "sender=com.miui.securitycenter&event=open" {
				t.Errorf("/track/v1 request body %q", f.Request.Body.Data)
			}
		case "/upload":
			if !bytes.Equal(f.Request.Body.Data, server) {
				t.Errorf("/upload chunked request body: %d bytes, want the %d bytes of the server script", len(f.Request.Body.Data), len(server))
			}
		case "/head", "/pipelined/3":
			if rb.Size != 0 {
				t.Errorf("%s: HEAD response must have no body, got %d bytes", path, rb.Size)
			}
		case "/not-modified":
			if rb.Size != 0 {
				t.Errorf("304 must have no body")
			}
		default:
			if string(rb.Data) != body {
				t.Errorf("%s: body %q", path, rb.Data)
			}
		}
		if len(f.Notes) > 0 {
			t.Errorf("%s: unexpected notes %v", f.Request.URL, f.Notes)
		}
	}
}

func TestHTTPOverEthernet(t *testing.T) {
	flows, res, err := readAll(t, "testdata/http-ethernet.pcap")
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != FormatPcap || res.Pcap.MissingBytes != 0 || res.Pcap.Malformed != 0 {
		t.Fatalf("result %+v stats %+v", res, res.Pcap)
	}
	if got := requests(flows); !slices.Equal(got, httpSession) {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(httpSession, "\n"))
	}
	checkHTTPSession(t, flows)
	for _, f := range flows {
		if f.Client.Addr.String() != "127.0.0.1" || f.Server.Port != 18080 || f.Host == "" {
			t.Errorf("endpoints: %v → %v host %q", f.Client, f.Server, f.Host)
		}
	}
}

// relink rewrites an Ethernet pcap with another link-layer header: the same
// real packets, as a raw-IP or BSD loopback capture would hold them.
func relink(t *testing.T, src string, link uint32, header func(etype uint16) []byte) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), data[:24]...)
	binary.LittleEndian.PutUint32(out[20:], link)
	for p := data[24:]; len(p) >= 16; {
		incl := int(binary.LittleEndian.Uint32(p[8:]))
		frame := p[16 : 16+incl]
		etype := binary.BigEndian.Uint16(frame[12:])
		payload := append(header(etype), frame[14:]...)
		h := append([]byte(nil), p[:16]...)
		binary.LittleEndian.PutUint32(h[8:], uint32(len(payload)))
		binary.LittleEndian.PutUint32(h[12:], binary.LittleEndian.Uint32(p[12:])-14+uint32(len(payload)-len(frame)+14))
		out = append(append(out, h...), payload...)
		p = p[16+incl:]
	}
	path := filepath.Join(t.TempDir(), "relinked.pcap")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLinkTypes(t *testing.T) {
	cases := []struct {
		name   string
		link   uint32
		header func(uint16) []byte
	}{
		{"raw IP", pcap.LinkRaw, func(uint16) []byte { return nil }},
		{"BSD loopback", pcap.LinkNull, func(e uint16) []byte {
			if e == 0x86dd {
				return []byte{30, 0, 0, 0}
			}
			return []byte{2, 0, 0, 0}
		}},
		{"Linux cooked v1", pcap.LinkSLL, func(e uint16) []byte {
			return []byte{0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, byte(e >> 8), byte(e)}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			flows, _, err := readAll(t, relink(t, "testdata/http-ethernet.pcap", c.link, c.header))
			if err != nil {
				t.Fatal(err)
			}
			if got := requests(flows); !slices.Equal(got, httpSession) {
				t.Fatalf("requests:\n%s", strings.Join(got, "\n"))
			}
			checkHTTPSession(t, flows)
		})
	}
}

// TestMixed reads the same traffic (HTTP over IPv6, TLS with SNI, DNS over UDP
// and TCP) as tcpdump -i any writes it (SLL2 and SLL) and as dumpcap writes it (pcapng).
func TestMixed(t *testing.T) {
	for _, file := range []string{"mixed-sll2.pcap", "mixed-sll.pcap", "mixed.pcapng"} {
		t.Run(file, func(t *testing.T) {
			flows, res, err := readAll(t, filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			if res.Pcap.MissingBytes != 0 {
				t.Errorf("missing bytes: %+v", res.Pcap)
			}
			reqs := requests(flows)
			if !slices.Contains(reqs, "GET http://[::1]:18080/v6?x=1 200") {
				t.Errorf("IPv6 request missing: %v", reqs)
			}
			tls := byKind(flows, flow.TransportTLS)
			var snis []string
			for _, f := range tls {
				snis = append(snis, f.TLS.SNI+" "+strings.Join(f.TLS.ALPN, ",")+" "+f.TLS.Version+" "+f.Host)
				if f.BytesUp < 500 || f.BytesDown < 1000 {
					t.Errorf("TLS bytes %d/%d", f.BytesUp, f.BytesDown)
				}
			}
			want := []string{"tracking.phonehome.test h2,http/1.1 TLS 1.3 tracking.phonehome.test", "phonehome.test http/1.1 TLS 1.3 phonehome.test"}
			if !slices.Equal(snis[:2], want) {
				t.Errorf("TLS: %q, want %q", snis, want)
			}
			var names []string
			for _, f := range byKind(flows, flow.TransportDNS) {
				names = append(names, f.DNS.Type+" "+f.DNS.Name+" "+strings.Join(f.DNS.Answers, ","))
			}
			wantDNS := []string{"A tracking.intl.miui.com 192.0.2.23", "A api.ad.intl.xiaomi.com 192.0.2.23",
				"AAAA tracking.intl.miui.com fd00::23", "A us.micardapi.micloud.xiaomi.net 192.0.2.23"}
			if !slices.Equal(names[:4], wantDNS) {
				t.Errorf("DNS: %q", names)
			}
		})
	}
}

func TestSnapLength(t *testing.T) {
	flows, res, err := readAll(t, "testdata/snaplen-300.pcap")
	if err != nil {
		t.Fatal(err)
	}
	if res.Pcap.MissingBytes == 0 || res.Pcap.SnapTruncated == 0 {
		t.Errorf("a 300-byte snap length must be reported: %+v", res.Pcap)
	}
	reqs := requests(flows)
	if len(reqs) != 2 || reqs[1] != "GET http://127.0.0.1:18080/getSplashScreenAds?after=snap 200" {
		t.Fatalf("requests after a cut body must still be found: %v", reqs)
	}
	if b := flows[0].Response.Body; !b.Incomplete || b.Size != int64(1500*71) {
		t.Errorf("cut body: incomplete=%v size=%d", b.Incomplete, b.Size)
	}
	if len(flows[0].Notes) == 0 || !strings.Contains(flows[0].Notes[0].Text, "bytes missing") {
		t.Errorf("notes: %v", flows[0].Notes)
	}
}

func TestTruncatedFile(t *testing.T) {
	flows, _, err := readAll(t, "testdata/truncated.pcap")
	var fe *pcap.FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("want a FormatError, got %v", err)
	}
	if !strings.Contains(err.Error(), "truncated.pcap") || !strings.Contains(err.Error(), "packet 12 at offset 1538") {
		t.Errorf("error must name the file, packet and offset: %v", err)
	}
	reqs := requests(flows)
	if len(reqs) != 2 || reqs[0] != httpSession[0] {
		t.Errorf("what was read before the cut must be reported: %v", reqs)
	}
}

func TestMitmproxy(t *testing.T) {
	flows, res, err := readAll(t, "testdata/mitmdump-8.1.1.flows")
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != FormatMitmproxy {
		t.Fatalf("format %v", res.Format)
	}
	want := []string{
		"GET http://127.0.0.1:18080/getSplashScreenAds?imei=356938035643809 200",
		"POST http://127.0.0.1:18080/track/v1 204",
		"GET https://localhost:18443/track/v1?sender=com.miui.securitycenter 200",
		"POST http://127.0.0.1:18080/upload 204",
	}
	if got := requests(flows); !slices.Equal(got, want) {
		t.Fatalf("requests:\n%s", strings.Join(got, "\n"))
	}
	if string(flows[1].Request.Body.Data) != "sender=com.miui.systemAdSolution&event=music_open" {
		t.Errorf("body %q", flows[1].Request.Body.Data)
	}
	https := flows[2]
	if https.Transport != flow.TransportHTTPS || https.TLS == nil || !https.TLS.Decrypted || https.Host != "localhost" {
		t.Errorf("https flow: %+v tls %+v", https, https.TLS)
	}
	if !flows[0].Client.Addr.IsValid() || flows[0].Start.IsZero() || flows[0].Response.Body.Size != 71 {
		t.Errorf("client %v start %v body %d", flows[0].Client, flows[0].Start, flows[0].Response.Body.Size)
	}
}

func TestDetect(t *testing.T) {
	_, err := Read(strings.NewReader("hello, this is text"), "notes.txt", Options{}, func(*flow.Flow) {})
	if !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), "notes.txt") || !strings.Contains(err.Error(), `"hello, this is t"`) {
		t.Errorf("unknown format error: %v", err)
	}
	_, err = Read(strings.NewReader(""), "empty.pcap", Options{}, func(*flow.Flow) {})
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
	// The name does not matter: a HAR called .pcap is read as HAR.
	har := `{"log":{"version":"1.2","entries":[{"startedDateTime":"2026-01-02T03:04:05.000Z","request":{"method":"GET","url":"http://a.example/x"},"response":{"status":200}}]}}`
	var n int
	res, err := Read(strings.NewReader(har), "really-a-har.pcap", Options{}, func(*flow.Flow) { n++ })
	if err != nil || res.Format != FormatHAR || n != 1 {
		t.Errorf("HAR by content: %v %v %d", res.Format, err, n)
	}
}

func TestProgress(t *testing.T) {
	var last int64
	_, err := ReadFile("testdata/http-ethernet.pcap", Options{Progress: func(n int64) { last = n }}, func(*flow.Flow) {})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat("testdata/http-ethernet.pcap")
	if last != fi.Size() {
		t.Errorf("progress ended at %d of %d bytes", last, fi.Size())
	}
}

// TestQUIC reads Chromium's HTTP/3 Initial packets: the ClientHello spans two
// packets whose CRYPTO frames Chromium shuffles.
func TestQUIC(t *testing.T) {
	flows, _, err := readAll(t, "testdata/quic-chromium.pcap")
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 1 {
		t.Fatalf("one QUIC conversation expected, got %d", len(flows))
	}
	f := flows[0]
	if f.Transport != flow.TransportQUIC || f.TLS.SNI != "quic.phonehome.test" || f.Host != "quic.phonehome.test" || !slices.Equal(f.TLS.ALPN, []string{"h3"}) {
		t.Errorf("QUIC flow: %v host %q tls %+v", f.Transport, f.Host, f.TLS)
	}
}

// TestTransientBodies checks that recycled body buffers hold the same bytes,
// at the time each flow is emitted, as freshly allocated ones.
func TestTransientBodies(t *testing.T) {
	for _, file := range []string{"testdata/http-ethernet.pcap", "testdata/mixed.pcapng"} {
		var want, got [][]byte
		if _, err := ReadFile(file, Options{}, func(f *flow.Flow) {
			if f.Response != nil {
				want = append(want, f.Response.Body.Data)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadFile(file, Options{Transient: true}, func(f *flow.Flow) {
			if f.Response != nil {
				got = append(got, bytes.Clone(f.Response.Body.Data))
			}
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d vs %d flows", file, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("%s: response %d differs with recycled buffers", file, i)
			}
		}
	}
}

func TestNanosecondPcap(t *testing.T) {
	micro, _, err := readAll(t, "testdata/http-ethernet.pcap")
	if err != nil {
		t.Fatal(err)
	}
	nano, _, err := readAll(t, "testdata/http-ethernet-nanosec.pcap")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(requests(nano), httpSession) {
		t.Fatalf("requests: %v", requests(nano))
	}
	for i := range micro {
		if !micro[i].Start.Equal(nano[i].Start) {
			t.Errorf("flow %d: %v vs %v", i, micro[i].Start, nano[i].Start)
		}
	}
}

// bigEndianPcapng rewrites a little-endian pcap as a big-endian pcapng with two
// interfaces (the packets on the second, with nanosecond resolution), as a
// capture made on a big-endian machine by dumpcap would be.
func bigEndianPcapng(t *testing.T, src string) []byte {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	block := func(typ uint32, body []byte) []byte {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		n := uint32(12 + len(body))
		b := be.AppendUint32(nil, typ)
		b = be.AppendUint32(b, n)
		b = append(b, body...)
		return be.AppendUint32(b, n)
	}
	shb := be.AppendUint32(nil, 0x1a2b3c4d)
	shb = be.AppendUint16(shb, 1)
	shb = be.AppendUint16(shb, 0)
	shb = be.AppendUint64(shb, ^uint64(0))
	out := block(0x0a0d0d0a, shb)
	idb0 := be.AppendUint16(nil, 101) // raw IP, unused
	idb0 = be.AppendUint16(idb0, 0)
	idb0 = be.AppendUint32(idb0, 65535)
	out = append(out, block(1, idb0)...)
	idb1 := be.AppendUint16(nil, 1)
	idb1 = be.AppendUint16(idb1, 0)
	idb1 = be.AppendUint32(idb1, 262144)
	idb1 = be.AppendUint16(idb1, 9) // if_tsresol
	idb1 = be.AppendUint16(idb1, 1)
	idb1 = append(idb1, 9, 0, 0, 0)
	idb1 = append(idb1, 0, 0, 0, 0) // opt_endofopt
	out = append(out, block(1, idb1)...)
	for p := data[24:]; len(p) >= 16; {
		le := binary.LittleEndian
		sec, usec, incl := le.Uint32(p), le.Uint32(p[4:]), le.Uint32(p[8:])
		ts := uint64(sec)*1e9 + uint64(usec)*1000
		epb := be.AppendUint32(nil, 1)
		epb = be.AppendUint32(epb, uint32(ts>>32))
		epb = be.AppendUint32(epb, uint32(ts))
		epb = be.AppendUint32(epb, incl)
		epb = be.AppendUint32(epb, le.Uint32(p[12:]))
		epb = append(epb, p[16:16+incl]...)
		out = append(out, block(6, epb)...)
		out = append(out, block(5, []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})...) // a statistics block to skip
		p = p[16+incl:]
	}
	return out
}

func TestBigEndianPcapng(t *testing.T) {
	b := bigEndianPcapng(t, "testdata/http-ethernet.pcap")
	var flows []*flow.Flow
	res, err := Read(bytes.NewReader(b), "be.pcapng", Options{}, func(f *flow.Flow) { flows = append(flows, f) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(requests(flows), httpSession) {
		t.Fatalf("requests: %v", requests(flows))
	}
	checkHTTPSession(t, flows)
	want, _, _ := readAll(t, "testdata/http-ethernet.pcap")
	if !flows[0].Start.Equal(want[0].Start) {
		t.Errorf("if_tsresol: %v vs %v", flows[0].Start, want[0].Start)
	}
	if res.Pcap.Packets == 0 {
		t.Error("no packets counted")
	}
	// Cut inside the last block: an error naming the block, the flows before it kept.
	_, err = Read(bytes.NewReader(b[:len(b)-30]), "cut.pcapng", Options{}, func(*flow.Flow) {})
	var fe *pcap.FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "truncated pcapng block") {
		t.Errorf("cut pcapng: %v", err)
	}
}

// pcapngBlocks lists the offset of every block of a pcapng file in one byte order.
func pcapngBlocks(t *testing.T, b []byte, order binary.ByteOrder) []int {
	t.Helper()
	var offs []int
	for off := 0; off+8 <= len(b); off += int(order.Uint32(b[off+4:])) {
		offs = append(offs, off)
	}
	return offs
}

// TestPacketNumbersAreWiresharkFrames cuts and corrupts committed captures
// where the frame number Wireshark shows is known: errors must name that
// frame, not the count of pcapng blocks (the section header, interface
// descriptions and statistics are not frames).
func TestPacketNumbersAreWiresharkFrames(t *testing.T) {
	mixed, err := os.ReadFile("testdata/mixed.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	// dumpcap wrote a section header (offset 0), an interface description
	// (164), 139 enhanced packet blocks from 284 and a statistics block at
	// the end (143580): the fourth packet is the sixth block, at 660.
	blocks := pcapngBlocks(t, mixed, binary.LittleEndian)
	if len(blocks) != 142 || blocks[5] != 660 || blocks[141] != 143580 {
		t.Fatalf("mixed.pcapng changed: %d blocks", len(blocks))
	}
	badTrailer := bytes.Clone(mixed)
	binary.LittleEndian.PutUint32(badTrailer[blocks[11]-4:], 1) // the end of the block at 1556, the ninth packet
	be := bigEndianPcapng(t, "testdata/http-ethernet.pcap")
	// section, two interfaces, then a packet and a statistics block in turn
	beBlocks := pcapngBlocks(t, be, binary.BigEndian)
	classic, err := os.ReadFile("testdata/http-ethernet.pcap")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"cut in the fourth packet", mixed[:760],
			"read cut: packet 4 at offset 660: truncated pcapng block: needs 200 bytes, file has 100"},
		{"cut in the interface description", mixed[:200],
			"read cut: at offset 164: truncated pcapng block: needs 120 bytes, file has 36"},
		{"cut in the statistics after the last packet", mixed[:blocks[141]+50],
			"read cut: at offset 143580, after packet 139: truncated pcapng block: needs 108 bytes, file has 50"},
		{"ninth packet's lengths differ", badTrailer,
			"read cut: packet 9 at offset 1556: pcapng block lengths at start and end differ (corrupt file?)"},
		{"big-endian, cut in the third packet", be[:beBlocks[7]+20],
			fmt.Sprintf("read cut: packet 3 at offset %d: truncated pcapng block: needs %d bytes, file has 20", beBlocks[7], beBlocks[8]-beBlocks[7])},
		{"big-endian, cut in a packet block's header", be[:beBlocks[9]+6],
			fmt.Sprintf("read cut: at offset %d, after packet 3: truncated pcapng block header: needs 8 bytes, file has 6", beBlocks[9])},
		{"classic pcap, cut in the header of the twelfth packet", classic[:1538+10],
			"read cut: packet 12 at offset 1538: truncated packet header: needs 16 bytes, file has 10"},
		{"classic pcap, cut file header", classic[:20],
			"read cut: at offset 0: truncated pcap file header"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(c.data), "cut", Options{}, func(*flow.Flow) {})
			var fe *pcap.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("want a FormatError, got %v", err)
			}
			if err.Error() != c.want {
				t.Errorf("got  %s\nwant %s", err, c.want)
			}
		})
	}
}

// TestReadErrorsNameTheCause: a directory, a missing file and a stream that
// fails are not called empty or of an unknown format.
func TestReadErrorsNameTheCause(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pcap")
	os.WriteFile(empty, nil, 0o644)
	failing := errors.New("input/output error")
	for _, c := range []struct {
		name string
		read func() error
		want string
		is   error
	}{
		{"directory", func() error { _, err := ReadFile(dir, Options{}, func(*flow.Flow) {}); return err },
			"read " + dir + ": it is a directory, not a capture file", ErrDirectory},
		{"missing", func() error {
			_, err := ReadFile(filepath.Join(dir, "missing.pcap"), Options{}, func(*flow.Flow) {})
			return err
		}, "read " + filepath.Join(dir, "missing.pcap") + ": no such file or directory", fs.ErrNotExist},
		{"failing stream", func() error {
			_, err := Read(iotest.ErrReader(failing), "disk", Options{}, func(*flow.Flow) {})
			return err
		},
			"read disk: input/output error", failing},
		{"empty", func() error { _, err := ReadFile(empty, Options{}, func(*flow.Flow) {}); return err },
			"read " + empty + ": unknown capture format: not pcap, pcapng, HAR or a mitmproxy flow file (it starts with nothing: the file is empty)", ErrUnknownFormat},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.read()
			var ce *Error
			if !errors.As(err, &ce) || !errors.Is(err, c.is) || err.Error() != c.want {
				t.Errorf("got  %v\nwant %s (wrapping %v)", err, c.want, c.is)
			}
		})
	}
}
