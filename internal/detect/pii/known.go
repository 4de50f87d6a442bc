package pii

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/nyaruka/phonenumbers"
	"gopkg.in/yaml.v3"

	"phonehome/internal/flow"
)

// Profile is what a person tells phonehome about themselves, so that their own
// values are recognised however a tracker wraps them: kind → values.
type Profile map[flow.Kind][]string

// ParseProfile reads a profile in YAML or JSON (JSON is YAML): a mapping from a
// kind to a value or a list of values.
func ParseProfile(b []byte) (Profile, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("profile is neither YAML nor JSON: %w", err)
	}
	p := Profile{}
	for name, v := range raw {
		kind := flow.Kind(name)
		if !slices.Contains(Kinds, kind) {
			names := make([]string, len(Kinds))
			for i, k := range Kinds {
				names[i] = string(k)
			}
			return nil, fmt.Errorf("profile: unknown kind %q (kinds: %s)", kind, strings.Join(names, ", "))
		}
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				p[kind] = append(p[kind], fmt.Sprint(e))
			}
		case nil:
		default:
			p[kind] = append(p[kind], fmt.Sprint(x))
		}
	}
	return p, nil
}

// pattern is one form of a known value.
type pattern struct {
	text  string
	kind  flow.Kind
	value string // the value as the person gave it
	form  string // "" for the value itself, else how it was transformed: "md5", "base64", ...
}

// Known finds a person's own values in text, in every form trackers use:
// case and separator variants, URL-encoded, base64, hex, and MD5, SHA-1 and
// SHA-256 of each (also of normalised forms: lowercased email, E.164 phone).
// One pass over the text checks every form at once: a bitmap of hashed 8-byte
// (or, for short values, 4-byte) windows rules out almost every position with
// one load, one multiply and one bit test; only the rest are looked up.
type Known struct {
	pats   []pattern
	long   map[uint64][]int32 // first 8 bytes → patterns of 8 bytes or more
	short  map[uint32][]int32 // first 4 bytes → patterns of 4 to 7 bytes
	bits8  []uint64
	bits4  []uint64
	locs   [][2]float64
	region string
}

const filterBits = 20

// NewKnown expands a profile into its forms. region is for phone numbers given
// without a country code.
func NewKnown(p Profile, region string) (*Known, error) {
	k := &Known{long: map[uint64][]int32{}, short: map[uint32][]int32{}, bits8: make([]uint64, 1<<filterBits/64),
		bits4: make([]uint64, 1<<filterBits/64), region: region}
	seen := map[string]bool{}
	add := func(text string, kind flow.Kind, value, form string) {
		if len(text) < 4 || seen[text] {
			return
		}
		seen[text] = true
		i := int32(len(k.pats))
		k.pats = append(k.pats, pattern{text, kind, value, form})
		b := unsafe.Slice(unsafe.StringData(text), len(text))
		if len(text) >= 8 {
			w := binary.LittleEndian.Uint64(b)
			k.long[w] = append(k.long[w], i)
			h := hash8(w)
			k.bits8[h>>6] |= 1 << (h & 63)
		} else {
			w := binary.LittleEndian.Uint32(b)
			k.short[w] = append(k.short[w], i)
			h := hash4(w)
			k.bits4[h>>6] |= 1 << (h & 63)
		}
	}
	kinds := make([]flow.Kind, 0, len(p))
	for kind := range p {
		kinds = append(kinds, kind)
	}
	slices.Sort(kinds)
	for _, kind := range kinds {
		for _, v := range p[kind] {
			v = strings.TrimSpace(v)
			if kind == Location {
				ll, err := parseLatLng(v)
				if err != nil {
					return nil, fmt.Errorf("profile: location %q: %w", v, err)
				}
				k.locs = append(k.locs, ll)
				continue
			}
			bases, err := normalForms(kind, v, region)
			if err != nil {
				return nil, fmt.Errorf("profile: %s %q: %w", kind, v, err)
			}
			for _, b := range bases {
				add(b, kind, v, "")
				if e := url.QueryEscape(b); e != b {
					add(e, kind, v, "url-encoded")
				}
				add(base64.StdEncoding.EncodeToString([]byte(b)), kind, v, "base64")
				add(base64.RawStdEncoding.EncodeToString([]byte(b)), kind, v, "base64")
				add(base64.RawURLEncoding.EncodeToString([]byte(b)), kind, v, "base64")
				add(hex.EncodeToString([]byte(b)), kind, v, "hex")
				m5, s1, s256 := md5.Sum([]byte(b)), sha1.Sum([]byte(b)), sha256.Sum256([]byte(b))
				for _, d := range []struct {
					name string
					sum  []byte
				}{{"md5", m5[:]}, {"sha1", s1[:]}, {"sha256", s256[:]}} {
					hx := hex.EncodeToString(d.sum)
					add(hx, kind, v, d.name)
					add(strings.ToUpper(hx), kind, v, d.name)
					add(base64.StdEncoding.EncodeToString(d.sum), kind, v, d.name+" base64")
				}
			}
		}
	}
	return k, nil
}

func hash8(w uint64) uint64 { return (w * 0x9E3779B97F4A7C15) >> (64 - filterBits) }
func hash4(w uint32) uint64 { return (uint64(w) * 0x9E3779B97F4A7C15) >> (64 - filterBits) }

// normalForms lists the ways a value is written before any encoding.
func normalForms(kind flow.Kind, v, region string) ([]string, error) {
	forms := []string{v, strings.ToLower(v), strings.ToUpper(v)}
	switch kind {
	case PhoneNumber, Contact:
		num, err := phonenumbers.Parse(v, region)
		if err != nil {
			return nil, fmt.Errorf("not a phone number (give it with a country code, or set --phone-region): %w", err)
		}
		e164 := phonenumbers.Format(num, phonenumbers.E164)
		national := strings.NewReplacer(" ", "", "-", "", "(", "", ")", "").Replace(phonenumbers.Format(num, phonenumbers.NATIONAL))
		// Apps also send the bare national number, without the trunk prefix.
		forms = append(forms, e164, e164[1:], "00"+e164[1:], national, phonenumbers.GetNationalSignificantNumber(num),
			phonenumbers.Format(num, phonenumbers.INTERNATIONAL))
	case MACAddress, WifiBSSID:
		d := macDigits(v)
		if len(d) != 12 {
			return nil, fmt.Errorf("not a MAC address")
		}
		var parts []string
		for i := 0; i < 12; i += 2 {
			parts = append(parts, d[i:i+2])
		}
		for _, f := range []string{d, strings.Join(parts, ":"), strings.Join(parts, "-")} {
			forms = append(forms, f, strings.ToUpper(f))
		}
	case IMEI:
		if len(v) == 15 {
			forms = append(forms, v[:14]) // without the check digit
		}
	case AdvertisingID, InstallID, DeviceID:
		forms = append(forms, strings.ReplaceAll(strings.ToLower(v), "-", ""))
	}
	return forms, nil
}

func parseLatLng(v string) ([2]float64, error) {
	a, b, ok := strings.Cut(v, ",")
	if !ok {
		return [2]float64{}, fmt.Errorf(`write it as "latitude,longitude"`)
	}
	lat, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	lng, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if err1 != nil || err2 != nil || lat < -90 || lat > 90 || lng < -180 || lng > 180 {
		return [2]float64{}, fmt.Errorf(`write it as "latitude,longitude" in degrees`)
	}
	return [2]float64{lat, lng}, nil
}

// Patterns is the number of forms the profile expanded into.
func (k *Known) Patterns() int { return len(k.pats) }

// scan calls fn for every known form that occurs in text, with where it starts.
func (k *Known) scan(text string, fn func(p *pattern, at int)) {
	b := unsafe.Slice(unsafe.StringData(text), len(text))
	n := len(b)
	for i := 0; i+8 <= n; i++ {
		w := binary.LittleEndian.Uint64(b[i:])
		if h := hash8(w); k.bits8[h>>6]&(1<<(h&63)) != 0 {
			for _, pi := range k.long[w] {
				p := &k.pats[pi]
				if len(p.text) <= n-i && text[i:i+len(p.text)] == p.text {
					fn(p, i)
				}
			}
		}
	}
	if len(k.short) == 0 {
		return
	}
	for i := 0; i+4 <= n; i++ {
		w := binary.LittleEndian.Uint32(b[i:])
		if h := hash4(w); k.bits4[h>>6]&(1<<(h&63)) != 0 {
			for _, pi := range k.short[w] {
				p := &k.pats[pi]
				if len(p.text) <= n-i && text[i:i+len(p.text)] == p.text {
					fn(p, i)
				}
			}
		}
	}
}

// Match finds the profile's values in one decoded value; a value found in
// several forms at once is reported once, in its plainest form.
//
// A device attribute (a model, a version, a carrier's name) is found only as
// the whole value: "Xiaomi" inside "com.xiaomi.mipicks" or "12.5.3.0" inside
// "V12.5.3.0.RKGINXM" is part of something else, where an identifier inside a
// longer text is still that identifier.
func (k *Known) Match(text string) []Hit {
	var hits []Hit
	type found struct {
		kind  flow.Kind
		value string
	}
	seen := map[found]bool{}
	trimmed := strings.TrimSpace(text)
	k.scan(text, func(p *pattern, at int) {
		key := found{p.kind, p.value}
		whole := len(p.text) == len(trimmed) && strings.HasPrefix(text[at:], trimmed)
		if seen[key] || Fingerprint(p.kind) && !whole {
			return
		}
		seen[key] = true
		hits = append(hits, Hit{Kind: p.kind, Value: p.value, Path: p.form, Method: flow.MethodKnown, Confidence: 0.99,
			whole: whole, Why: "a value of the profile (" + string(p.kind) + ")"})
	})
	return hits
}

// NearKnownLocation reports whether a coordinate pair is within about a
// kilometre of a location in the profile.
func (k *Known) NearKnownLocation(lat, lng float64) (string, bool) {
	for _, l := range k.locs {
		if abs(l[0]-lat) < 0.01 && abs(l[1]-lng) < 0.01 {
			b, _ := json.Marshal(l)
			return strings.Trim(string(b), "[]"), true
		}
	}
	return "", false
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
