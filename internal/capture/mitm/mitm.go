// Package mitm reads mitmproxy flow files (mitmdump -w), the tnetstring format
// written by mitmproxy 4 and later (flow state versions 7 and up, including
// Debian's mitmdump 8.1.1 and mitmproxy 11).
package mitm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"phonehome/internal/flow"
)

// Options bound what the reader keeps.
type Options struct {
	MaxBody int // bytes of each body kept (default 1 MiB)
}

// Sniff reports whether head starts a mitmproxy flow file: a tnetstring
// dictionary whose first key is itself a tnetstring.
func Sniff(head []byte) bool {
	i := 0
	for i < len(head) && i < 12 && head[i] >= '0' && head[i] <= '9' {
		i++
	}
	if i == 0 || i+2 >= len(head) || head[i] != ':' {
		return false
	}
	j := i + 1
	k := j
	for k < len(head) && k-j < 12 && head[k] >= '0' && head[k] <= '9' {
		k++
	}
	return k > j && k < len(head) && head[k] == ':'
}

// Error locates a problem in a flow file.
type Error struct {
	Flow   int   // 1-based number of the flow being read
	Offset int64 // byte offset where it began
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("mitmproxy flow %d at offset %d: %v", e.Flow, e.Offset, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

const maxFlowBytes = 1 << 30

// Read emits one flow per HTTP flow in the file; other flow types (TCP, UDP,
// DNS) become flows with what they carry in common: endpoints and bytes.
func Read(r io.Reader, name string, opts Options, emit func(*flow.Flow)) error {
	if opts.MaxBody <= 0 {
		opts.MaxBody = 1 << 20
	}
	br := bufio.NewReaderSize(r, 256<<10)
	var off int64
	for n := 1; ; n++ {
		lenBytes, err := br.ReadSlice(':')
		if err == io.EOF && len(lenBytes) == 0 {
			return nil
		}
		if err != nil {
			return &Error{n, off, errTruncated}
		}
		l, perr := strconv.Atoi(string(lenBytes[:len(lenBytes)-1]))
		if perr != nil || l < 0 || l > maxFlowBytes {
			return &Error{n, off, fmt.Errorf("bad length prefix %q: not a mitmproxy flow file, or corrupt", lenBytes)}
		}
		prefix := append([]byte(nil), lenBytes...)
		// ReadAll grows with what arrives: a corrupt length cannot force a huge allocation.
		rest, err := io.ReadAll(io.LimitReader(br, int64(l)+1))
		if err != nil || len(rest) < l+1 {
			return &Error{n, off, errTruncated}
		}
		buf := append(prefix, rest...)
		v, _, err := parseValue(buf, 0)
		if err != nil {
			return &Error{n, off, err}
		}
		state, ok := v.(map[string]any)
		if !ok {
			return &Error{n, off, fmt.Errorf("top-level value is %T, not a flow", v)}
		}
		f, err := toFlow(state, opts.MaxBody)
		if err != nil {
			return &Error{n, off, err}
		}
		off += int64(len(buf))
		if f == nil {
			continue
		}
		f.Source, f.Seq = name, n
		emit(f)
	}
}

// state accessors: mitmproxy wrote bytes or text for the same field in different versions.

func str(m map[string]any, k string) string {
	switch v := m[k].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

func num(m map[string]any, k string) float64 {
	switch v := m[k].(type) {
	case int64:
		return float64(v)
	case float64:
		return v
	}
	return 0
}

func dict(m map[string]any, k string) map[string]any {
	d, _ := m[k].(map[string]any)
	return d
}

func stamp(sec float64) time.Time {
	if sec <= 0 {
		return time.Time{}
	}
	whole, frac := math.Modf(sec)
	return time.Unix(int64(whole), int64(frac*1e9)).UTC()
}

// endpoint reads an address given as [host, port] (or [host, port, flow, scope] for IPv6).
func endpoint(v any) (host string, ep flow.Endpoint) {
	list, ok := v.([]any)
	if !ok || len(list) < 2 {
		return "", ep
	}
	switch h := list[0].(type) {
	case string:
		host = h
	case []byte:
		host = string(h)
	}
	if p, ok := list[1].(int64); ok && p > 0 && p < 65536 {
		ep.Port = uint16(p)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ep.Addr = ip.Unmap()
	}
	return host, ep
}

func headerList(v any) flow.Headers {
	list, _ := v.([]any)
	h := make(flow.Headers, 0, len(list))
	for _, x := range list {
		pair, ok := x.([]any)
		if !ok || len(pair) != 2 {
			continue
		}
		var name, value string
		switch n := pair[0].(type) {
		case []byte:
			name = string(n)
		case string:
			name = n
		}
		switch v := pair[1].(type) {
		case []byte:
			value = string(v)
		case string:
			value = v
		}
		h = append(h, flow.Header{Name: name, Value: value})
	}
	return h
}

func content(m map[string]any, max int) flow.Body {
	var data []byte
	switch v := m["content"].(type) {
	case []byte:
		data = v
	case string:
		data = []byte(v)
	}
	b := flow.Body{Data: data, Size: int64(len(data))}
	if len(data) > max {
		b.Data, b.Truncated = data[:max], true
	}
	return b
}

func toFlow(s map[string]any, maxBody int) (*flow.Flow, error) {
	ver, ok := s["version"].(int64)
	if !ok {
		return nil, errors.New("flow has no version: not a mitmproxy flow")
	}
	if ver < 7 {
		return nil, fmt.Errorf("flow format version %d is older than phonehome reads (7 and later); re-save it with mitmproxy 4 or newer", ver)
	}
	f := &flow.Flow{}
	cc, sc := dict(s, "client_conn"), dict(s, "server_conn")
	if cc != nil {
		addr := cc["peername"]
		if addr == nil {
			addr = cc["address"]
		}
		_, f.Client = endpoint(addr)
		if ts := num(cc, "timestamp_start"); ts > 0 {
			f.Start = stamp(ts)
		}
	}
	serverHost := ""
	if sc != nil {
		serverHost, f.Server = endpoint(sc["address"])
		ip := sc["peername"]
		if ip == nil {
			ip = sc["ip_address"]
		}
		if _, e := endpoint(ip); e.Addr.IsValid() {
			f.Server.Addr = e.Addr
		}
		if sni := str(sc, "sni"); sni != "" {
			f.TLS = &flow.TLSInfo{SNI: sni}
		}
		if alpn := str(sc, "alpn"); alpn != "" {
			if f.TLS == nil {
				f.TLS = &flow.TLSInfo{}
			}
			f.TLS.ALPN = []string{alpn}
		}
	}
	if e := dict(s, "error"); e != nil {
		f.Note(flow.NoteSource, "mitmproxy error: "+str(e, "msg"))
	}
	typ := str(s, "type")
	if typ != "http" {
		f.Transport = flow.TransportTCP
		f.Host = serverHost
		for _, m := range listOf(s["messages"]) {
			if len(m) >= 2 {
				n := int64(0)
				switch d := m[1].(type) {
				case []byte:
					n = int64(len(d))
				case string:
					n = int64(len(d))
				}
				if b, _ := m[0].(bool); b {
					f.BytesUp += n
				} else {
					f.BytesDown += n
				}
			}
		}
		f.Note(flow.NoteSource, "mitmproxy "+typ+" flow")
		return f, nil
	}
	rq := dict(s, "request")
	if rq == nil {
		return nil, errors.New("HTTP flow without a request")
	}
	scheme := str(rq, "scheme")
	host := str(rq, "host")
	if a := str(rq, "authority"); a != "" && host == "" {
		host = a
	}
	port := int(num(rq, "port"))
	req := &flow.Request{
		Method:   str(rq, "method"),
		Proto:    str(rq, "http_version"),
		Headers:  headerList(rq["headers"]),
		Body:     content(rq, maxBody),
		Trailers: headerList(rq["trailers"]),
	}
	hostHeader := req.Headers.Get("Host")
	if hostHeader == "" {
		hostHeader = str(rq, "authority")
	}
	if hostHeader == "" {
		hostHeader = host
		if (scheme == "https" && port != 443) || (scheme == "http" && port != 80) {
			hostHeader = host + ":" + strconv.Itoa(port)
		}
	}
	path := str(rq, "path")
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		req.URL = path
	} else {
		req.URL = scheme + "://" + hostHeader + path
	}
	f.Request = req
	f.Host = host
	if h, _, ok := strings.Cut(hostHeader, ":"); ok && !strings.HasPrefix(hostHeader, "[") {
		if _, err := netip.ParseAddr(host); err == nil {
			f.Host = h // the proxy connected to an address; the Host header names it
		}
	}
	if f.Server.Port == 0 && port > 0 {
		f.Server.Port = uint16(port)
	}
	if ts := num(rq, "timestamp_start"); ts > 0 {
		f.Start = stamp(ts)
	}
	f.End = stamp(num(rq, "timestamp_end"))
	f.BytesUp = req.Body.Size
	if scheme == "https" {
		f.Transport = flow.TransportHTTPS
		if f.TLS == nil {
			f.TLS = &flow.TLSInfo{SNI: f.Host}
		}
		f.TLS.Decrypted = true
	} else {
		f.Transport = flow.TransportHTTP
		f.TLS = nil
	}
	if rs := dict(s, "response"); rs != nil {
		resp := &flow.Response{
			Status:   int(num(rs, "status_code")),
			Reason:   str(rs, "reason"),
			Proto:    str(rs, "http_version"),
			Headers:  headerList(rs["headers"]),
			Body:     content(rs, maxBody),
			Trailers: headerList(rs["trailers"]),
		}
		f.Response = resp
		f.BytesDown = resp.Body.Size
		if te := stamp(num(rs, "timestamp_end")); !te.IsZero() {
			f.End = te
		}
	}
	if f.End.IsZero() {
		f.End = f.Start
	}
	return f, nil
}

func listOf(v any) [][]any {
	l, _ := v.([]any)
	out := make([][]any, 0, len(l))
	for _, x := range l {
		if m, ok := x.([]any); ok {
			out = append(out, m)
		}
	}
	return out
}
