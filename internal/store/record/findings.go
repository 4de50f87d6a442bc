package record

import (
	"encoding/binary"
	"errors"
	"math"

	"phonehome/internal/flow"
)

// A flow's findings are kept packed in flows.findings: per finding, kind,
// value, path and method as varint-length-prefixed bytes, the confidence as a
// float64 (8 bytes, little endian) and context as one byte. Reading a session
// is then one row per flow instead of one more row per finding, which on a
// tracker-heavy session is most of the rows.

// PackFindings is the findings column of fs (nil for none).
func PackFindings(fs []flow.Finding) []byte {
	if len(fs) == 0 {
		return nil
	}
	n := 0
	for _, x := range fs {
		n += len(x.Kind) + len(x.Value) + len(x.Path) + len(x.Method.String()) + 4*binary.MaxVarintLen32 + 9
	}
	b := make([]byte, 0, n)
	for _, x := range fs {
		for _, s := range [...]string{string(x.Kind), x.Value, x.Path, x.Method.String()} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x.Confidence))
		c := byte(0)
		if x.Context {
			c = 1
		}
		b = append(b, c)
	}
	return b
}

// ErrPackedFindings: a findings column that does not unpack.
var ErrPackedFindings = errors.New("findings column: malformed")

// UnpackFindings reads a findings column.
func UnpackFindings(b []byte) ([]flow.Finding, error) {
	if len(b) == 0 {
		return nil, nil
	}
	// one string holds all the text; the findings' fields are slices of it
	var out []flow.Finding
	all := string(b)
	i := 0
	str := func() (string, error) {
		n, w := binary.Uvarint(b[i:])
		if w <= 0 || n > uint64(len(b)-i-w) {
			return "", ErrPackedFindings
		}
		i += w
		s := all[i : i+int(n)]
		i += int(n)
		return s, nil
	}
	for i < len(b) {
		var x flow.Finding
		var err error
		var kind, method string
		for _, p := range [...]*string{&kind, &x.Value, &x.Path, &method} {
			if *p, err = str(); err != nil {
				return nil, err
			}
		}
		x.Kind, x.Method = flow.Kind(kind), flow.ParseMethod(method)
		if len(b)-i < 9 || b[i+8] > 1 {
			return nil, ErrPackedFindings
		}
		x.Confidence = math.Float64frombits(binary.LittleEndian.Uint64(b[i:]))
		if math.IsNaN(x.Confidence) { // never packed: confidences are 0..1
			return nil, ErrPackedFindings
		}
		x.Context = b[i+8] == 1
		i += 9
		out = append(out, x)
	}
	return out, nil
}
