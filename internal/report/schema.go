package report

import (
	"net/netip"
	"net/url"
	"sort"
	"strings"

	"phonehome/internal/decode"
	"phonehome/internal/detect/pii"
	"phonehome/internal/flow"
)

// Endpoint schema inference: for each endpoint (host + path template) learn the
// fields it receives and tell apart what rides on every event (annotations:
// install ID, model, language...), what names the event, and what the event
// carries (a URL, a query). A batch of events inside one request (an array of
// objects with a time or a name) counts each element as an event; the fields
// outside the array then ride on every event of the batch.

// Role is what a field is to its endpoint.
type Role string

// Roles of fields.
const (
	RoleAnnotation Role = "annotation" // on (nearly) every event, the same value for a device
	RoleEventName  Role = "event_name" // few values that select the kind of event
	RoleEventData  Role = "event_data" // varies from event to event
	RoleUnknown    Role = "seen_once"  // one event only: nothing to compare
)

const (
	maxFieldsPerEndpoint = 400
	maxValuesPerField    = 64
	maxEventNames        = 100
	annotationPresence   = 0.9 // present in at least this share of events
	annotationStability  = 0.9 // and the same value per device in this share of them
)

// Endpoint is what one endpoint received.
type Endpoint struct {
	Host     string
	Path     string // template: IDs in the path folded to {id}
	Requests int
	Learned  int // requests whose fields were learned (all, up to learnAll)
	Events   int // of the learned requests: one per request, or one per element of a batch
	Batched  int // learned requests that carried a batch of events
	Fields   map[string]*Field
	names    map[string]*EventName // event name value → what it carried
	clients  map[netip.Addr]bool
	dropped  int // fields not kept: more than maxFieldsPerEndpoint
	// set by classify
	eventField *Field
}

// Field is one field of an endpoint, named by its decode path with array
// indexes folded ("body › gzip › json:events[].url"); fields of a batch's
// events are named relative to the event ("url").
type Field struct {
	Name     string
	Key      string
	Batch    bool // inside the elements of a batch
	Present  int  // events that carried it
	Kind     flow.Kind
	Example  string
	Role     Role
	values   map[string]int
	overflow bool
	first    map[netip.Addr]string // each device's first value
	stable   int                   // events whose value equalled their device's first
}

// Distinct returns how many different values the field had (a lower bound
// when Overflow).
func (f *Field) Distinct() int { return len(f.values) }

// Overflow reports whether the field had more values than were counted.
func (f *Field) Overflow() bool { return f.overflow }

// EventName is one value of an endpoint's event-name field.
type EventName struct {
	Value  string
	Count  int
	Fields map[string]int // event fields seen with it
}

// eventNameKeys are keys that SDKs use for the name or type of an event, best first.
var eventNameKeys = []string{"event", "event_name", "eventname", "eventtype", "event_type", "evt", "ev", "en", "eventid",
	"event_id", "action", "actiontype", "type", "t", "category", "ec", "ea", "log_type", "logtype", "tag"}

var eventNameRank = func() map[string]int {
	m := map[string]int{}
	for i, k := range eventNameKeys {
		m[k] = i + 1
	}
	return m
}()

// batchKeys name arrays that hold events.
var batchKeys = map[string]bool{"events": true, "event": true, "evts": true, "batch": true, "logs": true, "log": true,
	"records": true, "hits": true, "actions": true, "messages": true, "items": true, "data": true, "e": true, "list": true}

// timeKeys name an event's time.
var timeKeys = map[string]bool{"ts": true, "time": true, "timestamp": true, "t": true, "date": true, "created": true,
	"created_at": true, "event_time": true, "eventtime": true, "client_ts": true, "occurred_at": true, "st": true}

// endpointPath folds the parts of a URL path that identify something (numbers,
// hex, UUIDs, long tokens) into {id}, so /user/8812/feed and /user/9911/feed
// are one endpoint.
func endpointPath(rawURL string) string {
	p := flow.URLPath(rawURL)
	if p == "" {
		return "/"
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if idSegment(s) {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

func idSegment(s string) bool {
	if len(s) < 3 {
		return false
	}
	if u, err := url.PathUnescape(s); err == nil {
		s = u
	}
	digits, hex, alnum := 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			hex++
			alnum++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			hex++
			alnum++
		case c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z':
			alnum++
		}
	}
	switch {
	case digits == len(s):
		return true
	case len(s) == 36 && strings.Count(s, "-") == 4:
		return true
	case hex == len(s) && len(s) >= 8 && digits > 0:
		return true
	case len(s) >= 16 && digits > 0 && alnum >= len(s)-2:
		return true
	}
	return false
}

// foldIndexes replaces array indexes in a decode path by [].
func foldIndexes(p string) string {
	if strings.IndexByte(p, '[') < 0 {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		b.WriteByte(c)
		if c == '[' {
			j := i + 1
			for j < len(p) && p[j] >= '0' && p[j] <= '9' {
				j++
			}
			if j > i+1 && j < len(p) && p[j] == ']' {
				i = j - 1
			}
		}
	}
	return b.String()
}

// element splits a value's path at the first array of objects: the path of
// the array, the index, and the rest inside the element. ok is false when
// the path has no such array.
func element(p string) (container string, index int, rest string, ok bool) {
	for i := 0; i < len(p); i++ {
		if p[i] != '[' {
			continue
		}
		j := i + 1
		n := 0
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			n = n*10 + int(p[j]-'0')
			j++
		}
		if j == i+1 || j+1 >= len(p) || p[j] != ']' || p[j+1] != '.' {
			continue
		}
		return p[:i], n, p[j+2:], true
	}
	return "", 0, "", false
}

// lastKey is the last name of a JSON path segment ("events[].os.version" → "version").
func lastKey(name string) string {
	if i := strings.LastIndex(name, decode.Sep); i >= 0 {
		name = name[i+len(decode.Sep):]
	}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.TrimSuffix(name, "[]")
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return name
}

func containerKey(container string) string {
	k := lastKey(container)
	return strings.ToLower(k)
}

// unit is one event while a request is being learned.
type unit struct {
	fields map[string]string // field name → value (first, if repeated)
}

// learn adds one request's decoded values to its endpoint (whose Requests
// the caller has counted).
func (e *Endpoint) learn(client netip.Addr, values []decode.Value, kinds map[string]flow.Kind) {
	e.Learned++
	e.clients[client] = true
	// Find the batch: the array of objects with the most values, if its
	// elements look like events.
	type batch struct {
		n     int
		index map[int]bool
		timed bool
		named bool
	}
	var batches map[string]*batch
	for i := range values {
		v := &values[i]
		c, n, rest, ok := element(v.Path)
		if !ok {
			continue
		}
		if batches == nil {
			batches = map[string]*batch{}
		}
		b := batches[c]
		if b == nil {
			b = &batch{index: map[int]bool{}}
			batches[c] = b
		}
		b.n++
		b.index[n] = true
		k := strings.ToLower(rest)
		if timeKeys[k] {
			b.timed = true
		}
		if eventNameRank[k] > 0 {
			b.named = true
		}
	}
	container := ""
	best := 0
	for c, b := range batches {
		if (b.timed || b.named || batchKeys[containerKey(c)]) && (b.n > best || b.n == best && c < container) {
			container, best = c, b.n
		}
	}
	var events []unit
	request := unit{fields: map[string]string{}}
	if container != "" {
		e.Batched++
		events = make([]unit, 0, len(batches[container].index))
		slot := map[int]int{}
		for i := range values {
			v := &values[i]
			c, n, rest, ok := element(v.Path)
			if ok && c == container {
				s, ok := slot[n]
				if !ok {
					s = len(events)
					slot[n] = s
					events = append(events, unit{fields: map[string]string{}})
				}
				name := foldIndexes(rest)
				if _, dup := events[s].fields[name]; !dup {
					events[s].fields[name] = v.Text
				}
				continue
			}
			e.addRequestField(request, v)
		}
	} else {
		for i := range values {
			e.addRequestField(request, &values[i])
		}
		events = []unit{request}
		request = unit{}
	}
	for _, ev := range events {
		e.Events++
		for name, val := range ev.fields {
			e.count(client, name, container != "", val, kinds[container+"\x00"+name])
		}
		for name, val := range request.fields {
			e.count(client, name, false, val, kinds["\x00"+name])
		}
		e.nameEvent(ev, request)
	}
}

// addRequestField records a value outside any batch, skipping the URL path
// (the endpoint's template already stands for it).
func (e *Endpoint) addRequestField(u unit, v *decode.Value) {
	if strings.HasPrefix(v.Path, "path[") {
		return
	}
	name := foldIndexes(v.Path)
	if _, dup := u.fields[name]; !dup {
		u.fields[name] = v.Text
	}
}

func (e *Endpoint) count(client netip.Addr, name string, batch bool, val string, kind flow.Kind) {
	f := e.Fields[name]
	if f == nil {
		if len(e.Fields) >= maxFieldsPerEndpoint {
			e.dropped++
			return
		}
		f = &Field{Name: name, Key: lastKey(name), Batch: batch, values: map[string]int{}, first: map[netip.Addr]string{}, Example: val}
		e.Fields[name] = f
	}
	f.Present++
	if kind != "" && f.Kind == "" {
		f.Kind = kind
	}
	if len(val) > 256 {
		val = val[:256]
	}
	if _, ok := f.values[val]; ok || len(f.values) < maxValuesPerField {
		f.values[val]++
	} else {
		f.overflow = true
	}
	first, ok := f.first[client]
	if !ok {
		f.first[client] = val
		f.stable++
	} else if first == val {
		f.stable++
	}
}

// nameEvent files an event under the value of its best-ranked name field.
func (e *Endpoint) nameEvent(ev, request unit) {
	bestRank, name, value := 0, "", ""
	for _, u := range []unit{ev, request} {
		for n, v := range u.fields {
			r := eventNameRank[strings.ToLower(n)]
			if r == 0 {
				r = eventNameRank[strings.ToLower(lastKey(n))]
				if r > 0 {
					r += len(eventNameKeys) // a nested or decoded key ranks after a top-level one
				}
			}
			if r > 0 && (bestRank == 0 || r < bestRank || r == bestRank && n < name) && plausibleEventName(v) {
				bestRank, name, value = r, n, v
			}
		}
	}
	if name == "" {
		return
	}
	if e.names == nil {
		e.names = map[string]*EventName{}
	}
	k := name + "\x00" + value
	en := e.names[k]
	if en == nil {
		if len(e.names) >= maxEventNames {
			return
		}
		en = &EventName{Value: value, Fields: map[string]int{}}
		e.names[k] = en
	}
	en.Count++
	for n := range ev.fields {
		if n != name {
			en.Fields[n]++
		}
	}
}

// plausibleEventName accepts short words (page_view, Click, app.start), not
// numbers, URLs or sentences.
func plausibleEventName(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	letters := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters++
		case c >= '0' && c <= '9', c == '_', c == '-', c == '.', c == ':':
		default:
			return false
		}
	}
	return letters > 0
}

// classify gives every field its role.
func (e *Endpoint) classify() {
	e.eventField = nil
	// The event-name field: the name key chosen most often across events.
	counts := map[string]int{}
	for k, en := range e.names {
		counts[k[:strings.IndexByte(k, 0)]] += en.Count
	}
	bestName, bestCount := "", 0
	for n, c := range counts {
		if c > bestCount || c == bestCount && n < bestName {
			bestName, bestCount = n, c
		}
	}
	for _, f := range e.Fields {
		switch {
		case f.Name == bestName:
			f.Role = RoleEventName
			e.eventField = f
		case e.Events < 2:
			f.Role = RoleUnknown
		case float64(f.Present) >= annotationPresence*float64(e.Events) &&
			float64(f.stable) >= annotationStability*float64(f.Present):
			f.Role = RoleAnnotation
		default:
			f.Role = RoleEventData
		}
	}
}

// Annotations returns the fields that ride on every event, identifying kinds first.
func (e *Endpoint) Annotations() []*Field { return e.role(RoleAnnotation) }

// EventData returns the fields that vary from event to event.
func (e *Endpoint) EventData() []*Field { return e.role(RoleEventData) }

// Unclassified returns the fields of an endpoint seen in one event only.
func (e *Endpoint) Unclassified() []*Field { return e.role(RoleUnknown) }

// EventField returns the field that names the events, or nil.
func (e *Endpoint) EventField() *Field { return e.eventField }

func (e *Endpoint) role(r Role) []*Field {
	var out []*Field
	for _, f := range e.Fields {
		if f.Role == r {
			out = append(out, f)
		}
	}
	sortByKind(out, func(f *Field) (flow.Kind, string) { return f.Kind, f.Name })
	return out
}

// sortByKind orders items by the data kind found in them (identifying kinds
// first, none last), then by name.
func sortByKind[T any](items []T, key func(T) (kind flow.Kind, name string)) {
	sort.Slice(items, func(i, j int) bool {
		ki, ni := key(items[i])
		kj, nj := key(items[j])
		if ri, rj := kindRank(ki), kindRank(kj); ri != rj {
			return ri < rj
		}
		return ni < nj
	})
}

// kindRank orders fields by the kind found in them; fields without one last.
func kindRank(kind flow.Kind) int {
	if kind == "" {
		return len(pii.Kinds) + 1
	}
	if r, ok := kindOrder[kind]; ok {
		return r
	}
	return len(pii.Kinds)
}

// EventNames returns the kinds of events, most frequent first.
func (e *Endpoint) EventNames() []*EventName {
	if e.eventField == nil {
		return nil
	}
	prefix := e.eventField.Name + "\x00"
	var out []*EventName
	for k, en := range e.names {
		if strings.HasPrefix(k, prefix) {
			out = append(out, en)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// EventFields returns the event data fields seen with an event name, in order
// of the data kinds found in them.
func (e *Endpoint) EventFields(en *EventName) []*Field {
	var out []*Field
	for n := range en.Fields {
		if f := e.Fields[n]; f != nil && f.Role == RoleEventData {
			out = append(out, f)
		}
	}
	sortByKind(out, func(f *Field) (flow.Kind, string) { return f.Kind, f.Name })
	return out
}

// findingKinds maps a flow's findings to field names as learn names them:
// batch container + "\x00" + field inside the element, or "\x00" + field.
func findingKinds(fs []flow.Finding) map[string]flow.Kind {
	if len(fs) == 0 {
		return nil
	}
	m := make(map[string]flow.Kind, len(fs))
	for _, x := range fs {
		var k string
		if c, _, rest, ok := element(x.Path); ok {
			k = c + "\x00" + foldIndexes(rest)
		} else {
			k = "\x00" + foldIndexes(x.Path)
		}
		if old, ok := m[k]; !ok || kindRank(x.Kind) < kindRank(old) {
			m[k] = x.Kind
		}
		// the same field outside a batch, for requests without one
		if _, _, _, ok := element(x.Path); ok {
			if k2 := "\x00" + foldIndexes(x.Path); m[k2] == "" {
				m[k2] = x.Kind
			}
		}
	}
	return m
}
