// Package flow holds phonehome's domain model: one observed conversation between a
// device and a server (a Flow), its HTTP request and response, DNS and TLS metadata,
// and the findings later stages attach. It does no I/O; every other package speaks
// in these types.
//
// Contract: a capture source creates a Flow and hands it on; from then on the
// observed parts (Request, Response, DNS, TLS, bytes) are read-only. Later stages
// only append to Findings and Notes or set Verdict. Anything that changes what is
// forwarded (redaction) works on a copy, never on the observed request.
package flow

import (
	"net/netip"
	"strings"
	"time"
)

// Transport says how a flow travelled and how much of it phonehome could read.
type Transport uint8

const (
	// TransportUnknown is the safe zero value: nothing was recognised.
	TransportUnknown Transport = iota
	// TransportHTTP is cleartext HTTP: everything was readable on the wire.
	TransportHTTP
	// TransportHTTPS is HTTP inside TLS that was decrypted (intercepted by a
	// proxy or exported decrypted by a browser or mitmproxy).
	TransportHTTPS
	// TransportTLS is TLS that was not decrypted: only SNI, ALPN and sizes are known.
	TransportTLS
	// TransportDNS is a DNS query and its answer.
	TransportDNS
	// TransportQUIC is QUIC (HTTP/3); only the Initial packet's SNI is readable.
	TransportQUIC
	// TransportTCP is a TCP connection carrying a protocol phonehome does not parse.
	TransportTCP
	// TransportLAN is what a device announced to the local network (mDNS,
	// LLMNR, NetBIOS name service, SSDP): every device on it reads it.
	TransportLAN
)

var transportNames = [...]string{"unknown", "http", "https", "tls", "dns", "quic", "tcp", "lan"}

func (t Transport) String() string {
	if int(t) < len(transportNames) {
		return transportNames[t]
	}
	return "unknown"
}

// Cleartext reports whether a person on the path could read the payload.
func (t Transport) Cleartext() bool {
	return t == TransportHTTP || t == TransportDNS || t == TransportLAN
}

// ParseTransport is the inverse of String; unknown names give TransportUnknown.
func ParseTransport(s string) Transport {
	for i, n := range transportNames {
		if n == s {
			return Transport(i)
		}
	}
	return TransportUnknown
}

// Endpoint is one side of a conversation. A zero Addr means it was not observed
// (a HAR file names hosts, not always addresses).
type Endpoint struct {
	Addr netip.Addr
	Port uint16
}

func (e Endpoint) String() string {
	if !e.Addr.IsValid() {
		return ""
	}
	if e.Port == 0 {
		return e.Addr.String()
	}
	return netip.AddrPortFrom(e.Addr, e.Port).String()
}

// Header is one header line, kept in the order and spelling it was sent.
type Header struct {
	Name  string
	Value string
}

// Headers keeps duplicates and order, because trackers sometimes repeat a header.
type Headers []Header

// Get returns the first value of the named header, case-insensitively.
func (h Headers) Get(name string) string {
	for _, x := range h {
		if strings.EqualFold(x.Name, name) {
			return x.Value
		}
	}
	return ""
}

// Body is a payload as it was on the wire, content codings still applied.
// Data holds at most the configured capture limit; Size is the full length seen.
type Body struct {
	Data       []byte
	Size       int64
	Truncated  bool // Data is shorter than Size because of the capture limit
	Incomplete bool // bytes were missing from the capture (a gap or an early end)
}

// Request is an HTTP request as observed.
type Request struct {
	Method   string
	URL      string // absolute, as sent: scheme://host[:port]/path?query
	Proto    string // "HTTP/1.1", "HTTP/2.0", ...
	Headers  Headers
	Body     Body
	Trailers Headers
}

// Response is an HTTP response as observed.
type Response struct {
	Status   int
	Reason   string
	Proto    string
	Headers  Headers
	Body     Body
	Trailers Headers
}

// TLSInfo is what the handshake revealed.
type TLSInfo struct {
	SNI       string   `json:"sni,omitempty"`
	ALPN      []string `json:"alpn,omitempty"`    // offered by the client, or chosen by the server when seen
	Version   string   `json:"version,omitempty"` // negotiated, when the server's hello was seen
	Decrypted bool     `json:"decrypted"`
}

// DNS is one query and, when seen, its answer.
type DNS struct {
	ID       uint16   `json:"id"`
	Name     string   `json:"name"`
	Type     string   `json:"type"`            // "A", "AAAA", "HTTPS", ...
	RCode    string   `json:"rcode,omitempty"` // "" until an answer is seen
	Answers  []string `json:"answers,omitempty"`
	Answered bool     `json:"answered"`
}

// Flow is one conversation: an HTTP exchange, a DNS lookup, or a connection
// whose content could not be read.
type Flow struct {
	ID     int64  // assigned by the store; 0 until stored
	Source string // the capture file or live source it came from
	Seq    int    // order of completion within its source
	Start  time.Time
	End    time.Time
	Client Endpoint
	Server Endpoint
	// Device names the device that sent the flow when the capture source
	// knows it (a WireGuard peer's name, a spoof target's); "" means the
	// device is known only by Client's address.
	Device    string
	Host      string // server name: Host header, SNI, or a DNS answer for Server.Addr
	Transport Transport
	TLS       *TLSInfo
	Request   *Request
	Response  *Response
	DNS       *DNS
	BytesUp   int64 // client to server, application bytes
	BytesDown int64 // server to client, application bytes
	Notes     Notes // what was wrong, missing or decided about this flow

	Findings []Finding   // appended by detection
	Dest     Destination // who receives it, set by detection
	App      string      // the app that sent it (package or bundle ID), when known
	Verdict  Verdict     // set by policy
	// Inspected is set once detection has run on the flow, so that it runs
	// once whether a verdict needed it before forwarding or not.
	Inspected bool
}

// DeviceName is the name the device is reported under: its Device name when
// the capture source gave one, else its address.
func (f *Flow) DeviceName() string {
	if f.Device != "" {
		return f.Device
	}
	if f.Client.Addr.IsValid() {
		return f.Client.Addr.Unmap().String()
	}
	return ""
}

// BulkType reports whether a content type is bulk: media and binary payloads
// (pictures, video, audio, fonts, archives, app packages) that carry no
// fields to analyse and are kept only as a prefix.
func BulkType(contentType string) bool {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	for _, p := range []string{"image/", "video/", "audio/", "font/"} {
		if strings.HasPrefix(ct, p) {
			return true
		}
	}
	switch ct {
	case "application/octet-stream", "application/zip", "application/gzip", "application/x-gzip",
		"application/vnd.android.package-archive", "application/x-tar", "application/pdf",
		"application/vnd.apple.mpegurl", "application/dash+xml", "binary/octet-stream",
		"application/x-protobuf-stream", "application/wasm", "application/x-7z-compressed", "application/x-rar-compressed":
		return true
	}
	return false
}

// HostOrAddr is the best name for the server: the host name, or its address.
func (f *Flow) HostOrAddr() string {
	if f.Host != "" {
		return f.Host
	}
	return f.Server.Addr.String()
}

// Hello is what a TLS ClientHello told before anything was decided: the
// name the client asked for and the protocols it offered.
type Hello struct {
	Time   time.Time
	Client Endpoint
	Device string   // the device's name when the source knows it (see Flow.Device)
	Server Endpoint // the original destination when known (transparent capture), else zero
	SNI    string   // the server name asked for; "" when the hello named none
	ALPN   []string // protocols offered, in the client's order
	// Source is the capture source ("proxy", "transparent", "wireguard").
	Source string
}

// URLPath is the path of a request URL, absolute ("https://h/p?q") or
// origin-form ("/p?q"), without its query or fragment; "/" for an absolute
// URL with no path.
func URLPath(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
		j := strings.IndexByte(u, '/')
		if j < 0 {
			return "/"
		}
		u = u[j:]
	}
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	return u
}

// ValidDeviceName reports whether s can name a device (a WireGuard peer, a
// spoof target) in rules and reports: letters, digits, '.', '_' and '-', at
// most 64, starting with a letter so that no name reads as an address.
func ValidDeviceName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}
