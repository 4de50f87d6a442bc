package mitm

import (
	"errors"
	"fmt"
	"strconv"
)

// A tnetstring is LENGTH ":" DATA TYPE. mitmproxy adds ';' (UTF-8 text) to the
// standard types: ',' bytes, '#' integer, '^' float, '!' boolean, '~' null,
// ']' list, '}' dictionary.

const maxDepth = 64

// parseValue parses one tnetstring from b and returns it and the rest of b.
// Values are: []byte, string, int64, float64, bool, nil, []any, map[string]any.
func parseValue(b []byte, depth int) (any, []byte, error) {
	if depth > maxDepth {
		return nil, nil, errors.New("nested too deeply")
	}
	n, data, typ, rest, err := split(b)
	if err != nil {
		return nil, nil, err
	}
	_ = n
	switch typ {
	case ',':
		return data, rest, nil
	case ';':
		return string(data), rest, nil
	case '#':
		v, err := strconv.ParseInt(string(data), 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("integer %q: %w", data, err)
		}
		return v, rest, nil
	case '^':
		v, err := strconv.ParseFloat(string(data), 64)
		if err != nil {
			return nil, nil, fmt.Errorf("float %q: %w", data, err)
		}
		return v, rest, nil
	case '!':
		switch string(data) {
		case "true":
			return true, rest, nil
		case "false":
			return false, rest, nil
		}
		return nil, nil, fmt.Errorf("boolean %q", data)
	case '~':
		if len(data) != 0 {
			return nil, nil, errors.New("null with content")
		}
		return nil, rest, nil
	case ']':
		var list []any
		for len(data) > 0 {
			v, r, err := parseValue(data, depth+1)
			if err != nil {
				return nil, nil, err
			}
			list = append(list, v)
			data = r
		}
		return list, rest, nil
	case '}':
		m := map[string]any{}
		for len(data) > 0 {
			k, r, err := parseValue(data, depth+1)
			if err != nil {
				return nil, nil, err
			}
			var key string
			switch k := k.(type) {
			case string:
				key = k
			case []byte:
				key = string(k)
			default:
				return nil, nil, fmt.Errorf("dictionary key of type %T", k)
			}
			if len(r) == 0 {
				return nil, nil, fmt.Errorf("dictionary key %q without a value", key)
			}
			v, r2, err := parseValue(r, depth+1)
			if err != nil {
				return nil, nil, err
			}
			m[key] = v
			data = r2
		}
		return m, rest, nil
	}
	return nil, nil, fmt.Errorf("unknown type tag %q", typ)
}

// split reads the length prefix and returns the payload, type tag and rest.
func split(b []byte) (n int, data []byte, typ byte, rest []byte, err error) {
	i := 0
	for i < len(b) && i < 12 && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int(b[i]-'0')
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ':' {
		return 0, nil, 0, nil, errors.New("not a tnetstring (expected LENGTH:)")
	}
	i++
	if len(b)-i < n+1 {
		return 0, nil, 0, nil, errTruncated
	}
	return n, b[i : i+n], b[i+n], b[i+n+1:], nil
}

var errTruncated = errors.New("truncated: the file ends inside a value")
