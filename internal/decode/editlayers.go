package decode

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"
)

// jsonEdit walks a JSON document as jsonWalker does, under the same paths,
// and writes it out as it goes: the raw bytes of what is not edited, the
// edited values re-encoded, removed members and elements left out with their
// separator.
type jsonEdit struct {
	jsonWalker
	e       *editor
	out     []byte
	changed bool
	// skip: a change names a value in the document, so Decode took it for
	// JSON: what no change is under is copied without being walked.
	skip bool
}

// json edits the document b; ok is false when b is not one JSON document
// (then nothing it met counts as edited).
func (e *editor) json(b []byte, path string, depth int) (out []byte, ok, changed bool) {
	mark := len(e.hits)
	w := jsonEdit{jsonWalker: jsonWalker{keyPath: keyPath{s: e.s, path: path, layer: "json"}, b: b, depth: depth}, e: e,
		out: make([]byte, 0, len(b)+16), skip: e.under(join(path, "json"))}
	del, err := w.value(0)
	if err == nil {
		end := w.i
		w.ws()
		if w.i != len(b) {
			err = errJSON
		}
		w.out = append(w.out, b[end:]...)
	}
	if err != nil || del {
		e.hits = e.hits[:mark]
		return nil, false, false
	}
	return w.out, true, w.changed
}

// value walks one value and writes it; del is true for a leaf to remove,
// which it does not write.
func (w *jsonEdit) value(nest int) (del bool, err error) {
	if nest > 256 {
		return false, errJSON
	}
	lead := w.i
	w.ws()
	w.out = append(w.out, w.b[lead:w.i]...)
	if w.i >= len(w.b) {
		return false, errJSON
	}
	start := w.i
	if w.skip && !w.e.underBytes(w.pathBytes()) {
		w.i = skipJSON(w.b, w.i)
		w.out = append(w.out, w.b[start:w.i]...)
		return false, nil
	}
	switch c := w.b[w.i]; {
	case c == '{':
		w.i++
		w.ws()
		if w.i < len(w.b) && w.b[w.i] == '}' {
			w.i++
			w.out = append(w.out, w.b[start:w.i]...)
			return false, nil
		}
		w.out = append(w.out, w.b[start:w.i]...)
		kept, sep := 0, 0
		for {
			w.ws()
			at := w.i
			k, err := w.key()
			if err != nil {
				return false, err
			}
			if err := w.expect(':'); err != nil {
				return false, err
			}
			mark := len(w.out)
			if kept > 0 {
				w.out = append(w.out, w.b[sep:at]...)
			}
			w.out = append(w.out, w.b[at:w.i]...)
			m := w.field(k)
			if done, err := w.member(nest, mark, m, &kept, &sep, '}'); err != nil || done {
				return false, err
			}
		}
	case c == '[':
		w.i++
		j := w.i
		w.ws()
		if w.i < len(w.b) && w.b[w.i] == ']' {
			w.i++
			w.out = append(w.out, w.b[start:w.i]...)
			return false, nil
		}
		w.i = j
		w.out = append(w.out, '[')
		kept, sep := 0, 0
		for n := 0; ; n++ {
			at := w.i
			mark := len(w.out)
			if kept > 0 {
				w.out = append(w.out, w.b[sep:at]...)
			}
			m := w.index(n)
			if done, err := w.member(nest, mark, m, &kept, &sep, ']'); err != nil || done {
				return false, err
			}
		}
	case c == '"':
		v, err := w.str()
		if err != nil {
			return false, err
		}
		p := w.here()
		if p == "" {
			return false, errStop
		}
		nv, keep, ch := w.e.str(v, p, w.depth)
		switch {
		case !keep:
			return true, nil
		case ch:
			w.out, w.changed = appendJSONString(w.out, nv), true
		default:
			w.out = append(w.out, w.b[start:w.i]...)
		}
		return false, nil
	case c == 't', c == 'f', c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(w.b)-w.i >= len(lit) && string(w.b[w.i:w.i+len(lit)]) == lit {
				w.i += len(lit)
				if lit == "null" {
					w.out = append(w.out, lit...)
					return false, nil
				}
				return w.scalar(lit, func(s string) bool { return s == "true" || s == "false" })
			}
		}
		return false, errJSON
	case c == '-' || c >= '0' && c <= '9':
		for w.i < len(w.b) && isNumChar(w.b[w.i]) {
			w.i++
		}
		return w.scalar(string(w.b[start:w.i]), isJSONNumber)
	}
	return false, errJSON
}

// member walks the value of an object member or array element whose lead
// (separator, key) was written from mark on, m being the path mark to cut
// back to; it drops the lead with a deleted value. done is true past end,
// the container's closing byte, which is then written.
func (w *jsonEdit) member(nest, mark, m int, kept, sep *int, end byte) (done bool, err error) {
	del, err := w.value(nest + 1)
	w.cut(m)
	if err != nil {
		return false, err
	}
	if del {
		w.out, w.changed = w.out[:mark], true
	} else {
		*kept++
	}
	*sep = w.i
	if done, err = w.next(end); err != nil {
		return false, err
	}
	if done {
		w.out = append(w.out, w.b[*sep:w.i]...)
	}
	return done, nil
}

// pathBytes is keyPath.here, not interned: valid until the next call.
func (k *keyPath) pathBytes() []byte {
	k.pbuf = k.pbuf[:0]
	if k.path != "" {
		k.pbuf = append(append(k.pbuf, k.path...), Sep...)
	}
	k.pbuf = append(k.pbuf, k.layer...)
	if len(k.jp) > 0 {
		k.pbuf = append(append(k.pbuf, ':'), k.jp...)
	}
	return k.pbuf
}

// underBytes is under for a path in bytes.
func (e *editor) underBytes(p []byte) bool {
	if e.err != nil {
		return false
	}
	for c := range e.changes {
		if len(c) >= len(p) && c[:len(p)] == string(p) {
			return true
		}
	}
	return false
}

// skipJSON returns the end of the value at i in valid JSON.
func skipJSON(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
			if depth < 0 {
				return i
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// scalar writes a number or a boolean, edited: raw when the replacement is
// one too (raw(repl)), else as a string.
func (w *jsonEdit) scalar(old string, raw func(string) bool) (bool, error) {
	p := w.here()
	if p == "" {
		return false, errStop
	}
	nv, keep, ch := w.e.leaf(p, old)
	switch {
	case !keep:
		return true, nil
	case !ch:
		w.out = append(w.out, old...)
	case raw(nv):
		w.out, w.changed = append(w.out, nv...), true
	default:
		w.out, w.changed = appendJSONString(w.out, nv), true
	}
	return false, nil
}

func isJSONNumber(s string) bool {
	if s == "" || s[0] == '+' || s[0] == '.' {
		return false
	}
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		return false
	}
	t := s
	if t[0] == '-' {
		t = t[1:]
	}
	last := s[len(s)-1]
	return len(t) > 0 && t[0] >= '0' && t[0] <= '9' && !(len(t) > 1 && t[0] == '0' && t[1] >= '0' && t[1] <= '9') &&
		last >= '0' && last <= '9' && !strings.ContainsAny(s, "xXpP_iInN")
}

// appendJSONString appends s as a JSON string, escaping only what JSON
// requires.
func appendJSONString(b []byte, s string) []byte {
	const hexd = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&0xf])
		}
		i++
	}
	return append(b, '"')
}

// proto edits a protobuf message as state.proto walks it: edited fields are
// written again, with their lengths and those of the messages around them.
func (e *editor) proto(b []byte, path, fields string, depth int) ([]byte, bool) {
	out := make([]byte, 0, len(b))
	changed := false
	for len(b) > 0 && e.err == nil {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		f := strconv.Itoa(int(num))
		if fields != "" {
			f = fields + "." + f
		}
		here := path + ":" + f
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			break
		}
		field, val := b[:n+m], b[n:n+m]
		b = b[n+m:]
		if !e.under(here) {
			out = append(out, field...)
			continue
		}
		switch typ {
		case protowire.VarintType, protowire.Fixed32Type, protowire.Fixed64Type:
			var old string
			switch typ {
			case protowire.VarintType:
				v, _ := protowire.ConsumeVarint(val)
				old = strconv.FormatUint(v, 10)
			case protowire.Fixed32Type:
				v, _ := protowire.ConsumeFixed32(val)
				old = strconv.FormatFloat(float64(math.Float32frombits(v)), 'g', -1, 32)
			default:
				v, _ := protowire.ConsumeFixed64(val)
				old = strconv.FormatFloat(math.Float64frombits(v), 'g', -1, 64)
			}
			nv, keep, ch := e.leaf(here, old)
			if !keep {
				changed = true
				continue
			}
			if !ch {
				out = append(out, field...)
				continue
			}
			enc, ok := protoNumber(typ, nv)
			if !ok {
				e.fail("protobuf", here, "a number field cannot hold the new value")
				return nil, false
			}
			out = protowire.AppendTag(out, num, typ)
			out, changed = append(out, enc...), true
		case protowire.BytesType:
			v, _ := protowire.ConsumeBytes(val)
			var nv []byte
			keep, ch := true, false
			switch {
			case printable(v) && len(v) > 0:
				var s string
				s, keep, ch = e.str(string(v), here, depth+1)
				nv = []byte(s)
			case protoValid(v, 1) && depth < e.s.lim.MaxDepth:
				nv, ch = e.proto(v, path, f, depth+1)
			default:
				nv, keep, ch = e.bytes(v, here, depth+1)
			}
			switch {
			case !keep:
				changed = true
			case ch:
				out = protowire.AppendTag(out, num, typ)
				out, changed = protowire.AppendBytes(out, nv), true
			default:
				out = append(out, field...)
			}
		default:
			out = append(out, field...)
		}
	}
	if !changed || e.err != nil {
		return nil, false
	}
	return append(out, b...), true
}

// protoNumber encodes the text s as a field of type typ.
func protoNumber(typ protowire.Type, s string) ([]byte, bool) {
	switch typ {
	case protowire.VarintType:
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return protowire.AppendVarint(nil, u), true
		}
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return protowire.AppendVarint(nil, uint64(i)), true
		}
	case protowire.Fixed32Type:
		if f, err := strconv.ParseFloat(s, 32); err == nil {
			return protowire.AppendFixed32(nil, math.Float32bits(float32(f))), true
		}
	case protowire.Fixed64Type:
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return protowire.AppendFixed64(nil, math.Float64bits(f)), true
		}
	}
	return nil, false
}

var (
	gzipWriters  sync.Pool // *gzip.Writer
	zlibWriters  sync.Pool // *zlib.Writer
	flateWriters sync.Pool // *flate.Writer
)

// compress applies coding to b again; orig, the stream as it was, says which
// framing "deflate" had (zlib or raw).
func compress(coding string, b, orig []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(b)/2 + 64)
	var err error
	switch coding {
	case "gzip", "x-gzip":
		zw, _ := gzipWriters.Get().(*gzip.Writer)
		if zw == nil {
			zw, _ = gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		} else {
			zw.Reset(&buf)
		}
		if _, err = zw.Write(b); err == nil {
			err = zw.Close()
		}
		gzipWriters.Put(zw)
	case "zlib":
		err = zlibTo(&buf, b)
	case "deflate":
		if isZlib(orig) {
			err = zlibTo(&buf, b)
			break
		}
		fw, _ := flateWriters.Get().(*flate.Writer)
		if fw == nil {
			fw, _ = flate.NewWriter(&buf, flate.BestSpeed)
		} else {
			fw.Reset(&buf)
		}
		if _, err = fw.Write(b); err == nil {
			err = fw.Close()
		}
		flateWriters.Put(fw)
	case "br":
		// The smallest window that holds b: a decoder with a small limit
		// refuses a stream that declares a large one.
		bw := brotli.NewWriterOptions(&buf, brotli.WriterOptions{Quality: 5, LGWin: windowBits(len(b), 10, 22)})
		if _, err = bw.Write(b); err == nil {
			err = bw.Close()
		}
	case "zstd":
		zw, zerr := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<windowBits(len(b), 10, 20)))
		if zerr != nil {
			return nil, zerr
		}
		if _, err = zw.Write(b); err == nil {
			err = zw.Close()
		}
	default:
		return nil, errors.New("unknown coding " + coding)
	}
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// windowBits is the log2 of the smallest window of at least n bytes, within
// [least, most].
func windowBits(n, least, most int) int {
	bits := least
	for bits < most && 1<<bits < n {
		bits++
	}
	return bits
}

func zlibTo(buf *bytes.Buffer, b []byte) error {
	zw, _ := zlibWriters.Get().(*zlib.Writer)
	if zw == nil {
		zw, _ = zlib.NewWriterLevel(buf, zlib.BestSpeed)
	} else {
		zw.Reset(buf)
	}
	defer zlibWriters.Put(zw)
	if _, err := zw.Write(b); err != nil {
		return err
	}
	return zw.Close()
}
