// Package decode unwraps what an app sends, layer by layer, into named values:
// the URL's query, headers and cookies, and the body through content codings
// (gzip, deflate, zlib, brotli, zstd), forms, multipart, JSON (also JSON inside
// strings), base64, hex, percent-encoding, protobuf wire format, JWT and XML
// (property lists too). Each value keeps the path of layers it was found
// under, for example "body › gzip › json:data › base64 › json:imei".
//
// It is pure: functions of bytes, no I/O, no internal package but flow's types. Limits on
// depth, decoded size, expansion ratio and value count make a decompression bomb
// or a deeply nested payload a recorded limit, never a crash.
package decode

import (
	"strings"

	"phonehome/internal/flow"
)

// Sep joins the layers of a path.
const Sep = " › "

// Value is one leaf found in a request.
type Value struct {
	Path string // layers from the request part to this value
	Key  string // the nearest name: JSON key, form field, header; "" when none
	// Parent is the name of the JSON object around Key ("os" for os.version):
	// SDKs nest, and "version" alone means nothing.
	Parent string
	Text   string // the value, decoded, as text (binary leaves are hex)
	// Numeric marks a value that was a number (JSON number, protobuf varint),
	// not a string: pattern detectors treat those with more suspicion.
	Numeric bool
}

// Opaque is a payload that could not be decoded and looks encrypted or compressed
// with an unknown scheme. It is never guessed at.
type Opaque struct {
	Path    string
	Size    int
	Entropy float64 // bits per byte
}

// Result is everything found in one request.
type Result struct {
	Values []Value
	Opaque []Opaque
	// Limits lists the limits that were hit, with the path where they were.
	Limits []string
}

// Limits bound the work done on one request.
type Limits struct {
	MaxDepth   int // nested layers (default 12)
	MaxDecoded int // total bytes produced by decoding (default 16 MiB)
	MaxRatio   int // decompressed size may be at most this many times the compressed (default 200)
	MaxValues  int // values kept (default 20,000)
}

func (l *Limits) defaults() {
	if l.MaxDepth <= 0 {
		l.MaxDepth = 12
	}
	if l.MaxDecoded <= 0 {
		l.MaxDecoded = 16 << 20
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = 200
	}
	if l.MaxValues <= 0 {
		l.MaxValues = 20000
	}
}

// Header is one request header.
type Header struct{ Name, Value string }

// Request describes the parts of an HTTP request to decode.
type Request struct {
	URL     string
	Headers []Header
	Body    []byte
}

// state carries the limits and the output through one decoding.
type state struct {
	lim     Limits
	res     Result
	decoded int
	full    bool
	free    [][]byte // decompression buffers to reuse
	used    [][]byte // buffers handed out during this request
	strings map[string]string
}

// intern returns one string for each distinct b.
func (s *state) intern(b []byte) string {
	if v, ok := s.strings[string(b)]; ok {
		return v
	}
	v := string(b)
	if s.strings == nil {
		s.strings = map[string]string{}
	}
	s.strings[v] = v
	return v
}

func (s *state) add(v Value) {
	if len(s.res.Values) >= s.lim.MaxValues {
		if !s.full {
			s.full = true
			s.limit("values", v.Path)
		}
		return
	}
	s.res.Values = append(s.res.Values, v)
}

func (s *state) limit(what, path string) {
	if len(s.res.Limits) < 16 {
		s.res.Limits = append(s.res.Limits, what+" limit at "+path)
	}
}

// budget reserves n decoded bytes; false when the request is over its limit.
func (s *state) budget(n int, path string) bool {
	if s.decoded+n > s.lim.MaxDecoded {
		s.limit("decoded size", path)
		return false
	}
	s.decoded += n
	return true
}

func join(path, seg string) string {
	if path == "" {
		return seg
	}
	return path + Sep + seg
}

// Decode decodes every part of a request.
func Decode(r Request, lim Limits) Result {
	var d Decoder
	return d.Decode(r, lim)
}

// Decoder decodes requests one after another, reusing its memory: the Result
// of one call is valid only until the next. Not safe for concurrent use.
type Decoder struct {
	values  []Value
	bufs    [][]byte          // decompression buffers, reused once the request is decoded
	strings map[string]string // interned keys and paths, kept across requests
}

// maxInterned bounds the interned strings a Decoder keeps; past it the table
// starts again (a flood of distinct keys costs memory once, not forever).
const maxInterned = 8192

// Decode decodes every part of a request.
func (d *Decoder) Decode(r Request, lim Limits) Result {
	lim.defaults()
	if d.strings == nil || len(d.strings) > maxInterned {
		d.strings = make(map[string]string, 256)
	}
	s := &state{lim: lim, free: d.bufs, strings: d.strings}
	if d.values == nil {
		d.values = make([]Value, 0, 128)
	}
	s.res.Values = d.values[:0]
	defer func() {
		d.values = s.res.Values[:0]
		d.bufs = append(s.free, s.used...) // every value copied what it kept
	}()
	var ctype, cenc string
	for _, h := range r.Headers {
		switch strings.ToLower(h.Name) {
		case "content-type":
			ctype = h.Value
		case "content-encoding":
			cenc = h.Value
		}
	}
	s.url(r.URL)
	s.headers(r.Headers)
	if len(r.Body) > 0 {
		s.body(r.Body, ctype, cenc)
	}
	return s.res
}

// Bytes decodes a standalone payload (a body without a request around it).
func Bytes(path string, b []byte, lim Limits) Result {
	lim.defaults()
	s := &state{lim: lim}
	s.bytes(b, path, "", 0)
	return s.res
}

// FromFlow returns the parts of a captured request to decode. The body is
// shared, not copied.
func FromFlow(r *flow.Request) Request {
	req := Request{URL: r.URL, Body: r.Body.Data, Headers: make([]Header, 0, len(r.Headers))}
	for _, h := range r.Headers {
		req.Headers = append(req.Headers, Header{Name: h.Name, Value: h.Value})
	}
	return req
}
