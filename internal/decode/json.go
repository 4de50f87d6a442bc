package decode

import (
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// json walks a JSON document in place, without building maps: each leaf is
// emitted with its JSON path as it is met. The document is validated first, so
// the walker can trust its structure.
func (s *state) json(b []byte, path, key string, depth int) {
	if !json.Valid(b) {
		s.add(Value{Path: path, Key: key, Text: string(b)})
		return
	}
	s.validJSON(b, path, key, depth)
}

// validJSON walks a document already known to be valid.
func (s *state) validJSON(b []byte, path, key string, depth int) {
	w := jsonWalker{s: s, b: b, path: path, depth: depth}
	w.value("", key)
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

func (w *jsonWalker) here(jp string) string {
	switch {
	case jp == "":
		return join(w.path, "json")
	case w.path == "":
		return "json:" + jp
	}
	return w.path + Sep + "json:" + jp // one allocation per leaf
}

func (w *jsonWalker) value(jp, key string) {
	w.ws()
	switch c := w.b[w.i]; {
	case c == '{':
		w.i++
		for {
			w.ws()
			if w.b[w.i] == '}' {
				w.i++
				return
			}
			k := w.str()
			w.ws()
			w.i++ // ':'
			sub := k
			if jp != "" {
				sub = jp + "." + k
			}
			w.value(sub, k)
			w.ws()
			if w.b[w.i] == ',' {
				w.i++
				continue
			}
			w.i++ // '}'
			return
		}
	case c == '[':
		w.i++
		for n := 0; ; n++ {
			w.ws()
			if w.b[w.i] == ']' {
				w.i++
				return
			}
			w.value(jp+"["+strconv.Itoa(n)+"]", key)
			w.ws()
			if w.b[w.i] == ',' {
				w.i++
				continue
			}
			w.i++ // ']'
			return
		}
	case c == '"':
		w.s.str(w.str(), w.here(jp), key, w.depth)
	case c == 't':
		w.i += 4
		w.s.add(Value{Path: w.here(jp), Key: key, Text: "true"})
	case c == 'f':
		w.i += 5
		w.s.add(Value{Path: w.here(jp), Key: key, Text: "false"})
	case c == 'n':
		w.i += 4
	default: // number
		start := w.i
		for w.i < len(w.b) && isNumChar(w.b[w.i]) {
			w.i++
		}
		w.s.add(Value{Path: w.here(jp), Key: key, Text: string(w.b[start:w.i]), Numeric: true})
	}
}

func isNumChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// str reads a JSON string at w.i (which is at the opening quote) and unescapes it.
func (w *jsonWalker) str() string {
	w.i++
	start := w.i
	for w.b[w.i] != '"' {
		if w.b[w.i] == '\\' {
			return w.slowStr(start)
		}
		w.i++
	}
	s := string(w.b[start:w.i])
	w.i++
	return s
}

func (w *jsonWalker) slowStr(start int) string {
	out := append([]byte(nil), w.b[start:w.i]...)
	for {
		c := w.b[w.i]
		switch {
		case c == '"':
			w.i++
			return string(out)
		case c != '\\':
			out = append(out, c)
			w.i++
			continue
		}
		w.i++
		e := w.b[w.i]
		w.i++
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
		case 'u':
			r := w.hex4()
			if utf16.IsSurrogate(r) && w.i+6 <= len(w.b) && w.b[w.i] == '\\' && w.b[w.i+1] == 'u' {
				w.i += 2
				r = utf16.DecodeRune(r, w.hex4())
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/'
			out = append(out, e)
		}
	}
}

func (w *jsonWalker) hex4() rune {
	v, err := strconv.ParseUint(string(w.b[w.i:w.i+4]), 16, 32)
	w.i += 4
	if err != nil {
		return utf8.RuneError
	}
	return rune(v)
}
