package decode

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// Editing is decoding run again with a hand on the values: Edit walks the
// request with the same layers, in the same order and under the same paths
// as Decode, and where a path names a value it puts the replacement in its
// place and re-encodes every layer above it, each the way it was found
// (base64 padded or not, standard or URL-safe; hex in its case; the same
// compression). Everything not on the way to an edited value is copied as it
// was, byte for byte.

// Change says what becomes of a value an edit names. It is given the value
// as Decode found it (Value.Text) and returns the text to put in its place,
// or keep false to remove the value: the field, pair, member, element,
// header or cookie goes; where the layer has no way to drop it (the text of
// an XML element, a whole body) it becomes empty.
type Change func(old string) (repl string, keep bool)

// LayerError says that a value could not be edited because a layer on its
// way cannot be re-encoded (a signed token, a format not written back). The
// request is then not edited at all: the caller decides (block it, or
// forward it unchanged with a note).
type LayerError struct {
	Layer string // "jwt", "bplist", "multipart", ...
	Path  string // the path of the layer
	Why   string
}

func (e *LayerError) Error() string {
	return "decode: cannot re-encode " + e.Layer + " at " + e.Path + ": " + e.Why
}

// Edit returns r with the values at the paths of changes edited, every layer
// above them re-encoded, and Content-Length, when r has one, set to the new
// body's length; the content codings are applied again as they were, so
// Content-Encoding stays true. r is not changed: the result has its own
// headers, and its own body when a change was made in it (else it shares
// r's).
//
// missed lists the paths of changes that named no value (sorted): nothing
// was done for them. A layer that cannot be re-encoded gives a *LayerError
// and a zero Request, never a half-edited one. lim bounds the decoding as it
// does Decode's.
//
// Layers re-encoded: URL path segments (substituted only) and query,
// headers (Authorization after its scheme), cookies, content codings (gzip,
// deflate, zlib, brotli, zstd, also sniffed inside payloads), forms, JSON
// (also inside strings), percent-encoding, base64, hex, protobuf wire
// format, multipart parts, XML (element text and attributes), unsigned JWT
// (alg "none"). Not re-encoded: signed JWT, property lists (binary or XML).
func Edit(r Request, changes map[string]Change, lim Limits) (out Request, missed []string, err error) {
	lim.defaults()
	e := &editor{s: &state{lim: lim}, changes: changes}
	out = Request{URL: r.URL, Body: r.Body}
	if len(changes) == 0 {
		out.Headers = slices.Clone(r.Headers)
		return out, nil, nil
	}
	out.URL = e.url(r.URL)
	out.Headers = e.headers(r.Headers)
	ctype, cenc := bodyCoding(r.Headers)
	if len(r.Body) > 0 && e.under("body") {
		if b, ch := e.body(r.Body, ctype, cenc); ch {
			out.Body = b
			for i, h := range out.Headers {
				if strings.EqualFold(h.Name, "content-length") {
					out.Headers[i].Value = strconv.Itoa(len(b))
				}
			}
		}
	}
	if e.err != nil {
		return Request{}, nil, e.err
	}
	hit := map[string]bool{}
	for _, p := range e.hits {
		hit[p] = true
	}
	for p := range changes {
		if !hit[p] {
			missed = append(missed, p)
		}
	}
	slices.Sort(missed)
	return out, missed, nil
}

// editor is one Edit.
type editor struct {
	s       *state // the limits, decompression, and the JSON walker's interning
	changes map[string]Change
	hits    []string // paths whose change was applied (a log, cut back when a layer turns out not to be one)
	err     *LayerError
}

// under reports whether a change names path or a value below it.
func (e *editor) under(path string) bool {
	if e.err != nil {
		return false
	}
	for p := range e.changes {
		if strings.HasPrefix(p, path) {
			return true
		}
	}
	return false
}

// deeper reports whether a change names a value below path (not path itself).
func (e *editor) deeper(path string) bool {
	for p := range e.changes {
		if len(p) > len(path) && strings.HasPrefix(p, path) {
			return true
		}
	}
	return false
}

func (e *editor) fail(layer, path, why string) {
	if e.err == nil {
		e.err = &LayerError{Layer: layer, Path: path, Why: why}
	}
}

// leaf applies the change at path, if any, to the value old.
func (e *editor) leaf(path, old string) (repl string, keep, changed bool) {
	c, ok := e.changes[path]
	if !ok || e.err != nil {
		return old, true, false
	}
	e.hits = append(e.hits, path)
	repl, keep = c(old)
	return repl, keep, !keep || repl != old
}

func (e *editor) url(raw string) string {
	if !e.under("path[") && !e.under("query:") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	// Where the path and the query are in raw.
	pathStart := 0
	if u.Scheme != "" {
		pathStart = len(u.Scheme) + 1
	}
	if strings.HasPrefix(raw[pathStart:], "//") {
		if k := strings.IndexAny(raw[pathStart+2:], "/?#"); k < 0 {
			pathStart = len(raw)
		} else {
			pathStart += 2 + k
		}
	}
	end := len(raw)
	if k := strings.IndexByte(raw, '#'); k >= 0 {
		end = k
	}
	pathEnd := end
	if k := strings.IndexByte(raw[:end], '?'); k >= 0 {
		pathEnd = k
	}
	if pathStart > pathEnd {
		return raw
	}
	rawPath, query := raw[pathStart:pathEnd], ""
	if pathEnd < end {
		query = raw[pathEnd+1 : end]
	}
	newPath, changed := rawPath, false
	if e.under("path[") {
		if u.Opaque != "" {
			e.fail("path", "path[", "an opaque URL has no path to edit")
			return raw
		}
		rawPath = u.EscapedPath() // what Decode split
		trimmed := strings.Trim(rawPath, "/")
		lead := strings.Index(rawPath, trimmed)
		segs := strings.Split(trimmed, "/")
		for i, seg := range segs {
			if seg == "" {
				continue
			}
			if un, err := url.PathUnescape(seg); err == nil {
				seg = un
			}
			p := "path[" + strconv.Itoa(i) + "]"
			nv, keep, ch := e.str(seg, p, 1)
			if !keep {
				e.fail("path", p, "a path segment cannot be removed, only replaced")
				return raw
			}
			if ch {
				segs[i], changed = url.PathEscape(nv), true
			}
		}
		if changed {
			newPath = rawPath[:lead] + strings.Join(segs, "/") + rawPath[lead+len(trimmed):]
		}
	}
	newQuery := query
	if u.RawQuery != "" && e.under("query:") {
		if q, ch := e.form(query, "query", 1); ch {
			newQuery, changed = q, true
		}
	}
	if !changed {
		return raw
	}
	out := raw[:pathStart] + newPath
	if newQuery != "" {
		out += "?" + newQuery
	}
	return out + raw[end:]
}

func (e *editor) headers(hs []Header) []Header {
	out := make([]Header, 0, len(hs))
	for _, h := range hs {
		name := strings.ToLower(h.Name)
		if plainHeaders[name] {
			out = append(out, h)
			continue
		}
		if name == "cookie" {
			if !e.under("cookie:") {
				out = append(out, h)
				continue
			}
			var kept []string
			for _, c := range strings.Split(h.Value, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(c), "=")
				if ok {
					if nv, keep, ch := e.str(v, "cookie:"+k, 1); !keep {
						continue
					} else if ch {
						lead := c[:len(c)-len(strings.TrimLeft(c, " \t"))]
						c = lead + k + "=" + nv
					}
				}
				kept = append(kept, c)
			}
			if len(kept) > 0 {
				h.Value = strings.TrimLeft(strings.Join(kept, ";"), " \t")
				out = append(out, e.headerSafe(h, "cookie"))
			}
			continue
		}
		p := "header:" + h.Name
		if !e.under(p) {
			out = append(out, h)
			continue
		}
		v, scheme := h.Value, ""
		if name == "authorization" {
			if s, tok, ok := strings.Cut(v, " "); ok {
				scheme, v = s+" ", tok
			}
		}
		nv, keep, ch := e.str(v, p, 1)
		if !keep {
			continue
		}
		if ch {
			h.Value = scheme + nv
		}
		out = append(out, e.headerSafe(h, p))
	}
	return out
}

// headerSafe refuses a header value that would end the header.
func (e *editor) headerSafe(h Header, path string) Header {
	if strings.ContainsAny(h.Value, "\r\n\x00") {
		e.fail("header", path, "the new value holds a line break")
	}
	return h
}

// coded is a content coding undone on the way to the body's content.
type coded struct {
	coding string
	orig   []byte
}

func (e *editor) body(b []byte, ctype, cenc string) ([]byte, bool) {
	path := "body"
	var stack []coded
	codings := strings.Split(strings.ToLower(cenc), ",")
	for i := len(codings) - 1; i >= 0; i-- {
		c := strings.TrimSpace(codings[i])
		if c == "" || c == "identity" {
			continue
		}
		out, ok := e.s.decompress(c, b, path)
		if !ok {
			break
		}
		if out == nil {
			e.fail(c, path, "over the decoding limits")
			return nil, false
		}
		stack = append(stack, coded{c, b})
		b, path = out, join(path, c)
	}
	mt, params, _ := mime.ParseMediaType(ctype)
	var out []byte
	var keep, ch bool
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && multipartParts(b, params["boundary"]) {
		out, ch = e.multipart(b, params["boundary"], path, 1)
		keep = true
	} else if len(stack) > 0 {
		out, keep, ch = e.owned(b, path, 1)
	} else {
		out, keep, ch = e.bytes(b, path, 1)
	}
	if !ch || e.err != nil {
		return nil, false
	}
	if !keep {
		out = nil
	}
	for i := len(stack) - 1; i >= 0; i-- {
		z, err := compress(stack[i].coding, out, stack[i].orig)
		if err != nil {
			e.fail(stack[i].coding, path, err.Error())
			return nil, false
		}
		out = z
	}
	return out, true
}

// owned is state.owned's choice between text and bytes.
func (e *editor) owned(b []byte, path string, depth int) ([]byte, bool, bool) {
	if depth <= e.s.lim.MaxDepth && sniffCoding(b) == "" && printable(b) {
		// b is the editor's (decompressed or decoded) and never reused: the
		// text is read where it lies, and so is what replaces it (nothing
		// writes to it).
		out, keep, ch := e.str(unsafe.String(unsafe.SliceData(b), len(b)), path, depth)
		return unsafe.Slice(unsafe.StringData(out), len(out)), keep, ch
	}
	return e.bytes(b, path, depth)
}

// bytes is state.bytes, editing.
func (e *editor) bytes(b []byte, path string, depth int) ([]byte, bool, bool) {
	if depth > e.s.lim.MaxDepth || !e.under(path) {
		return b, true, false
	}
	if c := sniffCoding(b); c != "" {
		if out, ok := e.s.decompress(c, b, path); ok {
			if out == nil {
				e.fail(c, path, "over the decoding limits")
				return b, true, false
			}
			in, keep, ch := e.owned(out, join(path, c), depth+1)
			if !ch || e.err != nil {
				return b, true, false
			}
			if !keep {
				in = nil
			}
			z, err := compress(c, in, b)
			if err != nil {
				e.fail(c, path, err.Error())
				return b, true, false
			}
			return z, true, true
		}
	}
	if printable(b) {
		out, keep, ch := e.str(string(b), path, depth)
		return unsafe.Slice(unsafe.StringData(out), len(out)), keep, ch
	}
	if isBplist(b) {
		e.fail("bplist", path, "binary property lists are not re-encoded")
		return b, true, false
	}
	if protoValid(b, 0) {
		out, ch := e.proto(b, join(path, "protobuf"), "", depth+1)
		return out, true, ch
	}
	repl, keep, ch := e.leaf(path, hex.EncodeToString(b))
	if !ch || !keep {
		return nil, keep, ch
	}
	if nb, err := hex.DecodeString(repl); err == nil {
		return nb, true, true
	}
	return []byte(repl), true, true
}

// str is state.strIn, editing: the same layers, tried in the same order.
func (e *editor) str(v, path string, depth int) (string, bool, bool) {
	if !e.under(path) {
		return v, true, false
	}
	if depth > e.s.lim.MaxDepth || !e.deeper(path) {
		return e.leaf(path, v)
	}
	t := strings.TrimSpace(v)
	lead := strings.Index(v, t)
	wrap := func(inner string) (string, bool, bool) { return v[:lead] + inner + v[lead+len(t):], true, true }
	if len(t) >= 2 && (t[0] == '{' || t[0] == '[') {
		if out, ok, ch := e.json(unsafe.Slice(unsafe.StringData(t), len(t)), path, depth+1); ok {
			if ch {
				return wrap(string(out))
			}
			return v, true, false
		}
	}
	if len(t) >= 16 && strings.Count(t, ".") == 2 && isJWT(t) {
		if out, ok := e.jwt(t, path, depth+1); ok {
			return wrap(out)
		}
		return v, true, false
	}
	if len(t) >= 7 && t[0] == '<' && t[len(t)-1] == '>' && wellFormedXML(t) {
		if out, ch := e.xml(t, path, depth+1); ch {
			return wrap(out)
		}
		return v, true, false
	}
	if strings.Contains(t, "=") && looksLikeForm(t) {
		if out, ch := e.form(t, path, depth+1); ch {
			return wrap(out)
		}
		return v, true, false
	}
	if len(t) >= 6 && strings.Contains(t, "%") {
		if un, err := url.QueryUnescape(t); err == nil && un != t {
			in, keep, ch := e.str(un, join(path, "url-decoded"), depth+1)
			if !ch {
				return v, true, false
			}
			if !keep {
				in = ""
			}
			q := url.QueryEscape(in)
			if !strings.Contains(q, "%") && q != "" {
				// Nothing needs escaping: escape the first byte anyway, which
				// means the same, so the layer (and the paths below it) stay.
				q = "%" + strings.ToUpper(hex.EncodeToString([]byte{q[0]})) + q[1:]
			}
			return wrap(q)
		}
	}
	if len(t) >= 16 && len(t)%2 == 0 && isHex(t) {
		if b, err := hex.DecodeString(t); err == nil && plausible(b) {
			out, keep, ch := e.owned(b, join(path, "hex"), depth+1)
			if !ch {
				return v, true, false
			}
			if !keep {
				out = nil
			}
			h := hex.EncodeToString(out)
			if strings.ToUpper(t) == t {
				h = strings.ToUpper(h)
			}
			return wrap(h)
		}
	} else if len(t) >= 8 && !isHexDashed(t) && !hasUUID(t) {
		if enc, raw := base64Of(t); enc != nil {
			if b, err := enc.DecodeString(raw); err == nil && plausible(b) {
				out, keep, ch := e.owned(b, join(path, "base64"), depth+1)
				if !ch {
					return v, true, false
				}
				if !keep {
					out = nil
				}
				// Padding as found; a string that needed none is taken for padded.
				if strings.HasSuffix(t, "=") || len(t)%4 == 0 {
					enc = enc.WithPadding(base64.StdPadding)
				}
				return wrap(enc.EncodeToString(out))
			}
		}
	}
	return e.leaf(path, v)
}

// form is state.form, editing: pairs not edited are kept as they were sent.
func (e *editor) form(t, path string, depth int) (string, bool) {
	prefix := "form:"
	if path == "query" {
		prefix, path = "query:", ""
	}
	var b strings.Builder
	changed, n := false, 0
	for kv := range strings.SplitSeq(t, "&") {
		out := kv
		if kv != "" {
			k, v, _ := strings.Cut(kv, "=")
			uk, uv := k, v
			if x, err := url.QueryUnescape(k); err == nil {
				uk = x
			}
			if x, err := url.QueryUnescape(v); err == nil {
				uv = x
			}
			nv, keep, ch := e.str(uv, join(path, prefix+uk), depth)
			if !keep {
				changed = true
				continue
			}
			if ch {
				out, changed = k+"="+url.QueryEscape(nv), true
			}
		}
		if n > 0 {
			b.WriteByte('&')
		}
		n++
		b.WriteString(out)
	}
	if !changed {
		return t, false
	}
	return b.String(), true
}

// jwt edits the header and claims of an unsigned token (alg "none", no
// signature); a signed one cannot be re-encoded without its key.
func (e *editor) jwt(t, path string, depth int) (string, bool) {
	parts := strings.Split(t, ".")
	head, _ := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	claims, _ := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(head, &h) != nil || !strings.EqualFold(h.Alg, "none") || parts[2] != "" {
		e.fail("jwt", path, "its signature covers the payload")
		return t, false
	}
	changed := false
	for i, seg := range []struct {
		b     []byte
		layer string
	}{{head, "jwt:header"}, {claims, "jwt:claims"}} {
		if out, ok, ch := e.json(seg.b, join(path, seg.layer), depth); ok && ch {
			enc := base64.RawURLEncoding
			if strings.HasSuffix(parts[i], "=") {
				enc = base64.URLEncoding
			}
			parts[i], changed = enc.EncodeToString(out), true
		}
	}
	if !changed || e.err != nil {
		return t, false
	}
	return strings.Join(parts, "."), true
}

// isJWT is the test state.jwt makes: a header naming its algorithm, and
// claims that are JSON.
func isJWT(t string) bool {
	parts := strings.Split(t, ".")
	if len(parts) != 3 {
		return false
	}
	head, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	if err != nil || !bytes.Contains(head, []byte(`"alg"`)) {
		return false
	}
	claims, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	return err == nil && len(claims) > 0 && (claims[0] == '{' || claims[0] == '[') && json.Valid(claims) && json.Valid(head)
}

// wellFormedXML is whether state.xml would decode t.
func wellFormedXML(t string) bool {
	s := &state{}
	s.lim.defaults()
	return s.xml(t, "", 1)
}

// multipartParts is whether state.multipart would find a part in b.
func multipartParts(b []byte, boundary string) bool {
	s := &state{}
	s.lim.defaults()
	return s.multipart(b, boundary, "body", 1)
}

// multipart edits the parts of a multipart body: an edited part's content
// is replaced, a removed part goes with its delimiter; the rest, preamble,
// headers and epilogue, stays as it was.
func (e *editor) multipart(b []byte, boundary, path string, depth int) ([]byte, bool) {
	raw, ok := splitMultipart(b, boundary)
	r := multipart.NewReader(bytes.NewReader(b), boundary)
	var out []byte
	changed := false
	for i := 0; ok && e.err == nil; i++ {
		p, err := r.NextPart()
		if err != nil {
			ok = err == io.EOF && i == len(raw.parts)
			break
		}
		data, err := io.ReadAll(p)
		if err != nil || i >= len(raw.parts) || !bytes.Equal(data, b[raw.parts[i].body:raw.parts[i].end]) {
			ok = false // a part the reader changes (quoted-printable) or splits otherwise
			break
		}
		seg := "multipart:" + p.FormName()
		if fn := p.FileName(); fn != "" {
			seg += "(" + fn + ")"
		}
		part := raw.parts[i]
		if i == 0 {
			out = append(out, b[:part.delim]...)
		}
		nb, keep, ch := e.owned(data, join(path, seg), depth+1)
		switch {
		case !keep:
			changed = true
			continue
		case ch:
			if bytes.Contains(nb, []byte("--"+boundary)) {
				e.fail("multipart", join(path, seg), "the new content holds the boundary")
				return nil, false
			}
			out = append(append(out, b[part.delim:part.body]...), nb...)
			out, changed = append(out, b[part.end:part.next]...), true
		default:
			out = append(out, b[part.delim:part.next]...)
		}
	}
	if !ok {
		if e.under(path) {
			e.fail("multipart", path, "the parts cannot be told apart as the reader does")
		}
		return nil, false
	}
	if !changed || e.err != nil {
		return nil, false
	}
	return append(out, b[raw.close:]...), true
}

// rawPart is where a part of a multipart body is: its delimiter line, its
// content, its end (before the line break of the next delimiter), and the
// next delimiter.
type rawPart struct{ delim, body, end, next int }

type rawMultipart struct {
	parts []rawPart
	close int // the closing delimiter
}

// splitMultipart finds the parts of b by their delimiters (RFC 2046), lines
// ending in CRLF or LF as mime/multipart accepts them.
func splitMultipart(b []byte, boundary string) (rawMultipart, bool) {
	delim := []byte("--" + boundary)
	var m rawMultipart
	at := -1
	for i := 0; i+len(delim) <= len(b); {
		k := bytes.Index(b[i:], delim)
		if k < 0 {
			return m, false
		}
		if k += i; k == 0 || b[k-1] == '\n' {
			at = k
			break
		}
		i = k + 1
	}
	if at < 0 {
		return m, false
	}
	for {
		q := at + len(delim)
		if bytes.HasPrefix(b[q:], []byte("--")) {
			if n := len(m.parts); n > 0 {
				m.parts[n-1].next = at
			}
			m.close = at
			return m, len(m.parts) > 0
		}
		nl := bytes.IndexByte(b[q:], '\n')
		if nl < 0 {
			return m, false
		}
		head := q + nl + 1
		// The headers end at the first empty line.
		var body int
		switch {
		case bytes.HasPrefix(b[head:], []byte("\r\n")):
			body = head + 2
		case bytes.HasPrefix(b[head:], []byte("\n")):
			body = head + 1
		default:
			crlf, lf := bytes.Index(b[head:], []byte("\n\r\n")), bytes.Index(b[head:], []byte("\n\n"))
			switch {
			case crlf >= 0 && (lf < 0 || crlf < lf):
				body = head + crlf + 3
			case lf >= 0:
				body = head + lf + 2
			default:
				return m, false
			}
		}
		next := bytes.Index(b[body:], append([]byte("\n"), delim...))
		if next < 0 {
			return m, false
		}
		next += body
		end := next
		if end > body && b[end-1] == '\r' {
			end--
		}
		if n := len(m.parts); n > 0 {
			m.parts[n-1].next = at
		}
		m.parts = append(m.parts, rawPart{delim: at, body: body, end: end})
		at = next + 1
	}
}

// xml edits an XML document as state.xml walks it: an element's text or an
// attribute's value is replaced where it lies (removed, it becomes empty);
// the rest of the document is kept as it was.
func (e *editor) xml(t, path string, depth int) (string, bool) {
	d := xml.NewDecoder(strings.NewReader(t))
	type splice struct {
		start, end int
		repl       string
	}
	var splices []splice
	var stack []string
	here := func(leaf string) string {
		return join(path, "xml:"+strings.Join(append(stack[:len(stack):len(stack)], leaf), "."))
	}
	textStart := 0
	for e.err == nil {
		off0 := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return t, false
		}
		off1 := int(d.InputOffset())
		switch x := tok.(type) {
		case xml.StartElement:
			name := x.Name.Local
			if name == "plist" && len(stack) == 0 {
				if e.under(path) {
					e.fail("plist", path, "property lists are not re-encoded")
				}
				return t, false
			}
			if len(x.Attr) > 0 && e.under(here(name)) {
				attrs, ok := rawAttrs(t[off0:off1])
				if !ok || len(attrs) != len(x.Attr) {
					e.fail("xml", here(name), "its attributes cannot be told apart")
					return t, false
				}
				for i, a := range x.Attr {
					if a.Value == "" {
						continue
					}
					nv, keep, ch := e.str(a.Value, here(name)+"@"+a.Name.Local, depth)
					if !keep {
						nv, ch = "", true
					}
					if ch {
						var b strings.Builder
						xml.EscapeText(&b, []byte(nv))
						splices = append(splices, splice{off0 + attrs[i][0], off0 + attrs[i][1], b.String()})
					}
				}
			}
			stack = append(stack, name)
			textStart = off1
		case xml.EndElement:
			if len(stack) == 0 {
				return t, false
			}
			name := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			region := t[textStart:off0]
			textStart = off1
			p := here(name)
			if !e.under(p) {
				continue
			}
			// The text as state.xml reads it: all the character data since
			// the last tag.
			var text strings.Builder
			inner := xml.NewDecoder(strings.NewReader("<a>" + region + "</a>"))
			for {
				tk, err := inner.Token()
				if err != nil {
					break
				}
				if cd, ok := tk.(xml.CharData); ok {
					text.Write(cd)
				}
			}
			v := strings.TrimSpace(text.String())
			if v == "" {
				continue
			}
			nv, keep, ch := e.str(v, p, depth)
			if !keep {
				nv, ch = "", true
			}
			if !ch {
				continue
			}
			if strings.Contains(region, "<") { // a comment or CDATA among the text
				e.fail("xml", p, "its text is not plain character data")
				return t, false
			}
			trimmed := strings.TrimSpace(region)
			lead := strings.Index(region, trimmed)
			var b strings.Builder
			xml.EscapeText(&b, []byte(nv))
			start := off0 - len(region) + lead
			splices = append(splices, splice{start, start + len(trimmed), b.String()})
		}
	}
	if len(splices) == 0 || e.err != nil {
		return t, false
	}
	var b strings.Builder
	last := 0
	for _, s := range splices {
		b.WriteString(t[last:s.start])
		b.WriteString(s.repl)
		last = s.end
	}
	b.WriteString(t[last:])
	return b.String(), true
}

// rawAttrs returns where the value of each attribute of the start tag is
// (between its quotes), in order.
func rawAttrs(tag string) ([][2]int, bool) {
	i := 1
	for i < len(tag) && !isXMLSpace(tag[i]) && tag[i] != '>' && tag[i] != '/' {
		i++
	}
	var out [][2]int
	for {
		for i < len(tag) && isXMLSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] == '>' || tag[i] == '/' {
			return out, true
		}
		for i < len(tag) && tag[i] != '=' && !isXMLSpace(tag[i]) {
			i++
		}
		for i < len(tag) && isXMLSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] != '=' {
			return nil, false
		}
		i++
		for i < len(tag) && isXMLSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] != '"' && tag[i] != '\'' {
			return nil, false
		}
		q := tag[i]
		j := strings.IndexByte(tag[i+1:], q)
		if j < 0 {
			return nil, false
		}
		out = append(out, [2]int{i + 1, i + 1 + j})
		i += j + 2
	}
}

func isXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
