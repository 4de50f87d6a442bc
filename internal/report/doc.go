package report

import (
	"encoding/json"
	"io"
	"maps"
	"math/bits"
	"sort"
	"strings"
	"time"

	"phonehome/internal/flow"
)

// Doc is the report as data: what every format (text, Markdown, HTML, JSON)
// renders. Values are in full; renderers mask them.
type Doc struct {
	Session    string    `json:"session,omitempty"`
	Source     string    `json:"source,omitempty"`
	Flows      int       `json:"flows"`
	Devices    int       `json:"devices"`
	First      time.Time `json:"first,omitzero"`
	Last       time.Time `json:"last,omitzero"`
	DNSLookups int       `json:"dns_lookups"`
	DNSNames   int       `json:"dns_names"`
	DNSNotes   []NoteDoc `json:"dns_notes,omitempty"` // notes of the lookups, by code
	Parties    []Party   `json:"parties"`
	// Blocked counts per host the requests, connections and lookups that
	// phonehome's policy blocked.
	Blocked  map[string]int `json:"blocked_hosts,omitempty"`
	IDs      []IDDoc        `json:"persistent_ids"`
	Links    []LinkDoc      `json:"links"`
	Timeline Timeline       `json:"timeline"`
}

// Party is one owner (or, when unknown, one site) and its hosts.
type Party struct {
	Owner     string      `json:"owner"` // "" when unknown
	Name      string      `json:"name"`  // owner, or the site when unknown
	Requests  int         `json:"requests"`
	BytesUp   int64       `json:"bytes_up"`
	Cleartext bool        `json:"cleartext"`
	Kinds     []flow.Kind `json:"kinds"` // data kinds received, identifying first
	Hosts     []HostDoc   `json:"hosts"`
}

// HostDoc is one destination host.
type HostDoc struct {
	Host      string        `json:"host"`
	Category  string        `json:"category,omitempty"`
	SDK       string        `json:"sdk,omitempty"`
	Party     flow.Party    `json:"party,omitempty"`
	Transport string        `json:"transport"`
	Cleartext bool          `json:"cleartext"`
	Requests  int           `json:"requests"`
	BytesUp   int64         `json:"bytes_up"`
	BytesDown int64         `json:"bytes_down"`
	First     time.Time     `json:"first,omitzero"`
	Last      time.Time     `json:"last,omitzero"`
	Apps      []string      `json:"apps,omitempty"`
	Data      []DatumDoc    `json:"data"`
	Endpoints []EndpointDoc `json:"endpoints,omitempty"`
	Notes     []NoteDoc     `json:"notes,omitempty"` // what was noted about its flows, by code
}

// NoteDoc is what was noted about a destination's flows under one code:
// how many flows, and the text of the first as an example.
type NoteDoc struct {
	Code    flow.NoteCode `json:"code"`
	Flows   int           `json:"flows"`
	Example string        `json:"example"`
}

// DatumDoc is one piece of data received, with one piece of evidence.
type DatumDoc struct {
	Kind  flow.Kind `json:"kind"`
	Value string    `json:"value"`
	Count int       `json:"requests"`
	// Stopped of those requests were kept from the party: blocked, or this
	// kind redacted or faked.
	Stopped int         `json:"stopped,omitempty"`
	Path    string      `json:"path"`
	Method  flow.Method `json:"method_found"`
	// Cleartext: at least one request carried it over plain HTTP (or DNS).
	Cleartext bool `json:"cleartext,omitempty"`
}

// EndpointDoc is an endpoint's learned schema.
type EndpointDoc struct {
	Path         string     `json:"path"`
	Requests     int        `json:"requests"`
	Learned      int        `json:"learned_requests"` // fields learned from these (a sample of a busy endpoint)
	Events       int        `json:"events"`           // estimated from the learned requests when sampled
	Batched      int        `json:"batched_requests"` // likewise
	EventField   string     `json:"event_field,omitempty"`
	EventKinds   []EventDoc `json:"events_by_name,omitempty"`
	Annotations  []FieldDoc `json:"annotations"`
	EventData    []FieldDoc `json:"event_data"`
	Unclassified []FieldDoc `json:"seen_once,omitempty"`
}

// EventDoc is one kind of event and the data it carries.
type EventDoc struct {
	Name   string     `json:"name"`
	Count  int        `json:"count"`
	Fields []FieldDoc `json:"fields"`
}

// FieldDoc is one field of an endpoint.
type FieldDoc struct {
	Name     string    `json:"name"`
	Key      string    `json:"key"`
	Kind     flow.Kind `json:"kind,omitempty"`
	Example  string    `json:"example"`
	Presence float64   `json:"presence"` // share of events that carried it
	Distinct int       `json:"distinct"`
	Role     Role      `json:"role"`
}

// IDDoc is one persistent identifier.
type IDDoc struct {
	Value    string    `json:"value"`
	Name     string    `json:"name"`
	Kind     flow.Kind `json:"kind,omitempty"`
	Events   int       `json:"events"`
	Requests int       `json:"requests"`
	Parties  []string  `json:"parties"`
	Hosts    []string  `json:"hosts"`
}

// LinkDoc is a set of identifiers one party receives together.
type LinkDoc struct {
	Party    string   `json:"party"`
	Names    []string `json:"names"`
	Values   []string `json:"values"`
	Requests int      `json:"requests"`
}

// Timeline counts requests per party, and requests per data kind they
// carried, in equal time slices.
type Timeline struct {
	Start  time.Time           `json:"start,omitzero"`
	Slice  time.Duration       `json:"slice_ns"`
	Counts map[string][]int    `json:"counts"`          // party name → count per slice
	Kinds  map[flow.Kind][]int `json:"kinds,omitempty"` // data kind → requests that carried it, per slice
}

const timelineSlices = 60

// Doc builds the report's data.
func (s *Summary) Doc() *Doc {
	s.classify()
	d := &Doc{Flows: s.flows, Devices: len(s.clients), First: s.first.UTC(), Last: s.last.UTC(), DNSLookups: s.lookups,
		DNSNames: len(s.dns), DNSNotes: noteDocs(s.dnsNotes)}
	if len(s.blockedHosts) > 0 {
		d.Blocked = maps.Clone(s.blockedHosts)
	}
	if s.first.IsZero() {
		d.First, d.Last = time.Time{}, time.Time{}
	}
	parties := map[string]*Party{}
	partyOf := map[*Destination]string{}
	for _, dst := range s.Destinations() {
		name := dst.Dest.Owner
		if name == "" {
			name = dst.Dest.Site
		}
		if name == "" {
			name = dst.Host
		}
		partyOf[dst] = name
		p := parties[name]
		if p == nil {
			p = &Party{Owner: dst.Dest.Owner, Name: name}
			parties[name] = p
		}
		h := hostDoc(dst)
		p.Requests += h.Requests
		p.BytesUp += h.BytesUp
		p.Cleartext = p.Cleartext || h.Cleartext
		for _, x := range h.Data {
			if !contains(p.Kinds, x.Kind) {
				p.Kinds = append(p.Kinds, x.Kind)
			}
		}
		p.Hosts = append(p.Hosts, h)
	}
	for _, p := range parties {
		sort.Slice(p.Kinds, func(i, j int) bool { return kindRank(p.Kinds[i]) < kindRank(p.Kinds[j]) })
		d.Parties = append(d.Parties, *p)
	}
	sort.Slice(d.Parties, func(i, j int) bool {
		a, b := d.Parties[i], d.Parties[j]
		if len(a.Kinds) != len(b.Kinds) {
			return len(a.Kinds) > len(b.Kinds)
		}
		if a.Requests != b.Requests {
			return a.Requests > b.Requests
		}
		return a.Name < b.Name
	})
	for _, id := range s.PersistentIDs() {
		d.IDs = append(d.IDs, IDDoc{Value: id.Value, Name: id.Name, Kind: id.Kind, Events: id.Events, Requests: id.Requests,
			Parties: id.Owners, Hosts: id.Hosts})
	}
	for _, l := range s.Links() {
		ld := LinkDoc{Party: l.Owner, Requests: l.Requests}
		for _, id := range l.IDs {
			ld.Names = append(ld.Names, id.Name)
			ld.Values = append(ld.Values, id.Value)
		}
		d.Links = append(d.Links, ld)
	}
	d.Timeline = s.timeline(partyOf)
	return d
}

func hostDoc(dst *Destination) HostDoc {
	h := HostDoc{Host: dst.Host, Category: dst.Dest.Category, SDK: dst.Dest.SDK, Party: dst.Dest.Party,
		Transport: transportLabel(dst.Transports), Cleartext: dst.Cleartext, Requests: dst.Requests, BytesUp: dst.BytesUp,
		BytesDown: dst.BytesDown, First: dst.First.UTC(), Last: dst.Last.UTC(), Data: []DatumDoc{}, Notes: noteDocs(dst.Notes)}
	if dst.First.IsZero() {
		h.First, h.Last = time.Time{}, time.Time{}
	}
	for a := range dst.Apps {
		h.Apps = append(h.Apps, a)
	}
	sort.Strings(h.Apps)
	for _, x := range sortedData(dst) {
		h.Data = append(h.Data, DatumDoc{Kind: x.Kind, Value: x.Value, Count: x.Count, Stopped: x.Stopped, Path: x.Path, Method: x.Method, Cleartext: x.Cleartext})
	}
	for _, e := range dst.SortedEndpoints() {
		h.Endpoints = append(h.Endpoints, endpointDoc(e))
	}
	return h
}

func sortedData(d *Destination) []*Datum {
	data := make([]*Datum, 0, len(d.Data))
	for _, x := range d.Data {
		data = append(data, x)
	}
	sort.Slice(data, func(i, j int) bool {
		if data[i].Kind != data[j].Kind {
			return kindOrder[data[i].Kind] < kindOrder[data[j].Kind]
		}
		return data[i].Value < data[j].Value
	})
	return data
}

func endpointDoc(e *Endpoint) EndpointDoc {
	ed := EndpointDoc{Path: e.Path, Requests: e.Requests, Learned: e.Learned, Events: scale(e.Events, e.Requests, e.Learned),
		Batched:     scale(e.Batched, e.Requests, e.Learned),
		Annotations: fieldDocs(e, e.Annotations()), EventData: fieldDocs(e, e.EventData()), Unclassified: fieldDocs(e, e.Unclassified())}
	if ef := e.EventField(); ef != nil {
		ed.EventField = ef.Name
		for _, en := range e.EventNames() {
			ed.EventKinds = append(ed.EventKinds, EventDoc{Name: en.Value, Count: scale(en.Count, e.Requests, e.Learned), Fields: fieldDocs(e, e.EventFields(en))})
		}
	}
	return ed
}

// scale estimates a count over all requests from the learned ones.
func scale(n, requests, learned int) int {
	if learned == 0 || learned == requests {
		return n
	}
	return int((int64(n)*int64(requests) + int64(learned)/2) / int64(learned))
}

func fieldDocs(e *Endpoint, fs []*Field) []FieldDoc {
	out := []FieldDoc{}
	for _, f := range fs {
		out = append(out, FieldDoc{Name: f.Name, Key: f.Key, Kind: f.Kind, Example: f.Example, Role: f.Role,
			Presence: float64(f.Present) / float64(max(e.Events, 1)), Distinct: f.Distinct()})
	}
	return out
}

func (s *Summary) timeline(partyOf map[*Destination]string) Timeline {
	t := Timeline{Counts: map[string][]int{}}
	if len(s.times) == 0 {
		return t
	}
	lo, hi := s.times[0].at, s.times[0].at
	for _, x := range s.times {
		lo, hi = min(lo, x.at), max(hi, x.at)
	}
	span := hi - lo + 1
	slice := (span + timelineSlices - 1) / timelineSlices
	slice = max(slice, int64(time.Millisecond))
	t.Start, t.Slice = time.Unix(0, lo).UTC(), time.Duration(slice)
	n := int(span/slice) + 1
	for _, x := range s.times {
		name := partyOf[x.dest]
		c := t.Counts[name]
		if c == nil {
			c = make([]int, n)
			t.Counts[name] = c
		}
		c[(x.at-lo)/slice]++
	}
	if len(s.kindTimes) > 0 {
		t.Kinds = map[flow.Kind][]int{}
	}
	count := func(at int64, kind uint32) {
		k := s.kinds[kind]
		c := t.Kinds[k]
		if c == nil {
			c = make([]int, n)
			t.Kinds[k] = c
		}
		c[(at-lo)/slice]++
	}
	for _, x := range s.kindTimes {
		for m := x.mask; m != 0; m &= m - 1 {
			count(x.at, uint32(bits.TrailingZeros64(m)))
		}
	}
	for _, x := range s.moreKinds {
		count(x.at, x.kind)
	}
	return t
}

// FieldLabel names a field for people: its key, with the data kind found in
// it when the kind is not already the key's meaning.
func FieldLabel(f FieldDoc) string {
	if f.Kind == "" || strings.EqualFold(string(f.Kind), f.Key) {
		return f.Key
	}
	return f.Key + " (" + string(f.Kind) + ")"
}

// WriteJSON writes the report as one JSON line of type "report", values in full.
func WriteJSON(w io.Writer, doc *Doc) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		Type string `json:"type"`
		*Doc
	}{"report", doc})
}
