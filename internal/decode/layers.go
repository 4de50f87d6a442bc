package decode

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"math"
	"mime"
	"mime/multipart"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

func (s *state) url(raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		return
	}
	for i, seg := range strings.Split(strings.Trim(u.EscapedPath(), "/"), "/") {
		if seg == "" {
			continue
		}
		if un, err := url.PathUnescape(seg); err == nil {
			seg = un
		}
		s.str(seg, "path["+strconv.Itoa(i)+"]", "", 1)
	}
	if u.RawQuery != "" {
		s.form(u.RawQuery, "query", 1)
	}
}

// Headers that describe the transfer, not the sender; they carry nothing personal.
var plainHeaders = map[string]bool{"host": true, "content-length": true, "content-type": true, "content-encoding": true,
	"accept": true, "accept-encoding": true, "connection": true, "transfer-encoding": true, "cache-control": true,
	"pragma": true, "te": true, "upgrade-insecure-requests": true, "sec-fetch-mode": true, "sec-fetch-site": true,
	"sec-fetch-dest": true, "expect": true, "keep-alive": true, "range": true, "if-none-match": true, "if-modified-since": true}

func (s *state) headers(hs []Header) {
	for _, h := range hs {
		name := strings.ToLower(h.Name)
		if plainHeaders[name] {
			continue
		}
		if name == "cookie" {
			for _, c := range strings.Split(h.Value, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(c), "=")
				if !ok {
					continue
				}
				s.str(v, "cookie:"+k, k, 1)
			}
			continue
		}
		v := h.Value
		if name == "authorization" {
			if _, tok, ok := strings.Cut(v, " "); ok {
				v = tok
			}
		}
		s.str(v, "header:"+h.Name, h.Name, 1)
	}
}

func (s *state) body(b []byte, ctype, cenc string) {
	path := "body"
	owned := false // b is a buffer of the state's, not the request's
	// Content codings apply in the order listed; undo them last first.
	codings := strings.Split(strings.ToLower(cenc), ",")
	for i := len(codings) - 1; i >= 0; i-- {
		c := strings.TrimSpace(codings[i])
		if c == "" || c == "identity" {
			continue
		}
		out, ok := s.decompress(c, b, path)
		if !ok {
			break // mislabelled: let the sniffing below decide
		}
		if owned {
			s.release(b)
		}
		if out == nil {
			return
		}
		b, path, owned = out, join(path, c), true
	}
	mt, params, _ := mime.ParseMediaType(ctype)
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" {
		if s.multipart(b, params["boundary"], path, 1) {
			if owned {
				s.release(b)
			}
			return
		}
	}
	if owned {
		s.owned(b, path, "", 1)
	} else {
		s.bytes(b, path, "", 1)
	}
}

func isZlib(b []byte) bool {
	return len(b) >= 2 && b[0]&0x0f == 8 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}

// sniffCoding names the compression a payload starts with, if any.
func sniffCoding(b []byte) string {
	switch {
	case len(b) >= 3 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 8:
		return "gzip"
	case len(b) >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd:
		return "zstd"
	case len(b) >= 2 && isZlib(b) && b[0] == 0x78:
		return "zlib"
	}
	return ""
}

// bytes decodes a binary payload, which it does not own: what it keeps of b
// it copies.
func (s *state) bytes(b []byte, path, key string, depth int) {
	if depth > s.lim.MaxDepth {
		s.limit("depth", path)
		return
	}
	if s.full {
		return
	}
	if c := sniffCoding(b); c != "" {
		if out, ok := s.decompress(c, b, path); ok {
			if out != nil {
				s.owned(out, join(path, c), key, depth+1)
			}
			return
		}
	}
	if printable(b) {
		if s.spendAt(len(b), path) {
			s.str(string(b), path, key, depth)
		}
		return
	}
	if isBplist(b) && s.bplist(b, path, depth+1) {
		return
	}
	if protoValid(b, 0) {
		s.proto(b, join(path, "protobuf"), "", depth+1)
		return
	}
	if e := Entropy(b); len(b) >= 32 && e > 6.0 || len(b) >= 16 && e >= 0.9*math.Log2(float64(len(b))) {
		s.opaque(Opaque{Path: path, Size: len(b), Entropy: e})
		return
	}
	if s.spendAt(2*len(b), path) {
		h := hex.AppendEncode(make([]byte, 0, 2*len(b)), b)
		s.add(Value{Path: path, Key: key, Text: unsafe.String(unsafe.SliceData(h), len(h))})
	}
}

// str decodes a text value, trying the layers that hide data inside strings.
func (s *state) str(v, path, key string, depth int) { s.strIn(v, path, key, "", depth) }

// strIn is str for a value inside a JSON object named parent.
//
// Each layer tried charges what it copies before it copies it; one that does
// not fit is skipped, and v, which costs nothing more, is kept as it is.
func (s *state) strIn(v, path, key, parent string, depth int) {
	if s.full {
		return
	}
	if depth > s.lim.MaxDepth {
		s.limit("depth", path)
		s.add(Value{Path: path, Key: key, Text: v})
		return
	}
	t := strings.TrimSpace(v)
	// The walker reads t in place: it copies what it keeps.
	if len(t) >= 2 && (t[0] == '{' || t[0] == '[') && s.tryJSON(unsafe.Slice(unsafe.StringData(t), len(t)), path, key, depth+1) {
		return
	}
	if len(t) >= 16 && strings.Count(t, ".") == 2 {
		if s.jwt(t, path, depth+1) {
			return
		}
	}
	if len(t) >= 7 && t[0] == '<' && t[len(t)-1] == '>' && s.xml(t, path, depth+1) {
		return
	}
	if strings.Contains(t, "=") && looksLikeForm(t) {
		s.form(t, path, depth+1)
		return
	}
	if len(t) >= 6 && strings.Contains(t, "%") && s.spendAt(len(t), path) {
		if un, err := url.QueryUnescape(t); err == nil && un != t {
			s.str(un, join(path, "url-decoded"), key, depth+1)
			return
		}
	}
	if len(t) >= 16 && len(t)%2 == 0 && isHex(t) {
		if s.spendAt(len(t)/2, path) {
			if b, err := hex.DecodeString(t); err == nil {
				if plausible(b) {
					s.owned(b, join(path, "hex"), key, depth+1)
					return
				}
				s.release(b)
			}
		}
	} else if len(t) >= 8 && !isHexDashed(t) && !hasUUID(t) {
		if enc, raw := base64Of(t); enc != nil && s.spendAt(enc.DecodedLen(len(raw)), path) {
			if b, err := enc.DecodeString(raw); err == nil {
				if plausible(b) {
					s.owned(b, join(path, "base64"), key, depth+1)
					return
				}
				if len(b) >= 24 && Entropy(b) >= 0.8*math.Log2(float64(min(len(b), 256))) {
					s.opaque(Opaque{Path: join(path, "base64"), Size: len(b), Entropy: Entropy(b)})
				}
				s.release(b)
			}
		}
	}
	s.add(Value{Path: path, Key: key, Parent: parent, Text: v})
}

// looksLikeForm reports whether t is key=value pairs joined by '&'. A single
// pair needs a value, so that base64 padding ("YWJj=") is not taken for a form.
func looksLikeForm(t string) bool {
	single := !strings.Contains(t, "&")
	for kv := range strings.SplitSeq(t, "&") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || len(k) > 64 {
			return false
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.[]%$:", c) >= 0) {
				return false
			}
		}
		if single && strings.Trim(v, "=") == "" {
			return false
		}
	}
	return true
}

// form decodes application/x-www-form-urlencoded text (or a query string),
// keeping the order of fields.
func (s *state) form(t, path string, depth int) {
	prefix := "form:"
	if path == "query" {
		prefix, path = "query:", ""
	}
	for kv := range strings.SplitSeq(t, "&") {
		if kv == "" {
			continue
		}
		if s.full || !s.spendAt(len(kv)+len(path)+len(prefix)+len(Sep), path) { // unescaped key and value, and the path
			return
		}
		k, v, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			v = uv
		}
		s.str(v, s.fieldPath(path, prefix, k), k, depth)
	}
}

// fieldPath is join(path, prefix+k), taken from the decoder's interned
// strings when an earlier request had the same field: trackers send the same
// fields request after request, and a path is made for every one of them.
// What it copies was paid for by the caller's spendAt.
func (s *state) fieldPath(path, prefix, k string) string {
	var b [192]byte
	n := len(path) + len(Sep) + len(prefix) + len(k)
	if n > len(b) || n > maxInternLen {
		return join(path, prefix+k)
	}
	p := b[:0]
	if path != "" {
		p = append(append(p, path...), Sep...)
	}
	p = append(append(p, prefix...), k...)
	if v, ok := s.strings[string(p)]; ok {
		return v
	}
	v := string(p)
	if s.strings != nil && len(s.strings) < maxInterned {
		s.strings[v] = v
	}
	return v
}

// partCost is what reading one part costs beyond its bytes: its header and
// the reader's copies of it.
const partCost = 2 << 10

func (s *state) multipart(b []byte, boundary, path string, depth int) bool {
	r := multipart.NewReader(bytes.NewReader(b), boundary)
	found := false
	for !s.full {
		if !s.spendAt(partCost, path) {
			return found
		}
		p, err := r.NextPart()
		if err != nil {
			return found
		}
		data, over, err := s.readAll(p, s.lim.MaxDecoded-s.copied, 256)
		if err != nil {
			s.release(data)
			return found
		}
		s.copied += len(data)
		if over { // the part is cut where the allowance ends, and is the last
			s.overspent(path)
			if len(data) == 0 {
				s.release(data)
				return found
			}
		}
		found = true
		name := p.FormName()
		seg := "multipart:" + name
		if fn := p.FileName(); fn != "" {
			seg += "(" + fn + ")"
		}
		s.owned(data, join(path, seg), name, depth+1)
	}
	return found
}

// jwt decodes the header and claims of a JSON Web Token.
func (s *state) jwt(t, path string, depth int) bool {
	parts := strings.Split(t, ".")
	if len(parts) != 3 || !s.spendAt(len(parts[0])+len(parts[1]), path) {
		return false
	}
	head, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	if err != nil || !bytes.Contains(head, []byte(`"alg"`)) {
		return false
	}
	claims, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil || len(claims) == 0 || claims[0] != '{' && claims[0] != '[' {
		return false
	}
	mark := len(s.res.Values)
	if !s.tryJSON(head, join(path, "jwt:header"), "", depth) || !s.tryJSON(claims, join(path, "jwt:claims"), "", depth) {
		s.res.Values = s.res.Values[:mark]
		return false
	}
	return true
}

// base64Of returns the encoding t is written in and t without its padding;
// nil when t is not base64.
func base64Of(t string) (*base64.Encoding, string) {
	urlSafe := false
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
		case c == '-' || c == '_':
			urlSafe = true
		case c == '=' && i >= len(t)-2:
		default:
			return nil, ""
		}
	}
	if urlSafe {
		return base64.RawURLEncoding, strings.TrimRight(t, "=")
	}
	return base64.RawStdEncoding, strings.TrimRight(t, "=")
}

// isHexDashed reports whether t is hex digits and dashes (a UUID, a hash):
// such strings are valid base64 too, but never are base64.
func isHexDashed(t string) bool {
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
			return false
		}
	}
	return true
}

// hasUUID reports whether t ends in a UUID (8-4-4-4-12 hex digits), as
// prefixed IDs do ("XZ" + UUID, Facebook's anon_id): an identifier, not base64.
func hasUUID(t string) bool {
	if len(t) < 36 {
		return false
	}
	u := t[len(t)-36:]
	for i := 0; i < 36; i++ {
		dash := i == 8 || i == 13 || i == 18 || i == 23
		if c := u[i]; dash != (c == '-') || !dash && !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func isHex(t string) bool {
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// printable reports whether b is text a person could read.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	bad := 0
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			bad++
		}
	}
	return bad == 0
}

// plausible reports whether bytes decoded from base64 or hex are worth
// decoding further: text, a compressed stream, or a protobuf message.
func plausible(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	if sniffCoding(b) != "" || isBplist(b) {
		return true
	}
	if printable(b) {
		letters := 0
		for _, c := range b {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" .,:;_-+@/{}[]\"'=&%", c) >= 0 {
				letters++
			}
		}
		return letters*10 >= len(b)*9
	}
	return len(b) >= 8 && protoValid(b, 0) && protoHasText(b, 0)
}

// Entropy is the Shannon entropy of b in bits per byte.
func Entropy(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	var counts [256]int
	for _, c := range b {
		counts[c]++
	}
	e := 0.0
	n := float64(len(b))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			e -= p * math.Log2(p)
		}
	}
	return e
}

// protoValid reports whether b parses completely as protobuf wire format.
func protoValid(b []byte, depth int) bool {
	if len(b) == 0 || depth > 8 {
		return false
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num < 1 || num > 1<<20 {
			return false
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			n = protowire.ConsumeFieldValue(num, typ, b)
		case protowire.Fixed32Type, protowire.Fixed64Type, protowire.BytesType:
			n = protowire.ConsumeFieldValue(num, typ, b)
		default:
			return false
		}
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// protoHasText reports whether a message holds at least one readable string,
// which random bytes that happen to parse rarely do. It looks 8 messages deep
// at most.
func protoHasText(b []byte, depth int) bool {
	for len(b) > 0 && depth <= 8 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			if len(v) >= 3 && printable(v) || protoValid(v, 1) && protoHasText(v, depth+1) {
				return true
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return false
		}
		b = b[m:]
	}
	return false
}

// proto walks a protobuf message without a schema; paths name field numbers.
func (s *state) proto(b []byte, path, fields string, depth int) {
	for len(b) > 0 && !s.full {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if !s.spendAt(len(path)+2*len(fields)+24, path) { // the field's name and path
			return
		}
		f := strconv.Itoa(int(num))
		if fields != "" {
			f = fields + "." + f
		}
		here := path + ":" + f
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return
			}
			s.add(Value{Path: here, Key: f, Text: strconv.FormatUint(v, 10), Numeric: true})
			b = b[m:]
		case protowire.Fixed32Type:
			v, m := protowire.ConsumeFixed32(b)
			if m < 0 {
				return
			}
			s.add(Value{Path: here, Key: f, Text: strconv.FormatFloat(float64(math.Float32frombits(v)), 'g', -1, 32), Numeric: true})
			b = b[m:]
		case protowire.Fixed64Type:
			v, m := protowire.ConsumeFixed64(b)
			if m < 0 {
				return
			}
			s.add(Value{Path: here, Key: f, Text: strconv.FormatFloat(math.Float64frombits(v), 'g', -1, 64), Numeric: true})
			b = b[m:]
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return
			}
			b = b[m:]
			switch {
			case printable(v) && len(v) > 0:
				if s.spendAt(len(v), here) {
					s.str(string(v), here, f, depth+1)
				}
			case protoValid(v, 1) && depth < s.lim.MaxDepth:
				s.proto(v, path, f, depth+1)
			default:
				s.bytes(v, here, f, depth+1)
			}
		default:
			return
		}
	}
}
