//go:build linux

package nstest

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// QUICInitials are the client's UDP payloads (to port 443) of a real
// Chromium QUIC handshake, the capture package's fixture
// quic-chromium.pcap: Initial packets whose ClientHello names
// quic.phonehome.test.
func QUICInitials(t testing.TB) [][]byte {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "capture", "testdata", "quic-chromium.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(b)
	r.Seek(24, io.SeekStart) // the file header; then a 16-byte header per record
	var out [][]byte
	hdr := make([]byte, 16)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			break
		}
		rec := make([]byte, binary.LittleEndian.Uint32(hdr[8:12]))
		if _, err := io.ReadFull(r, rec); err != nil {
			break
		}
		// Ethernet, IPv4, UDP
		if len(rec) < 42 || rec[12] != 0x08 || rec[13] != 0 || rec[23] != 17 {
			continue
		}
		udp := rec[14+int(rec[14]&0x0f)*4:]
		if binary.BigEndian.Uint16(udp[2:4]) == 443 {
			out = append(out, udp[8:])
		}
	}
	if len(out) == 0 {
		t.Fatal("no QUIC client packets in the fixture")
	}
	return out
}

// SendUDP sends each payload as a datagram from inside namespace ns to addr.
func SendUDP(t testing.TB, ns, addr string, payloads [][]byte) {
	t.Helper()
	Enter(t, ns, func() {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, p := range payloads {
			c.Write(p)
		}
	})
}
