package pcap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"phonehome/internal/flow"
)

// lanDatagram frames payload as an IPv4/UDP packet from src:port to the
// group dst (link type raw IP).
func lanDatagram(src, dst [4]byte, port uint16, payload []byte) []byte {
	b := make([]byte, 28, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 1, 17
	binary.BigEndian.PutUint16(b[2:], uint16(28+len(payload)))
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	binary.BigEndian.PutUint16(b[20:], port)
	binary.BigEndian.PutUint16(b[22:], port)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	return append(b, payload...)
}

// mdnsAnnouncement is what an iPhone multicasts when it joins a network:
// its companion-link service, with its name, host name and TXT record, as
// the DNS wire format's own builder writes it.
func mdnsAnnouncement(t testing.TB) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true, Authoritative: true})
	b.EnableCompression()
	if err := b.StartAnswers(); err != nil {
		t.Fatal(err)
	}
	svc := dnsmessage.MustNewName("_companion-link._tcp.local.")
	inst := dnsmessage.MustNewName("Maria's iPhone._companion-link._tcp.local.")
	host := dnsmessage.MustNewName("Marias-iPhone.local.")
	hdr := func(n dnsmessage.Name, typ dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: n, Type: typ, Class: dnsmessage.ClassINET, TTL: 4500}
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.PTRResource(hdr(svc, dnsmessage.TypePTR), dnsmessage.PTRResource{PTR: inst}))
	must(b.SRVResource(hdr(inst, dnsmessage.TypeSRV), dnsmessage.SRVResource{Port: 49152, Target: host}))
	must(b.TXTResource(hdr(inst, dnsmessage.TypeTXT), dnsmessage.TXTResource{TXT: []string{"rpMac=0", "rpHN=8a7f4c21d3e0", "model=iPhone14,2", "deviceid=a4:83:e7:12:34:56"}}))
	must(b.AResource(hdr(host, dnsmessage.TypeA), dnsmessage.AResource{A: [4]byte{192, 168, 1, 23}}))
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// nbnsRegistration is a Windows PC registering its name (RFC 1002 4.2.2).
func nbnsRegistration(name string, suffix byte) []byte {
	msg := []byte{0x12, 0x34, 0x29, 0x10, 0, 1, 0, 0, 0, 0, 0, 1, 32}
	var raw [16]byte
	copy(raw[:], strings.ToUpper(name)+strings.Repeat(" ", 15-len(name)))
	raw[15] = suffix
	for _, c := range raw {
		msg = append(msg, 'A'+c>>4, 'A'+c&0x0f)
	}
	return append(msg, 0, 0, 0x20, 0, 1)
}

const ssdpNotify = "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n" +
	"LOCATION: http://192.168.1.40:8008/ssdp/device-desc.xml\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n" +
	"SERVER: Linux/3.8.13+, UPnP/1.0, Portable SDK for UPnP devices/1.6.18\r\n" +
	"USN: uuid:7c0e2a51-3f8b-4d2e-9a61-5b2f0c9d8e17::upnp:rootdevice\r\n\r\n"

func readLAN(t *testing.T, packets ...[]byte) []*flow.Flow {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, LinkRaw)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 3, 14, 9, 12, 0, 0, time.UTC)
	for i, p := range packets {
		if err := w.WritePacket(ts.Add(time.Duration(i)*time.Second), p); err != nil {
			t.Fatal(err)
		}
	}
	var flows []*flow.Flow
	if _, err := Read(&buf, "lan.pcap", Options{}, func(f *flow.Flow) { flows = append(flows, f) }); err != nil {
		t.Fatal(err)
	}
	return flows
}

func TestLANAnnouncements(t *testing.T) {
	phone, pc, tv := [4]byte{192, 168, 1, 23}, [4]byte{192, 168, 1, 31}, [4]byte{192, 168, 1, 40}
	mdns := mdnsAnnouncement(t)
	flows := readLAN(t,
		lanDatagram(phone, [4]byte{224, 0, 0, 251}, portMDNS, mdns),
		lanDatagram(phone, [4]byte{224, 0, 0, 251}, portMDNS, mdns), // announced again: one flow says it
		lanDatagram(pc, [4]byte{192, 168, 1, 255}, portNBNS, nbnsRegistration("ANNA-LAPTOP", 0x00)),
		lanDatagram(tv, [4]byte{239, 255, 255, 250}, portSSDP, []byte(ssdpNotify)),
		lanDatagram(pc, [4]byte{239, 255, 255, 250}, portSSDP, []byte("M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n")), // a question
	)
	var got []string
	for _, f := range flows {
		if f.Transport != flow.TransportLAN || f.Request == nil {
			t.Errorf("not a LAN flow: %+v", f)
			continue
		}
		for _, h := range f.Request.Headers {
			got = append(got, fmt.Sprintf("%s %s %s=%s", f.Host, f.Client.Addr, h.Name, h.Value))
		}
	}
	want := []string{
		"mDNS 192.168.1.23 Mdns-Instance=Maria's iPhone",
		"mDNS 192.168.1.23 Mdns-Service=_companion-link._tcp",
		"mDNS 192.168.1.23 Mdns-Hostname=Marias-iPhone",
		"mDNS 192.168.1.23 Mdns-Txt-model=iPhone14,2",
		"mDNS 192.168.1.23 Mdns-Txt-deviceid=a4:83:e7:12:34:56",
		"NetBIOS 192.168.1.31 Netbios-Name=ANNA-LAPTOP",
		"SSDP 192.168.1.40 Ssdp-SERVER=Linux/3.8.13+, UPnP/1.0, Portable SDK for UPnP devices/1.6.18",
		"SSDP 192.168.1.40 Ssdp-USN=uuid:7c0e2a51-3f8b-4d2e-9a61-5b2f0c9d8e17::upnp:rootdevice",
	}
	joined := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("missing %q in:\n%s", w, joined)
		}
	}
	if n := len(flows); n != 3 {
		t.Errorf("%d flows, want 3 (a repeat and a search are no announcements)", n)
	}
}

func FuzzLAN(f *testing.F) {
	f.Add(mdnsAnnouncement(f))
	f.Add(nbnsRegistration("DESKTOP-1", 0x20))
	f.Add([]byte(ssdpNotify))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = dnsNames(b, "Mdns")
		_ = dnsNames(b, "Llmnr")
		_ = nbnsNames(b)
		_ = ssdpFields(b)
	})
}
