package pcap

import (
	"fmt"
	"os"
	"testing"
)

// A live catcher sees QUIC one datagram at a time: Chromium's first Initial
// holds the whole ClientHello.
func TestInitialSNI(t *testing.T) {
	fh, err := os.Open("../testdata/quic-chromium.pcap")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	fr, err := newFileReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	var rec record
	var p packet
	var h QUICHellos
	if _, ok := h.Add("10.0.0.2:5000", []byte("not quic at all, not quic at all")); ok {
		t.Error("junk must not yield a name")
	}
	for n := 1; fr.next(&rec) == nil; n++ {
		if decode(rec.link, rec.data, &p) != decOK || p.dport != 443 {
			continue
		}
		src := fmt.Sprintf("%x:%d", p.src, p.sport)
		if sni, ok := h.Add(src, p.payload); ok {
			if sni != "quic.phonehome.test" {
				t.Fatalf("packet %d: %q", n, sni)
			}
			if len(h.states) != 0 {
				t.Error("a finished client is forgotten")
			}
			return
		}
	}
	t.Fatal("no server name from the fixture's Initials")
}
