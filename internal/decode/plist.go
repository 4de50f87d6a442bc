package decode

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
)

// Apple property lists, XML or binary, name their values by their keys the
// way JSON paths do: "plist:location.lat", "bplist:apps[2]". Strings are
// decoded further (base64, JSON, ...), data blobs too; NSKeyedArchiver's
// object references (UIDs) stay numbers.

var errPlist = errors.New("malformed property list")

// plistEpoch is where property-list dates count from.
var plistEpoch = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// plistDate formats a property-list date (seconds since 2001).
func plistDate(secs float64) string {
	if math.IsNaN(secs) || math.Abs(secs) > 9e9 {
		return strconv.FormatFloat(secs, 'g', -1, 64)
	}
	return plistEpoch.Add(time.Duration(secs * float64(time.Second))).Format(time.RFC3339)
}

// plistFrame is a dict or an array being walked.
type plistFrame struct {
	dict         bool
	key          string // the dict's pending key
	hasKey       bool
	n            int    // the array's next index
	name, parent string // the key the container is under, and the one around it
	mark         int    // where the container's own path ends
}

// xmlPlist walks an XML property list after its <plist> tag, up to and
// including </plist>.
func (s *state) xmlPlist(d *xml.Decoder, path string, depth int) error {
	w := keyPath{s: s, path: path, layer: "plist"}
	var stack []plistFrame
	var text strings.Builder
	// enter steps into the place of the next value: the pending key of a
	// dict, the next index of an array, or the list's one root value.
	enter := func() (mark int, key, parent string, err error) {
		if len(stack) == 0 {
			return len(w.jp), "", "", nil
		}
		f := &stack[len(stack)-1]
		if !f.dict {
			f.n++
			return w.index(f.n - 1), f.name, f.parent, nil
		}
		if !f.hasKey {
			return 0, "", "", errPlist
		}
		f.hasKey = false
		return w.field(f.key), f.key, f.name, nil
	}
	for {
		tok, err := d.Token()
		if err != nil || len(stack) > 64 {
			return errPlist
		}
		if s.full || !s.spendAt(tokenCost(tok), path) {
			return errStop
		}
		switch x := tok.(type) {
		case xml.StartElement:
			text.Reset()
			switch x.Name.Local {
			case "dict", "array":
				mark, key, parent, err := enter()
				if err != nil {
					return err
				}
				stack = append(stack, plistFrame{dict: x.Name.Local == "dict", name: key, parent: parent, mark: mark})
			case "key":
				if len(stack) == 0 || !stack[len(stack)-1].dict {
					return errPlist
				}
			case "string", "integer", "real", "date", "data", "true", "false":
			default:
				return errPlist
			}
		case xml.CharData:
			text.Write(x)
		case xml.EndElement:
			v := text.String()
			text.Reset()
			switch x.Name.Local {
			case "plist":
				if len(stack) != 0 {
					return errPlist
				}
				return nil
			case "dict", "array":
				if len(stack) == 0 {
					return errPlist
				}
				w.cut(stack[len(stack)-1].mark)
				stack = stack[:len(stack)-1]
			case "key":
				if len(stack) == 0 || !stack[len(stack)-1].dict {
					return errPlist
				}
				f := &stack[len(stack)-1]
				f.key, f.hasKey = v, true
			default:
				mark, key, parent, err := enter()
				if err != nil {
					return err
				}
				here := w.here()
				if here == "" {
					return errStop
				}
				switch kind := x.Name.Local; kind {
				case "string":
					if v = strings.TrimSpace(v); v != "" {
						s.strIn(v, here, key, parent, depth)
					}
				case "data": // bytes, written in base64 often wrapped over lines
					if !s.spendAt(len(v)+base64.StdEncoding.DecodedLen(len(v)), here) {
						return errStop
					}
					v = strings.Map(dropSpace, v)
					if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) > 0 {
						s.owned(b, here, key, depth+1)
					} else if v != "" {
						s.strIn(v, here, key, parent, depth)
					}
				case "true", "false":
					s.add(Value{Path: here, Key: key, Parent: parent, Text: kind})
				case "real": // written as the binary form's are: 35, not 35.0
					v = strings.TrimSpace(v)
					if f, err := strconv.ParseFloat(v, 64); err == nil {
						v = strconv.FormatFloat(f, 'g', -1, 64)
					}
					s.add(Value{Path: here, Key: key, Parent: parent, Text: v, Numeric: true})
				default:
					s.add(Value{Path: here, Key: key, Parent: parent, Text: strings.TrimSpace(v), Numeric: kind != "date"})
				}
				w.cut(mark)
			}
		}
	}
}

// dropSpace is for strings.Map: it drops white space.
func dropSpace(r rune) rune {
	if unicode.IsSpace(r) {
		return -1
	}
	return r
}

// isBplist reports whether b starts like a binary property list.
func isBplist(b []byte) bool { return len(b) >= 8+32 && string(b[:8]) == "bplist00" }

// bplist walks a binary property list. It reports false, adding nothing,
// when b is not a well-formed one.
func (s *state) bplist(b []byte, path string, depth int) bool {
	if !isBplist(b) {
		return false
	}
	t := b[len(b)-32:]
	r := bplistReader{b: b[:len(b)-32], offSize: int(t[6]), refSize: int(t[7]), depth: depth}
	n, top, table := binary.BigEndian.Uint64(t[8:]), binary.BigEndian.Uint64(t[16:]), binary.BigEndian.Uint64(t[24:])
	size := uint64(len(r.b))
	if r.offSize < 1 || r.offSize > 8 || r.refSize < 1 || r.refSize > 8 || n == 0 || top >= n ||
		table < 9 || table > size || (size-table)/uint64(r.offSize) < n {
		return false
	}
	r.n, r.table = int(n), int(table)
	if !s.spendAt(r.n, path) {
		return true // a list, too big to walk
	}
	r.open = make([]bool, r.n)
	// Objects may be shared; a list made to share them exponentially
	// stops here rather than walking forever.
	r.budget = 4*r.n + s.lim.MaxValues
	r.keyPath = keyPath{s: s, path: path, layer: "bplist"}
	mark, opaque := len(s.res.Values), len(s.res.Opaque)
	if err := r.walk(int(top), "", "", 0); err != nil && err != errBudget && err != errStop {
		s.res.Values, s.res.Opaque = s.res.Values[:mark], s.res.Opaque[:opaque]
		return false
	}
	return true
}

var errBudget = errors.New("property list walk over budget")

type bplistReader struct {
	keyPath
	b                []byte // the list without its trailer
	offSize, refSize int
	n, table         int
	open             []bool // containers being walked: a reference back to one is a cycle
	budget           int
	depth            int
}

// uint reads a big-endian unsigned number of size bytes at off.
func (r *bplistReader) uint(off, size int) (uint64, error) {
	if off < 0 || size > 8 || off+size > len(r.b) {
		return 0, errPlist
	}
	var v uint64
	for _, c := range r.b[off : off+size] {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// object returns where object ref starts.
func (r *bplistReader) object(ref int) (int, error) {
	if ref < 0 || ref >= r.n {
		return 0, errPlist
	}
	off, err := r.uint(r.table+ref*r.offSize, r.offSize)
	if err != nil || off < 8 || off >= uint64(r.table) {
		return 0, errPlist
	}
	return int(off), nil
}

// ref reads the i-th object reference of a container whose references start at off.
func (r *bplistReader) ref(off, i int) (int, error) {
	v, err := r.uint(off+i*r.refSize, r.refSize)
	if err != nil || v >= uint64(r.n) {
		return 0, errPlist
	}
	return int(v), nil
}

// count reads the length of the object whose marker is at off; next is where
// its contents start.
func (r *bplistReader) count(off int) (count, next int, err error) {
	if lo := int(r.b[off] & 0x0f); lo != 0x0f {
		return lo, off + 1, nil
	}
	if off+1 >= len(r.b) || r.b[off+1]>>4 != 1 || r.b[off+1]&0x0f > 3 {
		return 0, 0, errPlist
	}
	size := 1 << (r.b[off+1] & 0x0f)
	v, err := r.uint(off+2, size)
	if err != nil || v > uint64(len(r.b)) {
		return 0, 0, errPlist
	}
	return int(v), off + 2 + size, nil
}

// span checks that n items of size bytes fit at off and returns their end.
func (r *bplistReader) span(off, n, size int) (int, error) {
	if n > len(r.b)/size || off+n*size > r.table {
		return 0, errPlist
	}
	return off + n*size, nil
}

// str reads a string object (ASCII or UTF-16).
func (r *bplistReader) str(ref int) (string, error) {
	off, err := r.object(ref)
	if err != nil {
		return "", err
	}
	n, at, err := r.count(off)
	if err != nil {
		return "", err
	}
	switch r.b[off] >> 4 {
	case 0x5:
		end, err := r.span(at, n, 1)
		if err != nil {
			return "", err
		}
		v, ok := r.s.intern(r.b[at:end])
		if !ok {
			r.s.overspent(join(r.path, r.layer))
			return "", errStop
		}
		return v, nil
	case 0x6:
		if _, err := r.span(at, n, 2); err != nil {
			return "", err
		}
		if !r.s.spend(9 * n) { // the UTF-16, the runes, the string
			r.s.overspent(join(r.path, r.layer))
			return "", errStop
		}
		u := make([]uint16, n)
		for i := range u {
			u[i] = binary.BigEndian.Uint16(r.b[at+2*i:])
		}
		return string(utf16.Decode(u)), nil
	}
	return "", errPlist
}

// walk emits the values of object ref, which is the value of key inside
// the container named parent.
func (r *bplistReader) walk(ref int, key, parent string, nest int) error {
	if r.s.full {
		return errStop
	}
	if r.budget--; r.budget < 0 {
		r.s.limit("shared objects", r.here())
		return errBudget
	}
	if nest > 64 || r.open[ref] {
		return errPlist
	}
	off, err := r.object(ref)
	if err != nil {
		return err
	}
	s, marker := r.s, r.b[off]
	var stop error // set when a path does not fit the copy allowance
	add := func(text string, numeric bool) {
		if p := r.here(); p != "" {
			s.add(Value{Path: p, Key: key, Parent: parent, Text: text, Numeric: numeric})
		} else {
			stop = errStop
		}
	}
	switch lo := int(marker & 0x0f); marker >> 4 {
	case 0x0:
		switch marker {
		case 0x08:
			add("false", false)
		case 0x09:
			add("true", false)
		case 0x00, 0x0f: // null, fill
		default:
			return errPlist
		}
	case 0x1: // integer of 1, 2, 4, 8 or 16 bytes; 8 bytes are signed
		size := 1 << lo
		if lo > 4 || off+1+size > r.table {
			return errPlist
		}
		var hi, v uint64
		if size == 16 {
			hi, v = binary.BigEndian.Uint64(r.b[off+1:]), binary.BigEndian.Uint64(r.b[off+9:])
		} else {
			v, _ = r.uint(off+1, size)
		}
		switch {
		case size == 8 || size == 16 && hi == math.MaxUint64 && v >= 1<<63:
			add(strconv.FormatInt(int64(v), 10), true)
		case hi == 0:
			add(strconv.FormatUint(v, 10), true)
		default: // beyond 64 bits
			add(hex.EncodeToString(r.b[off+1:off+17]), true)
		}
	case 0x2, 0x3: // real of 4 or 8 bytes; a date is a real of 8
		if marker>>4 == 0x3 && lo != 3 || lo != 2 && lo != 3 || off+1+(1<<lo) > r.table {
			return errPlist
		}
		v, _ := r.uint(off+1, 1<<lo)
		f := math.Float64frombits(v)
		if lo == 2 {
			f = float64(math.Float32frombits(uint32(v)))
		}
		if marker>>4 == 0x3 {
			add(plistDate(f), false)
		} else {
			add(strconv.FormatFloat(f, 'g', -1, 64), true)
		}
	case 0x4: // data
		n, at, err := r.count(off)
		if err != nil {
			return err
		}
		end, err := r.span(at, n, 1)
		if err != nil {
			return err
		}
		if n > 0 {
			p := r.here()
			if p == "" {
				return errStop
			}
			s.bytes(r.b[at:end], p, key, r.depth+1)
		}
	case 0x5, 0x6:
		v, err := r.str(ref)
		if err != nil {
			return err
		}
		if v != "" {
			p := r.here()
			if p == "" {
				return errStop
			}
			s.strIn(v, p, key, parent, r.depth)
		}
	case 0x8: // UID: an NSKeyedArchiver reference
		v, err := r.uint(off+1, lo+1)
		if err != nil || off+2+lo > r.table {
			return errPlist
		}
		add(strconv.FormatUint(v, 10), true)
	case 0xA, 0xC: // array, set
		n, at, err := r.count(off)
		if err != nil {
			return err
		}
		if _, err := r.span(at, n, r.refSize); err != nil {
			return err
		}
		r.open[ref] = true
		for i := 0; i < n; i++ {
			el, err := r.ref(at, i)
			if err != nil {
				return err
			}
			mark := r.index(i)
			err = r.walk(el, key, parent, nest+1)
			r.cut(mark)
			if err != nil {
				return err
			}
		}
		r.open[ref] = false
	case 0xD: // dict: n key references, then n value references
		n, at, err := r.count(off)
		if err != nil {
			return err
		}
		if _, err := r.span(at, 2*n, r.refSize); err != nil {
			return err
		}
		r.open[ref] = true
		for i := 0; i < n; i++ {
			kr, err := r.ref(at, i)
			if err != nil {
				return err
			}
			vr, err := r.ref(at, n+i)
			if err != nil {
				return err
			}
			k, err := r.str(kr)
			if err != nil {
				return err
			}
			mark := r.field(k)
			err = r.walk(vr, k, key, nest+1)
			r.cut(mark)
			if err != nil {
				return err
			}
		}
		r.open[ref] = false
	default:
		return errPlist
	}
	return stop
}

// skipRest reads what follows a document's root element: only white space,
// comments and processing instructions may.
func skipRest(d *xml.Decoder) error {
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch x := tok.(type) {
		case xml.CharData:
			if strings.TrimSpace(string(x)) != "" {
				return errPlist
			}
		case xml.Comment, xml.ProcInst, xml.Directive:
		default:
			return errPlist
		}
	}
}
