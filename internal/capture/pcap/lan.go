package pcap

import (
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"phonehome/internal/flow"
)

// What a device announces about itself on the local network, to every other
// device on it: its name (often its owner's: "Arjun's iPhone"), its model,
// the services it offers. mDNS (5353) and LLMNR (5355) answers name the
// answering host; NetBIOS name service (137) registrations name the
// registering one; SSDP (1900) NOTIFY messages and search answers describe a
// UPnP device. Each announcement becomes a flow from the device, with what it
// said as the request's header fields (Mdns-Instance, Mdns-Hostname, TXT
// keys, Netbios-Name, SSDP's own headers), so that detection finds the
// names in it as in any request.

// Ports of the LAN announcement protocols.
const (
	portMDNS  = 5353
	portLLMNR = 5355
	portNBNS  = 137
	portSSDP  = 1900
)

// lanTracker drops repeats: devices announce the same names every few
// seconds, and one flow per device and message says it.
type lanTracker struct {
	seen map[string]bool
}

const maxLANSeen = 1 << 14

func lanPort(p *packet) bool {
	for _, port := range []uint16{portMDNS, portLLMNR, portNBNS, portSSDP} {
		if p.sport == port || p.dport == port {
			return true
		}
	}
	return false
}

func (a *Assembler) lan(p *packet, ts time.Time) {
	var proto string
	var fields flow.Headers
	switch {
	case p.sport == portMDNS || p.dport == portMDNS:
		proto, fields = "mDNS", dnsNames(p.payload, "Mdns")
	case p.sport == portLLMNR || p.dport == portLLMNR:
		proto, fields = "LLMNR", dnsNames(p.payload, "Llmnr")
	case p.sport == portNBNS || p.dport == portNBNS:
		proto, fields = "NetBIOS", nbnsNames(p.payload)
	default:
		proto, fields = "SSDP", ssdpFields(p.payload)
	}
	if len(fields) == 0 {
		a.stats.OtherUDP++
		return
	}
	src, dst := addrOf(p.src), addrOf(p.dst)
	var key strings.Builder
	key.WriteString(proto + " " + src.String())
	for _, h := range fields {
		key.WriteString("\x00" + h.Name + "=" + h.Value)
	}
	t := &a.lanSeen
	if t.seen == nil || len(t.seen) >= maxLANSeen {
		t.seen = map[string]bool{}
	}
	if t.seen[key.String()] {
		return
	}
	t.seen[key.String()] = true
	scheme := strings.ToLower(proto)
	f := &flow.Flow{
		Start: ts, End: ts,
		Client:    flow.Endpoint{Addr: src, Port: p.sport},
		Server:    flow.Endpoint{Addr: dst, Port: p.dport},
		Host:      proto,
		Transport: flow.TransportLAN,
		BytesUp:   int64(len(p.payload)),
		Request: &flow.Request{Method: "ANNOUNCE", URL: scheme + "://" + hostPort(dst, p.dport) + "/", Proto: proto,
			Headers: fields},
	}
	a.emit(f)
}

func hostPort(a netip.Addr, port uint16) string { return netip.AddrPortFrom(a, port).String() }

// dnsNames reads an mDNS or LLMNR answer for the names the answering host
// gives itself: a service instance ("Arjun's iPhone" of
// "Arjun's iPhone._companion-link._tcp.local"), the host name of its
// addresses and services, and the key=value pairs of its TXT records
// (model, device ID). Questions are left out: they name what another device
// looks for.
func dnsNames(msg []byte, prefix string) flow.Headers {
	var pr dnsmessage.Parser
	h, err := pr.Start(msg)
	if err != nil || !h.Response {
		return nil
	}
	if pr.SkipAllQuestions() != nil {
		return nil
	}
	var out flow.Headers
	seen := map[string]bool{}
	add := func(name, value string) {
		value = strings.TrimSpace(value)
		if value == "" || len(value) > 255 || seen[name+"\x00"+value] || len(out) >= 64 {
			return
		}
		seen[name+"\x00"+value] = true
		out = append(out, flow.Header{Name: name, Value: value})
	}
	host := func(n dnsmessage.Name) {
		s := strings.TrimSuffix(n.String(), ".")
		if h, ok := strings.CutSuffix(s, ".local"); ok && !strings.Contains(h, "._") && !strings.HasSuffix(h, ".arpa") {
			add(prefix+"-Hostname", h)
		} else if prefix == "Llmnr" && !strings.HasSuffix(s, ".arpa") {
			add(prefix+"-Hostname", s)
		}
	}
	instance := func(n dnsmessage.Name) {
		s := strings.TrimSuffix(n.String(), ".")
		if i := strings.Index(s, "._"); i > 0 {
			add(prefix+"-Instance", unescapeDNS(s[:i]))
			add(prefix+"-Service", strings.TrimSuffix(s[i+1:], ".local"))
		}
	}
	for _, section := range []func() (dnsmessage.ResourceHeader, error){pr.AnswerHeader, pr.AuthorityHeader, pr.AdditionalHeader} {
		for {
			rh, err := section()
			if err != nil {
				break
			}
			switch rh.Type {
			case dnsmessage.TypeA, dnsmessage.TypeAAAA:
				host(rh.Name)
				err = pr.SkipAnswer()
			case dnsmessage.TypePTR:
				r, e := pr.PTRResource()
				err = e
				if e == nil && !strings.HasSuffix(rh.Name.String(), ".arpa.") {
					instance(r.PTR)
				} else if e == nil {
					host(r.PTR) // a reverse lookup's answer names the host
				}
			case dnsmessage.TypeSRV:
				r, e := pr.SRVResource()
				err = e
				if e == nil {
					instance(rh.Name)
					host(r.Target)
				}
			case dnsmessage.TypeTXT:
				r, e := pr.TXTResource()
				err = e
				if e == nil {
					instance(rh.Name)
					for _, kv := range r.TXT {
						if k, v, ok := strings.Cut(kv, "="); ok && k != "" && len(k) <= 32 && headerToken(k) {
							add(prefix+"-Txt-"+k, v)
						}
					}
				}
			default:
				err = pr.SkipAnswer()
			}
			if err != nil {
				return out
			}
		}
	}
	return out
}

// unescapeDNS undoes the escaping of a label's dots and spaces ("Arjun\'s\ iPhone").
func unescapeDNS(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			b.WriteByte(byte((s[i+1]-'0')*100 + (s[i+2]-'0')*10 + (s[i+3] - '0')))
			i += 3
			continue
		}
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// headerToken reports whether k can be a header name.
func headerToken(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// nbnsNames reads a NetBIOS name service registration, refresh or answer
// for the name it registers: the computer's name (and its workgroup).
// Queries are left out: they name what another device looks for.
func nbnsNames(msg []byte) flow.Headers {
	if len(msg) < 12+34 {
		return nil
	}
	opcode := msg[2] >> 3 & 0x0f
	response := msg[2]&0x80 != 0
	// 5 registration, 8 refresh, 9 multi-homed registration; answers to queries
	if !(opcode == 5 || opcode == 8 || opcode == 9 || opcode == 0 && response) {
		return nil
	}
	off := 12
	if msg[off] != 32 {
		return nil
	}
	enc := msg[off+1 : off+33]
	var name [16]byte
	for i := 0; i < 16; i++ {
		hi, lo := enc[2*i]-'A', enc[2*i+1]-'A'
		if hi > 15 || lo > 15 {
			return nil
		}
		name[i] = hi<<4 | lo
	}
	suffix := name[15]
	n := strings.TrimRight(string(name[:15]), " \x00")
	if n == "" || n == "*" || !printable(n) {
		return nil
	}
	field := "Netbios-Name"
	switch suffix {
	case 0x00, 0x20: // workstation, file server: the computer's own name
	case 0x1b, 0x1c, 0x1d, 0x1e:
		field = "Netbios-Group" // a domain or workgroup
	default:
		return nil
	}
	return flow.Headers{{Name: field, Value: n}}
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// ssdpFields reads an SSDP NOTIFY, or an answer to an M-SEARCH, for the
// device's description: its server string (OS and version), its unique
// service name, where its description lives, and any friendly name it sends
// along. Searches are left out: they are questions.
func ssdpFields(msg []byte) flow.Headers {
	s := string(msg)
	line, rest, _ := strings.Cut(s, "\r\n")
	if !strings.HasPrefix(line, "NOTIFY ") && !strings.HasPrefix(line, "HTTP/1.") {
		return nil
	}
	var out flow.Headers
	for _, l := range strings.Split(rest, "\r\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		switch strings.ToUpper(k) {
		case "SERVER", "USN", "LOCATION", "NT", "ST", "X-FRIENDLY-NAME", "FRIENDLYNAME", "X-USER-AGENT", "USER-AGENT":
			if v = strings.TrimSpace(v); v != "" && len(out) < 32 {
				out = append(out, flow.Header{Name: "Ssdp-" + k, Value: v})
			}
		}
	}
	return out
}
