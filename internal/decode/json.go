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
	w := jsonWalker{s: s, b: b, path: path, depth: depth}
	err := w.value("", key, "", 0)
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
	s     *state
	b     []byte
	i     int
	path  string
	depth int
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

func (w *jsonWalker) here(jp string) string {
	switch {
	case jp == "":
		return join(w.path, "json")
	case w.path == "":
		return "json:" + jp
	}
	return w.path + Sep + "json:" + jp // one allocation per leaf
}

// value walks one JSON value; key is the field it is the value of, parent the
// field of the object around it.
func (w *jsonWalker) value(jp, key, parent string, nest int) error {
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
			k, err := w.str()
			if err != nil {
				return err
			}
			if err := w.expect(':'); err != nil {
				return err
			}
			sub := k
			if jp != "" {
				sub = jp + "." + k
			}
			if err := w.value(sub, k, key, nest+1); err != nil {
				return err
			}
			w.ws()
			if w.i >= len(w.b) {
				return errJSON
			}
			switch w.b[w.i] {
			case ',':
				w.i++
			case '}':
				w.i++
				return nil
			default:
				return errJSON
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
			if err := w.value(jp+"["+strconv.Itoa(n)+"]", key, parent, nest+1); err != nil {
				return err
			}
			w.ws()
			if w.i >= len(w.b) {
				return errJSON
			}
			switch w.b[w.i] {
			case ',':
				w.i++
			case ']':
				w.i++
				return nil
			default:
				return errJSON
			}
		}
	case c == '"':
		v, err := w.str()
		if err != nil {
			return err
		}
		w.s.strIn(v, w.here(jp), key, parent, w.depth)
	case c == 't', c == 'f', c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(w.b)-w.i >= len(lit) && string(w.b[w.i:w.i+len(lit)]) == lit {
				w.i += len(lit)
				if lit != "null" {
					w.s.add(Value{Path: w.here(jp), Key: key, Parent: parent, Text: lit})
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
		w.s.add(Value{Path: w.here(jp), Key: key, Parent: parent, Text: string(w.b[start:w.i]), Numeric: true})
	default:
		return errJSON
	}
	return nil
}

func isNumChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
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
