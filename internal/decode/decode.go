// Package decode unwraps what an app sends, layer by layer, into named values:
// the URL's query, headers and cookies, and the body through content codings
// (gzip, deflate, zlib, brotli, zstd), forms, multipart, JSON (also JSON inside
// strings), base64, hex, percent-encoding, protobuf wire format, JWT and XML
// (property lists too). Each value keeps the path of layers it was found
// under, for example "body › gzip › json:data › base64 › json:imei".
//
// It is pure: functions of bytes, no I/O, no internal package but flow's types. Limits on
// depth, decoded size, expansion ratio and value count make a decompression bomb
// or a deeply nested payload a recorded limit, never a crash; and the memory one
// request costs stays within a few times the size limit (memory.go).
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
//
// MaxDecoded bounds the bytes decompressed and, apart from them, the bytes
// the other layers copy out (text, strings, base64, paths, a binary leaf's
// hex), each; so the output is at most MaxDecoded and decoding one request
// allocates a small multiple of it at most (see memory.go).
type Limits struct {
	MaxDepth   int // nested layers (default 12)
	MaxDecoded int // bytes produced by decoding, see above (default 16 MiB)
	MaxRatio   int // decompressed size may be at most this many times the compressed (default 200)
	MaxValues  int // values kept, and opaque payloads (default 20,000)
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
	decoded int      // bytes decompressed (at most MaxDecoded)
	copied  int      // bytes the other layers copied out (at most MaxDecoded again): see memory.go
	full    bool     // MaxValues reached: nothing more is kept
	spent   bool     // the copy allowance ran out once (and that was noted)
	free    [][]byte // buffers to reuse: small ones only (see release)
	probe   [1]byte  // where readAll reads the byte past its room
	strings map[string]string
}

// intern returns one string for each distinct b, and false when a new one
// does not fit the copy allowance. Long strings and strings past the
// table's size are copied, not kept.
func (s *state) intern(b []byte) (string, bool) {
	if v, ok := s.strings[string(b)]; ok {
		return v, true
	}
	if !s.spend(len(b) + internCost) {
		return "", false
	}
	v := string(b)
	if len(v) > maxInternLen || len(s.strings) >= maxInterned {
		return v, true
	}
	if s.strings == nil {
		s.strings = map[string]string{}
	}
	s.strings[v] = v
	return v, true
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

// opaque keeps o; opaque payloads count against MaxValues as values do.
func (s *state) opaque(o Opaque) {
	if len(s.res.Opaque) >= s.lim.MaxValues {
		if !s.full {
			s.full = true
			s.limit("values", o.Path)
		}
		return
	}
	s.res.Opaque = append(s.res.Opaque, o)
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

// bodyCoding returns the Content-Type and Content-Encoding of headers.
func bodyCoding(headers []Header) (ctype, cenc string) {
	for _, h := range headers {
		switch strings.ToLower(h.Name) {
		case "content-type":
			ctype = h.Value
		case "content-encoding":
			cenc = h.Value
		}
	}
	return ctype, cenc
}

// Decode decodes every part of a request.
func Decode(r Request, lim Limits) Result {
	var d Decoder
	return d.Decode(r, lim)
}

// Decoder decodes requests one after another, reusing its memory: the Result
// of one call is valid only until the next. Not safe for concurrent use.
//
// What it keeps between calls is small whatever the requests held: buffers
// of up to 256 KiB (four at most), interned strings of up to 256 bytes (8,192
// at most), and the last result, which the next call drops (its slice too,
// when it held more than 4,096 values).
type Decoder struct {
	values  []Value
	last    int               // values of the last result
	bufs    [][]byte          // decompression buffers, reused once the request is decoded
	strings map[string]string // interned keys and paths, kept across requests
}

const (
	// maxInterned bounds the interned strings a Decoder keeps; past it the
	// table starts again (a flood of distinct keys costs memory once, not
	// forever).
	maxInterned = 8192
	// maxInternLen is the longest string interned: longer keys and paths are
	// rare, and are copied instead of kept.
	maxInternLen = 256
	// internCost is what a table entry costs beyond its bytes.
	internCost = 48
	// maxKeptValues is the most values whose slice a Decoder keeps.
	maxKeptValues = 4096
)

// Decode decodes every part of a request.
func (d *Decoder) Decode(r Request, lim Limits) Result {
	lim.defaults()
	if d.strings == nil || len(d.strings) >= maxInterned {
		d.strings = make(map[string]string, 256)
	}
	s := &state{lim: lim, free: d.bufs, strings: d.strings}
	if cap(d.values) > maxKeptValues {
		d.values, d.last = nil, 0
	}
	if d.values == nil {
		d.values = make([]Value, 0, 128)
	}
	s.res.Values = d.values[:0]
	defer func() {
		// Past this result's values, the last one's would be kept alive by a
		// decoder waiting in a pool.
		if n := len(s.res.Values); n < d.last && d.last <= cap(s.res.Values) {
			clear(s.res.Values[n:d.last])
		}
		d.values, d.last = s.res.Values[:0], len(s.res.Values)
		d.bufs = s.free // every value copied what it kept, or owns its buffer
	}()
	ctype, cenc := bodyCoding(r.Headers)
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
