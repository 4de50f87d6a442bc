package record

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"phonehome/internal/flow"
)

// FlowColumns are a flow's columns as both engines name them, in the order
// of Encoder.Values and Row.Targets (after the id).
const FlowColumns = `session_id, source, seq, start_ns, end_ns, client, server, host, transport, bytes_up, bytes_down,
	method, url, req_proto, req_headers, req_trailers, req_body, req_body_size, req_body_flags, req_body_enc,
	status, reason, resp_proto, resp_headers, resp_trailers, resp_body, resp_body_size, resp_body_flags, resp_body_enc,
	tls, dns, notes, dest, app, findings, verdict, device`

// NumColumns is how many FlowColumns there are.
const NumColumns = 37

// LeanColumns are what a lean read selects (after the id), in the order of
// Row.Targets(true).
const LeanColumns = `start_ns, end_ns, client, server, host, transport, bytes_up, bytes_down,
	method, url, req_headers, req_body, req_body_size, req_body_flags, req_body_enc, status, resp_body_size, dns, dest, app, findings, verdict, device`

// Encoder turns flows into column values for one store.
type Encoder struct {
	Codec   *Codec
	MaxBody int
	// Plain stores bodies uncompressed (benchmarks compare).
	Plain bool
	// Fresh gives each compressed body its own buffer: for a writer that
	// holds rows until it sends them. Without it the buffers are reused from
	// flow to flow (a driver that copies what it binds).
	Fresh bool
	// Text mends strings a text column cannot hold (invalid UTF-8, NUL):
	// PostgreSQL refuses them, and one hostile URL would fail a whole batch.
	Text        bool
	zreq, zresp []byte
}

// Values sets vals (NumColumns long) to f's columns in the order of
// FlowColumns and returns roughly how many bytes they take.
func (e *Encoder) Values(vals []any, session int64, f *flow.Flow) int64 {
	vals[0] = session
	vals[1] = e.text(f.Source)
	vals[2] = int64(f.Seq)
	vals[3] = Nanos(f.Start)
	vals[4] = Nanos(f.End)
	vals[5] = f.Client.String()
	vals[6] = f.Server.String()
	vals[7] = e.text(f.Host)
	vals[8] = f.Transport.String()
	vals[9] = f.BytesUp
	vals[10] = f.BytesDown
	for i := 11; i < 29; i++ {
		vals[i] = nil
	}
	n := int64(512)
	if r := f.Request; r != nil {
		n += e.message(vals[11:20], r.Method, r.URL, r.Proto, r.Headers, r.Trailers, r.Body, &e.zreq)
	}
	if r := f.Response; r != nil {
		n += e.message(vals[20:29], int64(r.Status), e.text(r.Reason), r.Proto, r.Headers, r.Trailers, r.Body, &e.zresp)
	}
	vals[29] = JSONOrNil(f.TLS)
	vals[30] = JSONOrNil(f.DNS)
	vals[31] = JSONOrNil(f.Notes)
	vals[32] = nil
	if f.Dest != (flow.Destination{}) {
		b, _ := json.Marshal(f.Dest)
		vals[32] = string(b)
	}
	vals[33] = e.text(f.App)
	vals[34] = PackFindings(f.Findings)
	vals[35] = PackVerdict(f.Verdict)
	vals[36] = e.text(f.Device)
	return n
}

// message fills the nine columns of a request or an answer: its first
// line's two parts, protocol, headers, trailers and body (bytes, size,
// flags, encoding).
func (e *Encoder) message(vals []any, first, second any, proto string, h, trailers flow.Headers, b flow.Body, buf *[]byte) int64 {
	data, size, flags := BodyCols(b, e.MaxBody)
	enc := int64(EncIdentity)
	if !e.Plain {
		if e.Fresh {
			data, enc, _ = e.Codec.Compress(data, nil)
		} else {
			data, enc, *buf = e.Codec.Compress(data, *buf)
		}
	}
	if s, ok := first.(string); ok {
		first = e.text(s)
	}
	if s, ok := second.(string); ok {
		second = e.text(s)
	}
	for j, v := range [...]any{first, second, e.text(proto), HeadersJSON(h), HeadersJSON(trailers), data, size, int64(flags), enc} {
		vals[j] = v
	}
	return int64(len(data))
}

func (e *Encoder) text(s string) string {
	if !e.Text {
		return s
	}
	return Text(s)
}

// Text is s as a text column can hold it: invalid UTF-8 replaced by U+FFFD
// and NUL bytes dropped, as encoding/json mends strings in headers.
func Text(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// Row holds a flow's columns as read, before they are parsed.
type Row struct {
	ID, SessionID                           int64
	Source, Client, Server, Host, Transport string
	Seq, Start, End, BytesUp, BytesDown     int64
	Method, URL, ReqProto, ReqH, ReqT       sql.NullString
	Reason, RespProto, RespH, RespT         sql.NullString
	ReqBody, RespBody, Findings             []byte
	ReqSize, ReqFlags, ReqEnc               sql.NullInt64
	Status, RespSize, RespFlags, RespEnc    sql.NullInt64
	TLS, DNS, Notes, Dest, Verdict          sql.NullString
	App, Device                             string
}

// Targets are what to scan a row of "id, FlowColumns" (or, lean, of "id,
// LeanColumns") into.
func (r *Row) Targets(lean bool) []any {
	if lean {
		return []any{&r.ID, &r.Start, &r.End, &r.Client, &r.Server, &r.Host, &r.Transport, &r.BytesUp, &r.BytesDown,
			&r.Method, &r.URL, &r.ReqH, &r.ReqBody, &r.ReqSize, &r.ReqFlags, &r.ReqEnc, &r.Status, &r.RespSize, &r.DNS, &r.Dest, &r.App, &r.Findings, &r.Verdict, &r.Device}
	}
	return []any{&r.ID, &r.SessionID, &r.Source, &r.Seq, &r.Start, &r.End, &r.Client, &r.Server, &r.Host, &r.Transport,
		&r.BytesUp, &r.BytesDown, &r.Method, &r.URL, &r.ReqProto, &r.ReqH, &r.ReqT, &r.ReqBody, &r.ReqSize, &r.ReqFlags, &r.ReqEnc,
		&r.Status, &r.Reason, &r.RespProto, &r.RespH, &r.RespT, &r.RespBody, &r.RespSize, &r.RespFlags, &r.RespEnc,
		&r.TLS, &r.DNS, &r.Notes, &r.Dest, &r.App, &r.Findings, &r.Verdict, &r.Device}
}

// Decompress turns the bodies read into the bodies captured; readers do it
// on their own goroutines, beside the one parser.
func (r *Row) Decompress(c *Codec) error {
	var err error
	if r.ReqBody, err = c.Decompress(r.ReqBody, r.ReqEnc.Int64); err != nil {
		return fmt.Errorf("flow %d: request %w", r.ID, err)
	}
	if r.RespBody, err = c.Decompress(r.RespBody, r.RespEnc.Int64); err != nil {
		return fmt.Errorf("flow %d: response %w", r.ID, err)
	}
	return nil
}

// Parser turns rows into flows; a lean one remembers destinations and
// lookups, which repeat from flow to flow, instead of decoding their JSON
// each time. One parser serves one goroutine.
type Parser struct {
	lean  bool
	dests map[string]flow.Destination
	dns   map[string]flow.DNS
}

// NewParser returns a parser of full or lean rows.
func NewParser(lean bool) *Parser {
	return &Parser{lean: lean, dests: map[string]flow.Destination{}, dns: map[string]flow.DNS{}}
}

// Parse turns a decompressed row into a flow. A lean flow's DNS and
// destination may share memory with other flows': they are read only.
func (p *Parser) Parse(r *Row) (*flow.Flow, error) {
	f := &flow.Flow{ID: r.ID, Source: r.Source, Seq: int(r.Seq), Host: r.Host, BytesUp: r.BytesUp, BytesDown: r.BytesDown, App: r.App, Device: r.Device}
	fs, err := UnpackFindings(r.Findings)
	if err != nil {
		return nil, fmt.Errorf("flow %d: %w", f.ID, err)
	}
	f.Findings = fs
	if r.Start != 0 {
		f.Start = time.Unix(0, r.Start)
	}
	if r.End != 0 {
		f.End = time.Unix(0, r.End)
	}
	f.Client, f.Server = ParseEndpoint(r.Client), ParseEndpoint(r.Server)
	f.Transport = flow.ParseTransport(r.Transport)
	if r.Method.Valid {
		f.Request = &flow.Request{Method: r.Method.String, URL: r.URL.String, Proto: r.ReqProto.String,
			Headers: ParseHeaders(r.ReqH), Trailers: ParseHeaders(r.ReqT), Body: Body(r.ReqBody, r.ReqSize, r.ReqFlags)}
	}
	if r.Status.Valid {
		f.Response = &flow.Response{Status: int(r.Status.Int64), Body: flow.Body{Size: r.RespSize.Int64}}
		if !p.lean {
			f.Response.Reason, f.Response.Proto = r.Reason.String, r.RespProto.String
			f.Response.Headers, f.Response.Trailers = ParseHeaders(r.RespH), ParseHeaders(r.RespT)
			f.Response.Body = Body(r.RespBody, r.RespSize, r.RespFlags)
		}
	}
	if r.TLS.Valid {
		f.TLS = &flow.TLSInfo{}
		if err := json.Unmarshal([]byte(r.TLS.String), f.TLS); err != nil {
			return nil, fmt.Errorf("flow %d: tls column: %w", f.ID, err)
		}
	}
	if r.DNS.Valid {
		d, err := memoJSON(p, p.dns, r.DNS.String)
		if err != nil {
			return nil, fmt.Errorf("flow %d: dns column: %w", f.ID, err)
		}
		f.DNS = &d
	}
	if r.Notes.Valid {
		_ = json.Unmarshal([]byte(r.Notes.String), &f.Notes)
	}
	if r.Dest.Valid {
		if f.Dest, err = memoJSON(p, p.dests, r.Dest.String); err != nil {
			return nil, fmt.Errorf("flow %d: dest column: %w", f.ID, err)
		}
	}
	if err := ScanVerdict(f, r.Verdict); err != nil {
		return nil, err
	}
	return f, nil
}

// memoJSON decodes a JSON column value; a lean parser remembers up to 4,096
// of them (the same destinations and lookups come back flow after flow), a
// full one gives every flow its own.
func memoJSON[T any](p *Parser, memo map[string]T, s string) (T, error) {
	if v, ok := memo[s]; ok && p.lean {
		return v, nil
	}
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return v, err
	}
	if p.lean && len(memo) < 4096 {
		memo[s] = v
	}
	return v, nil
}

// Nanos is t as stored: Unix nanoseconds, 0 for the zero time.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// BodyCols is what a body's columns hold: its bytes up to max, its size and
// its flags (1 truncated, 2 incomplete).
func BodyCols(b flow.Body, max int) ([]byte, int64, int) {
	data, flags := b.Data, 0
	if len(data) > max {
		data = data[:max]
		flags |= 1
	}
	if b.Truncated {
		flags |= 1
	}
	if b.Incomplete {
		flags |= 2
	}
	if data == nil {
		data = []byte{}
	}
	return data, b.Size, flags
}

// Body is a body from its columns.
func Body(data []byte, size, flags sql.NullInt64) flow.Body {
	return flow.Body{Data: data, Size: size.Int64, Truncated: flags.Int64&1 != 0, Incomplete: flags.Int64&2 != 0}
}

// ParseEndpoint reads an endpoint as Endpoint.String writes it.
func ParseEndpoint(s string) flow.Endpoint {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return flow.Endpoint{Addr: ap.Addr(), Port: ap.Port()}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return flow.Endpoint{Addr: a}
	}
	return flow.Endpoint{}
}

// JSONOrNil is v as a JSON column, NULL for nothing.
func JSONOrNil(v any) any {
	switch x := v.(type) {
	case *flow.TLSInfo:
		if x == nil {
			return nil
		}
	case *flow.DNS:
		if x == nil {
			return nil
		}
	case flow.Notes:
		if len(x) == 0 {
			return nil
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// ClientDevice is the device name of a flow known only by its client
// column (see flow.Flow.DeviceName).
func ClientDevice(client string) string {
	f := flow.Flow{Client: ParseEndpoint(client)}
	return f.DeviceName()
}
