package detect

import (
	"strings"
	"sync"

	"phonehome/internal/decode"
	"phonehome/internal/detect/pii"
	"phonehome/internal/flow"
)

// recurrence is what the engine remembers across flows. Per device,
// destination and field: the last value of each identifier that only its
// recurrence confirms (pii.Recurrent), and the fields where such values
// changed. Per device: identifier-shaped values nothing else recognised, to
// find the ones that come back.
type recurrence struct {
	mu      sync.Mutex
	last    map[fieldKey]string
	varying map[fieldKey]bool
	values  map[valueKey]*sighting
}

type fieldKey struct {
	device, site, app, shape string
	kind                     flow.Kind
}

// valueKey is a value as one device sent it.
type valueKey struct{ device, value string }

// sighting is where a value was seen: in how many requests, the last one's
// sequence and source (a request counts once however often it holds the
// value), and at which destinations.
type sighting struct {
	requests int
	source   string
	seq      int
	sites    []string
	first    *flow.Flow // the first request, without its bodies, until the value comes back
	path     string     // where the first request had it
}

// maxFields bounds the memory: past it, the engine forgets and learns anew.
const maxFields = 1 << 14

// Device-wide identifiers are the same whatever app reports them: a field
// whose value changes from one app's request to the next is not one of them
// (a "mac" that is a message authentication code, not a MAC address).
var deviceWide = map[flow.Kind]bool{pii.IMEI: true, pii.IMSI: true, pii.ICCID: true, pii.SerialNumber: true,
	pii.MACAddress: true, pii.AdvertisingID: true, pii.DeviceID: true, pii.WifiBSSID: true}

// fieldOf is the field a recurrent-shaped hit is remembered by.
func (e *Engine) fieldOf(f *flow.Flow, h pii.Hit) fieldKey {
	app := f.App
	if deviceWide[h.Kind] {
		app = ""
	}
	return fieldKey{f.DeviceName(), f.Dest.Site, app, pii.PathShape(h.Path), h.Kind}
}

// keep reports whether a recurrent-shaped hit stands: it does unless its field
// had another value before, on an earlier request (then it is made per request).
func (r *recurrence) keep(k fieldKey, value string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil || len(r.last)+len(r.varying) > maxFields {
		r.last, r.varying = map[fieldKey]string{}, map[fieldKey]bool{}
	}
	if r.varying[k] {
		return false
	}
	if prev, ok := r.last[k]; ok && prev != value {
		r.varying[k] = true
		delete(r.last, k)
		return false
	}
	r.last[k] = value
	return true
}

// comeBack adds evidence across flows: an identifier-shaped value that
// nothing else recognised, sent unchanged by the same device in an earlier
// request too, is an identifier, whatever its field is called ("u", "x"). A
// nonce, a signature or a request ID changes every time and never comes
// back. The finding is made from the second sighting on; the first request
// is named in its evidence.
//
// earlier, if not nil, is told of the first request once the value comes
// back: its finding is known only now (a stored session can add it there).
func (r *recurrence) comeBack(f *flow.Flow, vals []decode.Value, hits []pii.Hit, earlier func(first *flow.Flow, x flow.Finding)) []pii.Hit {
	device := ""
	var head *flow.Flow // one copy of f's head for all its first sightings
	headFn := func() *flow.Flow {
		if head == nil {
			head = headOf(f)
		}
		return head
	}
	for i := range vals {
		v := &vals[i]
		if !candidate(v) {
			continue
		}
		text := strings.TrimSpace(v.Text)
		if decided(hits, v.Path, text) {
			continue
		}
		if device == "" {
			device = f.DeviceName()
		}
		if s, again := r.sight(device, text, f, v.Path, headFn); again {
			why := "an identifier's shape, sent unchanged by this device in " + plural(s.requests-1, "earlier request") + " (first " + s.source + ")"
			if len(s.sites) > 1 {
				why += " and to " + plural(len(s.sites), "destination") + ": " + strings.Join(s.sites, ", ")
			}
			h := pii.Hit{Kind: pii.InstallID, Value: text, Path: v.Path, Method: flow.MethodRecurrence, Confidence: 0.6, Why: why}
			hits = append(hits, h)
			if s.first != nil && earlier != nil {
				earlier(s.first, flow.Finding{Kind: h.Kind, Value: h.Value, Path: s.path, Method: h.Method, Confidence: h.Confidence})
			}
		}
	}
	return hits
}

// decided reports whether a hit already says what the value at path is (a
// known value found in a form of it counts), or found the same value.
func decided(hits []pii.Hit, path, value string) bool {
	for i := range hits {
		h := &hits[i]
		if h.Value == value || h.Path == path || strings.HasPrefix(h.Path, path) && strings.HasPrefix(h.Path[len(path):], " › as ") {
			return true
		}
	}
	return false
}

// sight records that device sent value in f; again reports that an earlier
// request had it too.
func (r *recurrence) sight(device, value string, f *flow.Flow, path string, head func() *flow.Flow) (sighting, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.values == nil || len(r.values) > maxFields {
		r.values = map[valueKey]*sighting{}
	}
	k := valueKey{device, value}
	s := r.values[k]
	where := f.Source
	if where == "" {
		where = "a request"
	}
	if s == nil {
		r.values[k] = &sighting{requests: 1, source: where + " #" + itoa(f.Seq), seq: f.Seq, sites: []string{f.Dest.Site},
			first: head(), path: path}
		return sighting{}, false
	}
	if s.seq == f.Seq && strings.HasPrefix(s.source, where+" #") {
		return sighting{requests: s.requests, source: s.source, sites: s.sites}, s.requests > 1 // the same request again
	}
	s.requests++
	if s.requests > 2 {
		s.first = nil // told once, at the second sighting
	}
	s.seq = f.Seq
	if !containsString(s.sites, f.Dest.Site) && len(s.sites) < 8 {
		s.sites = append(s.sites, f.Dest.Site)
	}
	return *s, true
}

// headOf is what a report needs of a flow to name a finding of it later:
// its identity and its request line, not its bodies.
func headOf(f *flow.Flow) *flow.Flow {
	h := &flow.Flow{ID: f.ID, Source: f.Source, Seq: f.Seq, Start: f.Start, Client: f.Client, Server: f.Server, Device: f.Device,
		Host: f.Host, Transport: f.Transport, Dest: f.Dest, App: f.App}
	if f.Request != nil {
		h.Request = &flow.Request{Method: f.Request.Method, URL: f.Request.URL}
	}
	return h
}

// candidate reports whether a decoded value is shaped like an identifier and
// sits where one may: random-looking, long enough to single out a device,
// not a timestamp, a version, an address or a word, and not in a field whose
// name says it is made per request, names content, or is the app's own key.
func candidate(v *decode.Value) bool {
	t := strings.TrimSpace(v.Text)
	if len(t) < 12 || len(t) > 128 || v.Numeric && len(t) < 15 {
		return false
	}
	if strings.HasPrefix(v.Path, "path[") || strings.HasPrefix(v.Path, "header:Authorization") || strings.HasPrefix(v.Path, "header:User-Agent") {
		return false
	}
	return pii.IdentifierShaped(t) && !pii.EphemeralField(v.Parent, v.Key) // the cheap test first
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return itoa(n) + " " + word + "s"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
