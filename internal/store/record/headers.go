package record

import (
	"database/sql"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"phonehome/internal/flow"
)

// HeadersJSON writes headers as [["name","value"],...]. Strings with nothing
// to escape (nearly all) are copied as they are; the rest go through
// encoding/json, which also mends invalid UTF-8.
func HeadersJSON(h flow.Headers) any {
	if h == nil {
		return nil
	}
	n := 2
	for _, x := range h {
		n += len(x.Name) + len(x.Value) + 8
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, x := range h {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = appendJSONString(b, x.Name)
		b = append(b, ',')
		b = appendJSONString(b, x.Value)
		b = append(b, ']')
	}
	b = append(b, ']')
	return string(b)
}

func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		// what encoding/json would escape: quotes, backslashes, control
		// characters, <, > and &, and anything beyond ASCII (checked there)
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// ParseHeaders reads a headers column.
func ParseHeaders(s sql.NullString) flow.Headers {
	if !s.Valid {
		return nil
	}
	if h, ok := ParseHeadersFast(s.String); ok {
		return h
	}
	var pairs [][2]string
	if json.Unmarshal([]byte(s.String), &pairs) != nil {
		return nil
	}
	h := make(flow.Headers, len(pairs))
	for i, p := range pairs {
		h[i] = flow.Header{Name: p[0], Value: p[1]}
	}
	return h
}

// ParseHeadersFast reads [["name","value"],...] as HeadersJSON writes it when
// no string holds an escape: names and values are slices of s, no copying.
// Anything else is left to encoding/json.
func ParseHeadersFast(s string) (flow.Headers, bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' || !utf8.ValidString(s) {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] < 0x20 { // escapes and control characters: left to encoding/json
			return nil, false
		}
	}
	h := make(flow.Headers, 0, strings.Count(s, "],[")+1)
	i := 1
	str := func() (string, bool) {
		if i >= len(s) || s[i] != '"' {
			return "", false
		}
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			return "", false
		}
		v := s[i+1 : i+1+j]
		i += j + 2
		return v, true
	}
	if s == "[]" {
		return h, true
	}
	for {
		if i >= len(s) || s[i] != '[' {
			return nil, false
		}
		i++
		name, ok := str()
		if !ok || i >= len(s) || s[i] != ',' {
			return nil, false
		}
		i++
		value, ok := str()
		if !ok || i >= len(s) || s[i] != ']' {
			return nil, false
		}
		i++
		h = append(h, flow.Header{Name: name, Value: value})
		if i == len(s)-1 {
			return h, true // the closing bracket
		}
		if i >= len(s) || s[i] != ',' {
			return nil, false
		}
		i++
	}
}
