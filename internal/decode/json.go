package decode

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON walker emits each leaf with its JSON path as it is met, without
// building maps and without a separate validation pass. Malformed input stops
// it; the values it emitted are then taken back, so a string that only looked
// like JSON is decoded as something else.

var errJSON = errors.New("malformed JSON")

// tryJSON walks b if it is one JSON document and reports whether it was.
func (s *state) tryJSON(b []byte, path, key string, depth int) bool {
	mark, opaque := len(s.res.Values), len(s.res.Opaque)
	w := jsonWalker{keyPath: keyPath{s: s, path: path, layer: "json"}, b: b, depth: depth}
	err := w.value(key, "", 0)
	if err == nil {
		w.ws()
		if w.i != len(b) {
			err = errJSON
		}
	}
	if err != nil {
		s.res.Values, s.res.Opaque = s.res.Values[:mark], s.res.Opaque[:opaque]
		return false
	}
	return true
}

type jsonWalker struct {
	keyPath
	b     []byte
	i     int
	depth int
}

// keyPath is the path of the value a walk is at, in JSON's style
// ("json:events[0].url"); property lists name their values the same way
// under their own layer ("plist:", "bplist:").
type keyPath struct {
	s     *state
	path  string // the layers above the document
	layer string // "json", "plist", ...
	jp    []byte // keys and indexes of the value being walked, grown and cut as the walk goes
	pbuf  []byte // scratch for building a leaf's full path
}

// field steps into the member k of an object; cut(mark) steps back out.
func (k *keyPath) field(name string) (mark int) {
	mark = len(k.jp)
	if mark > 0 {
		k.jp = append(k.jp, '.')
	}
	k.jp = append(k.jp, name...)
	return mark
}

// index steps into the element n of an array.
func (k *keyPath) index(n int) (mark int) {
	mark = len(k.jp)
	k.jp = append(strconv.AppendInt(append(k.jp, '['), int64(n), 10), ']')
	return mark
}

func (k *keyPath) cut(mark int) { k.jp = k.jp[:mark] }

// here is the full path of the current value, interned: the same paths come
// back in every event of a batch and every request to an endpoint.
func (k *keyPath) here() string {
	if len(k.jp) == 0 {
		return join(k.path, k.layer)
	}
	k.pbuf = k.pbuf[:0]
	if k.path != "" {
		k.pbuf = append(append(k.pbuf, k.path...), Sep...)
	}
	k.pbuf = append(append(append(k.pbuf, k.layer...), ':'), k.jp...)
	return k.s.intern(k.pbuf)
}

func (w *jsonWalker) ws() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// expect consumes c after white space.
func (w *jsonWalker) expect(c byte) error {
	w.ws()
	if w.i >= len(w.b) || w.b[w.i] != c {
		return errJSON
	}
	w.i++
	return nil
}

// value walks one JSON value; key is the field it is the value of, parent the
// field of the object around it.
func (w *jsonWalker) value(key, parent string, nest int) error {
	if nest > 256 {
		return errJSON
	}
	w.ws()
	if w.i >= len(w.b) {
		return errJSON
	}
	switch c := w.b[w.i]; {
	case c == '{':
		w.i++
		w.ws()
		if w.i < len(w.b) && w.b[w.i] == '}' {
			w.i++
			return nil
		}
		for {
			w.ws()
			k, err := w.key()
			if err != nil {
				return err
			}
			if err := w.expect(':'); err != nil {
				return err
			}
			mark := w.field(k)
			err = w.value(k, key, nest+1)
			w.cut(mark)
			if err != nil {
				return err
			}
			if done, err := w.next('}'); done || err != nil {
				return err
			}
		}
	case c == '[':
		w.i++
		w.ws()
		if w.i < len(w.b) && w.b[w.i] == ']' {
			w.i++
			return nil
		}
		for n := 0; ; n++ {
			mark := w.index(n)
			err := w.value(key, parent, nest+1)
			w.cut(mark)
			if err != nil {
				return err
			}
			if done, err := w.next(']'); done || err != nil {
				return err
			}
		}
	case c == '"':
		v, err := w.str()
		if err != nil {
			return err
		}
		w.s.strIn(v, w.here(), key, parent, w.depth)
	case c == 't', c == 'f', c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(w.b)-w.i >= len(lit) && string(w.b[w.i:w.i+len(lit)]) == lit {
				w.i += len(lit)
				if lit != "null" {
					w.s.add(Value{Path: w.here(), Key: key, Parent: parent, Text: lit})
				}
				return nil
			}
		}
		return errJSON
	case c == '-' || c >= '0' && c <= '9':
		start := w.i
		for w.i < len(w.b) && isNumChar(w.b[w.i]) {
			w.i++
		}
		w.s.add(Value{Path: w.here(), Key: key, Parent: parent, Text: string(w.b[start:w.i]), Numeric: true})
	default:
		return errJSON
	}
	return nil
}

// next consumes the comma between members or the closing bracket; done is
// true after the closing bracket.
func (w *jsonWalker) next(closing byte) (done bool, err error) {
	w.ws()
	if w.i >= len(w.b) {
		return false, errJSON
	}
	switch w.b[w.i] {
	case ',':
		w.i++
		return false, nil
	case closing:
		w.i++
		return true, nil
	}
	return false, errJSON
}

func isNumChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// key reads an object key: interned when it needs no unescaping.
func (w *jsonWalker) key() (string, error) {
	if w.i >= len(w.b) || w.b[w.i] != '"' {
		return "", errJSON
	}
	for j := w.i + 1; j < len(w.b); j++ {
		switch c := w.b[j]; {
		case c == '"':
			k := w.s.intern(w.b[w.i+1 : j])
			w.i = j + 1
			return k, nil
		case c == '\\' || c < 0x20:
			return w.str()
		}
	}
	return "", errJSON
}

// str reads a JSON string at w.i, which must be at its opening quote.
func (w *jsonWalker) str() (string, error) {
	if w.i >= len(w.b) || w.b[w.i] != '"' {
		return "", errJSON
	}
	w.i++
	start := w.i
	for w.i < len(w.b) {
		switch c := w.b[w.i]; {
		case c == '"':
			s := string(w.b[start:w.i])
			w.i++
			return s, nil
		case c == '\\':
			return w.slowStr(start)
		case c < 0x20:
			return "", errJSON
		}
		w.i++
	}
	return "", errJSON
}

func (w *jsonWalker) slowStr(start int) (string, error) {
	out := append([]byte(nil), w.b[start:w.i]...)
	for w.i < len(w.b) {
		c := w.b[w.i]
		switch {
		case c == '"':
			w.i++
			return string(out), nil
		case c < 0x20:
			return "", errJSON
		case c != '\\':
			out = append(out, c)
			w.i++
			continue
		}
		if w.i+1 >= len(w.b) {
			return "", errJSON
		}
		e := w.b[w.i+1]
		w.i += 2
		switch e {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case '"', '\\', '/':
			out = append(out, e)
		case 'u':
			r, ok := w.hex4()
			if !ok {
				return "", errJSON
			}
			if utf16.IsSurrogate(r) && w.i+6 <= len(w.b) && w.b[w.i] == '\\' && w.b[w.i+1] == 'u' {
				w.i += 2
				r2, ok := w.hex4()
				if !ok {
					return "", errJSON
				}
				r = utf16.DecodeRune(r, r2)
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", errJSON
		}
	}
	return "", errJSON
}

func (w *jsonWalker) hex4() (rune, bool) {
	if w.i+4 > len(w.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(w.b[w.i:w.i+4]), 16, 32)
	w.i += 4
	return rune(v), err == nil
}
