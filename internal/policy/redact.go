package policy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"phonehome/internal/decode"
	"phonehome/internal/detect/pii"
	"phonehome/internal/flow"
)

// ErrNotRedacted is what Redact's error wraps when a value of a kind asked
// for would still be forwarded: a layer that cannot be re-encoded (then the
// error wraps a *decode.LayerError too), a path that no longer names a value,
// or a body that was not captured whole. The caller applies its fallback
// (block, or forward unchanged with a note); it never gets a half-redacted
// request.
var ErrNotRedacted = errors.New("policy: value not redacted")

// Redact returns a copy of f's request without the values of f's findings
// whose kind is in kinds, wherever they sit and however they are wrapped
// (package decode re-encodes every layer above them), and the list of what
// was taken out. f.Request is never changed (CopyRequest's semantics); the
// findings must have been made on it (detect.Inspect).
//
// Without fake a value is removed: its field, pair, member, header or cookie
// goes, or, inside a longer text, the value is cut out of it. With fake it
// is replaced by a fake of the same shape (a Luhn-valid IMEI, a UUID-shaped
// advertising ID, 16 hex digits for an Android ID, a coordinate a few km
// off), the same for the same device and value throughout the run, and not
// derivable from the real one (an HMAC under a secret of the run).
//
// A value also found at other paths than its finding's (the same IMEI in a
// header and in the body) is taken out there too. The copy is decoded again
// before it is returned: if any decoded value still holds a real value, the
// result is an error wrapping ErrNotRedacted, never the request.
//
// With no finding of the kinds, the copy is the request unchanged and the
// list is empty. A nil request gives nil.
func Redact(f *flow.Flow, kinds []flow.Kind, fake bool) (*flow.Request, []flow.Redaction, error) {
	r := f.Request
	if r == nil {
		return nil, nil, nil
	}
	device := f.Client.Addr.String()
	var secrets []redactSecret
	var redactions []flow.Redaction
	paths := map[string][]int{} // path → indexes into secrets
	addPath := func(p string, i int) {
		if !slices.Contains(paths[p], i) {
			paths[p] = append(paths[p], i)
		}
	}
	for _, fd := range f.Findings {
		if !slices.Contains(kinds, fd.Kind) || fd.Path == "" {
			continue
		}
		if !slices.Contains(redactions, flow.Redaction{Kind: fd.Kind, Path: fd.Path}) {
			redactions = append(redactions, flow.Redaction{Kind: fd.Kind, Path: fd.Path})
		}
		vals := []string{fd.Value}
		if fd.Kind == pii.Location && strings.Count(fd.Value, ",") == 1 { // a pair: "lat,lng" at the latitude's path
			a, b, _ := strings.Cut(fd.Value, ",")
			vals = []string{strings.TrimSpace(a), strings.TrimSpace(b)}
		}
		for _, v := range vals {
			if v == "" {
				continue
			}
			i := slices.IndexFunc(secrets, func(s redactSecret) bool { return s.value == v })
			if i < 0 {
				i = len(secrets)
				secrets = append(secrets, redactSecret{kind: fd.Kind, value: v})
			}
			addPath(fd.Path, i)
		}
	}
	if len(redactions) == 0 {
		return CopyRequest(r), nil, nil
	}
	dec, _ := redactDecoders.Get().(*decode.Decoder)
	if dec == nil {
		dec = new(decode.Decoder)
	}
	defer redactDecoders.Put(dec)
	holds := func(text string, s redactSecret) bool {
		return text == s.value || len(s.value) >= redactMinSearch && strings.Contains(text, s.value)
	}
	// Edit the paths of the findings and decode the copy. Where a real value
	// is still there (the same value at a path detection did not name), find
	// every path the values are at in the observed request, edit them all,
	// and check again.
	var edited decode.Request
	for round := 0; ; round++ {
		var err error
		if edited, err = redactEdit(r, paths, secrets, device, fake); err != nil {
			return nil, nil, err
		}
		left := ""
		for _, v := range dec.Decode(edited, decode.Limits{}).Values {
			for _, s := range secrets {
				if left == "" && holds(v.Text, s) {
					left = v.Path + " still holds a " + string(s.kind)
				}
			}
		}
		if left == "" {
			break
		}
		if round > 0 {
			return nil, nil, fmt.Errorf("%w: %s", ErrNotRedacted, left)
		}
		for _, v := range dec.Decode(decode.FromFlow(r), decode.Limits{}).Values {
			for i, s := range secrets {
				if holds(v.Text, s) {
					addPath(v.Path, i)
				}
			}
		}
	}
	out := CopyRequest(r)
	out.URL = edited.URL
	out.Headers = make(flow.Headers, 0, len(edited.Headers))
	for _, h := range edited.Headers {
		out.Headers = append(out.Headers, flow.Header{Name: h.Name, Value: h.Value})
	}
	out.Body.Data = append(out.Body.Data[:0], edited.Body...)
	out.Body.Size = int64(len(out.Body.Data))
	return out, redactions, nil
}

// redactEdit edits r at paths: there, the secrets named are removed, or
// replaced by their fakes.
func redactEdit(r *flow.Request, paths map[string][]int, secrets []redactSecret, device string, fake bool) (decode.Request, error) {
	if r.Body.Truncated || r.Body.Incomplete {
		for p := range paths {
			if strings.HasPrefix(p, "body") {
				return decode.Request{}, fmt.Errorf("%w: the body was not captured whole (%s)", ErrNotRedacted, p)
			}
		}
	}
	changes := make(map[string]decode.Change, len(paths))
	for p, idx := range paths {
		changes[p] = func(old string) (string, bool) {
			out, found := old, false
			for _, i := range idx {
				s := secrets[i]
				switch {
				case out == s.value:
					if !fake {
						return "", false
					}
					return fakeOf(s.kind, device, s.value), true
				case strings.Contains(out, s.value):
					repl := ""
					if fake {
						repl = fakeOf(s.kind, device, s.value)
					}
					out, found = strings.ReplaceAll(out, s.value, repl), true
				}
			}
			if found {
				return out, true
			}
			// The finding names the value as detection normalised it: the
			// whole of it goes.
			if !fake {
				return "", false
			}
			return fakeOf(secrets[idx[0]].kind, device, old), true
		}
	}
	edited, missed, err := decode.Edit(decode.FromFlow(r), changes, decode.Limits{})
	if err != nil {
		return decode.Request{}, fmt.Errorf("%w: %w", ErrNotRedacted, err)
	}
	if len(missed) > 0 {
		return decode.Request{}, fmt.Errorf("%w: no value at %s", ErrNotRedacted, strings.Join(missed, ", "))
	}
	return edited, nil
}

// redactDecoders keep the decoders Redact checks its copies with.
var redactDecoders sync.Pool

// redactMinSearch is the shortest value looked for inside other values:
// shorter ones ("1.5") would match by chance.
const redactMinSearch = 6

type redactSecret struct {
	kind  flow.Kind
	value string
}

// fakeKey is the secret of this run that fakes are derived under: the same
// device and value get the same fake until phonehome restarts, and nobody
// without it can tell the real value from the fake.
var fakeKey = func() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("policy: no randomness for the fake key: " + err.Error())
	}
	return k
}()

// fakeBytes is an endless stream of bytes derived from the device and the
// value, under fakeKey.
type fakeBytes struct {
	msg   []byte
	block []byte
	n     uint32
}

func newFakeBytes(parts ...string) *fakeBytes {
	return &fakeBytes{msg: []byte(strings.Join(parts, "\x00"))}
}

func (b *fakeBytes) byte() byte {
	if len(b.block) == 0 {
		m := hmac.New(sha256.New, fakeKey)
		m.Write(b.msg)
		m.Write(binary.BigEndian.AppendUint32(nil, b.n))
		b.n++
		b.block = m.Sum(nil)
	}
	c := b.block[0]
	b.block = b.block[1:]
	return c
}

// digit is a uniform decimal digit.
func (b *fakeBytes) digit() byte {
	for {
		if c := b.byte(); c < 250 {
			return '0' + c%10
		}
	}
}

// A faker makes the fake of a real value of one kind from a stream derived
// from the device and the value.
type faker func(b *fakeBytes, real string) string

var fakers = map[flow.Kind]faker{
	pii.IMEI:          fakeLuhn,
	pii.ICCID:         fakeLuhn,
	pii.AdvertisingID: fakeUUID,
	pii.InstallID:     fakeUUID,
	pii.DeviceID:      fakeUUID,
	pii.AndroidID:     fakeShape, // 16 hex digits stay 16 hex digits
}

// fakeOf is the fake of the real value of kind on device.
func fakeOf(kind flow.Kind, device, real string) string {
	if kind == pii.Location {
		return fakeCoordinates(device, real)
	}
	gen := fakers[kind]
	if gen == nil {
		gen = fakeShape
	}
	for i := 0; ; i++ {
		if v := gen(newFakeBytes(device, real, strconv.Itoa(i)), real); v != real || i >= 8 {
			return v
		}
	}
}

// fakeShape keeps the shape of real: digits become digits, letters letters
// of the same case, a hex string stays hex; anything else stays.
func fakeShape(b *fakeBytes, real string) string {
	const hexd = "0123456789abcdef"
	hexOnly := real != ""
	for i := 0; i < len(real); i++ {
		c := real[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-' || c == ':') {
			hexOnly = false
			break
		}
	}
	out := []byte(real)
	for i, c := range out {
		switch {
		case c >= '0' && c <= '9' && !hexOnly:
			out[i] = b.digit()
		case hexOnly && (c >= '0' && c <= '9' || c >= 'a' && c <= 'f'):
			out[i] = hexd[b.byte()&15]
		case hexOnly && c >= 'A' && c <= 'F':
			out[i] = strings.ToUpper(hexd)[b.byte()&15]
		case c >= 'a' && c <= 'z':
			out[i] = 'a' + b.byte()%26
		case c >= 'A' && c <= 'Z':
			out[i] = 'A' + b.byte()%26
		}
	}
	return string(out)
}

// fakeLuhn is a number of real's length whose last digit is its Luhn check
// digit (an IMEI, an ICCID); other shapes are kept as fakeShape keeps them.
func fakeLuhn(b *fakeBytes, real string) string {
	if len(real) < 2 || strings.Trim(real, "0123456789") != "" {
		return fakeShape(b, real)
	}
	out := make([]byte, len(real))
	for i := range out[:len(out)-1] {
		out[i] = b.digit()
	}
	out[len(out)-1] = luhnDigit(out[:len(out)-1])
	return string(out)
}

// luhnDigit is the check digit that makes digits followed by it Luhn-valid.
func luhnDigit(digits []byte) byte {
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}

// fakeUUID is a random (version 4) UUID in real's case when real is
// UUID-shaped; other shapes are kept as fakeShape keeps them.
func fakeUUID(b *fakeBytes, real string) string {
	if len(real) != 36 || real[8] != '-' || real[13] != '-' || real[18] != '-' || real[23] != '-' {
		return fakeShape(b, real)
	}
	var u [16]byte
	for i := range u {
		u[i] = b.byte()
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	s := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	if strings.ToUpper(real) == real {
		s = strings.ToUpper(s)
	}
	return s
}

// fakeCoordinates moves every decimal number in real (a latitude, a
// longitude, a "lat,lng" pair) by 2 to 5 km, keeping its precision. The
// shift is the device's, for each whole degree: the same place gets the
// same fake, and a device's track keeps its shape a few km away.
func fakeCoordinates(device, real string) string {
	var out strings.Builder
	changed := false
	for i := 0; i < len(real); {
		j := i
		if j < len(real) && real[j] == '-' {
			j++
		}
		k := j
		for k < len(real) && real[k] >= '0' && real[k] <= '9' {
			k++
		}
		if k == j || k >= len(real) || real[k] != '.' || k+1 >= len(real) || real[k+1] < '0' || real[k+1] > '9' ||
			i > 0 && (real[i-1] >= '0' && real[i-1] <= '9' || real[i-1] == '.') {
			out.WriteByte(real[i])
			i++
			continue
		}
		end := k + 1
		for end < len(real) && real[end] >= '0' && real[end] <= '9' {
			end++
		}
		x, err := strconv.ParseFloat(real[i:end], 64)
		if err != nil {
			out.WriteString(real[i:end])
			i = end
			continue
		}
		b := newFakeBytes(device, "location", real[i:k])
		delta := 0.02 + 0.025*float64(b.byte())/255 // degrees: 2 to 5 km of latitude
		if b.byte()&1 == 1 {
			delta = -delta
		}
		limit := 180.0
		if math.Abs(x) <= 90 {
			limit = 90
		}
		if math.Abs(x+delta) > limit {
			delta = -delta
		}
		decimals := max(end-k-1, 3) // fewer than 3 decimals could not move by km
		out.WriteString(strconv.FormatFloat(x+delta, 'f', decimals, 64))
		changed = true
		i = end
	}
	if !changed {
		return fakeShape(newFakeBytes(device, real), real)
	}
	return out.String()
}
