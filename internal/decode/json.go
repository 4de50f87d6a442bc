package decode

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The JSON walker emits each leaf with its JSON path as it is met, without
// building maps and without a separate validation pass. Malformed input stops
// it; the values it emitted are then taken back, so a string that only looked
// like JSON is decoded as something else. A walk that reaches a limit stops
// there, and what it found stands.

var (
	errJSON = errors.New("malformed JSON")
	// errStop stops a walk at a limit: the values are full, or what is left
	// of the copy allowance does not fit the next one.
	errStop = errors.New("walk stopped at a limit")
)

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
	if err == errStop && (s.full || len(s.res.Values) > mark) {
		return true // what was found before the limit stands
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
// back in every event of a batch and every request to an endpoint. It is ""
// when a new path does not fit the copy allowance (and that is noted).
func (k *keyPath) here() string {
	if need := len(k.path) + len(Sep) + len(k.layer) + 1 + len(k.jp); cap(k.pbuf) < need {
		k.pbuf = make([]byte, 0, need+32) // room for the next paths, which are as long
	}
	p, ok := k.s.intern(k.pathBytes())
	if !ok {
		k.s.overspent(join(k.path, k.layer))
	}
	return p
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
		if w.s.full {
			return errStop
		}
		v, err := w.str()
		if err != nil {
			return err
		}
		p := w.here()
		if p == "" {
			return errStop
		}
		w.s.strIn(v, p, key, parent, w.depth)
	case c == 't', c == 'f', c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(w.b)-w.i >= len(lit) && string(w.b[w.i:w.i+len(lit)]) == lit {
				w.i += len(lit)
				if lit == "null" {
					return nil
				}
				if w.s.full {
					return errStop
				}
				p := w.here()
				if p == "" {
					return errStop
				}
				w.s.add(Value{Path: p, Key: key, Parent: parent, Text: lit})
				return nil
			}
		}
		return errJSON
	case c == '-' || c >= '0' && c <= '9':
		if w.s.full {
			return errStop
		}
		start := w.i
		for w.i < len(w.b) && isNumChar(w.b[w.i]) {
			w.i++
		}
		p := w.here()
		if p == "" || !w.s.spendAt(w.i-start, p) {
			return errStop
		}
		w.s.add(Value{Path: p, Key: key, Parent: parent, Text: string(w.b[start:w.i]), Numeric: true})
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
			k, ok := w.s.intern(w.b[w.i+1 : j])
			if !ok {
				w.s.overspent(join(w.path, w.layer))
				return "", errStop
			}
			w.i = j + 1
			return k, nil
		case c == '\\' || c < 0x20:
			return w.str()
		}
	}
	return "", errJSON
}

// str reads a JSON string at w.i, which must be at its opening quote. It
// finds the string's end first, and charges its length before copying it.
func (w *jsonWalker) str() (string, error) {
	if w.i >= len(w.b) || w.b[w.i] != '"' {
		return "", errJSON
	}
	start, escaped := w.i+1, false
	end := start
	for ; end < len(w.b) && w.b[end] != '"'; end++ {
		switch c := w.b[end]; {
		case c == '\\':
			escaped = true
			end++
		case c < 0x20:
			return "", errJSON
		}
	}
	if end >= len(w.b) {
		return "", errJSON
	}
	if !w.s.spend(end - start) {
		w.s.overspent(join(w.path, w.layer))
		return "", errStop
	}
	w.i = start
	if escaped {
		return w.slowStr(start, end-start)
	}
	w.i = end + 1
	return string(w.b[start:end]), nil
}

// slowStr unescapes the string of size raw bytes at start.
func (w *jsonWalker) slowStr(start, size int) (string, error) {
	out := make([]byte, 0, size)
	for w.i < len(w.b) {
		c := w.b[w.i]
		switch {
		case c == '"':
			w.i++
			return unsafe.String(unsafe.SliceData(out), len(out)), nil // out is the string's alone
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
