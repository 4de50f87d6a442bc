// Package report turns flows into what a person reads: a table of who talked to
// whom, a list of flows, and JSON Lines for other tools.
package report

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"phonehome/internal/decode"
	"phonehome/internal/detect"
	"phonehome/internal/flow"
)

// Destination is what one server name (or address) received and sent.
type Destination struct {
	Host       string
	Requests   int // HTTP exchanges, or connections where content was not readable
	BytesUp    int64
	BytesDown  int64
	Methods    map[string]int
	Transports map[flow.Transport]int
	First      time.Time
	Last       time.Time
	Dest       flow.Destination
	Apps       map[string]int
	Data       map[string]*Datum // kind + "\x00" + value → what was received
	Cleartext  bool              // personal data went over plain HTTP, or in a third-party URL (Exposed)
	Endpoints  []*Endpoint
	Notes      []NoteDoc // per code, in the order first noted
}

// Datum is one piece of data a destination received, over all its flows.
type Datum struct {
	Kind   flow.Kind
	Value  string
	Path   string // where it was first found
	Method flow.Method
	Count  int
	// Stopped: requests that carried it and were kept from the party, the
	// request blocked or this kind redacted or faked (Count includes them).
	Stopped int
	// Cleartext: at least one flow carried it over plain HTTP (or DNS),
	// unencrypted on the network.
	Cleartext bool
}

// Summary aggregates flows per destination as they stream past; it keeps no
// flow. Besides counting, it learns each endpoint's fields (events and what is
// attached to every event) and the identifiers that come back.
type Summary struct {
	dests      map[string]*Destination
	clients    map[string]bool // devices: by name when the source knows one, else by address
	dns        map[string]bool // names looked up
	lookups    int
	flows      int
	first      time.Time
	last       time.Time
	endpoints  map[string]*Endpoint // host + "\x00" + path template
	ids        *idTable
	times      []stamp     // one per request or connection, for the timeline
	kindTimes  []kindStamp // one per flow that carried reported kinds, for the kinds over time
	kindIndex  map[flow.Kind]uint32
	kinds      []flow.Kind    // by index
	moreKinds  []moreStamp    // kinds past the 64th, which a mask cannot hold
	dnsNotes   []NoteDoc      // notes of DNS lookups, which have no destination
	dec        decode.Decoder // for Add: flows that come with no decoded tree
	decodes    int            // requests dec decoded (tests read it)
	spare      []decode.Value
	rng        uint64
	classified bool
	stopped    map[string]*Stopped // by party
	// blockedHosts counts, per host, the requests, connections and lookups
	// that were blocked.
	blockedHosts map[string]int
	// NoSchema skips learning endpoints and identifiers (no decoding): only
	// who talked to whom and the findings already on the flows.
	NoSchema bool
}

// stamp is when a flow started and to which destination.
type stamp struct {
	at   int64 // unix nanoseconds
	dest *Destination
}

// kindStamp is when a flow that carried data started, and which kinds it
// carried: bit i is Summary.kinds[i]. One mask per flow keeps a busy session
// at 16 bytes a flow, however many kinds each carries.
type kindStamp struct {
	at   int64
	mask uint64
}

// moreStamp is one kind, past the 64th, of a flow.
type moreStamp struct {
	at   int64
	kind uint32
}

// NewSummary returns an empty summary.
func NewSummary() *Summary {
	return &Summary{dests: map[string]*Destination{}, clients: map[string]bool{}, dns: map[string]bool{},
		endpoints: map[string]*Endpoint{}, ids: newIDTable(), kindIndex: map[flow.Kind]uint32{}}
}

// countNotes adds a flow's notes to the counts: a code counts once per flow,
// and only the first note of a code is kept, as its example, so a busy
// session costs no more memory than a quiet one.
func countNotes(counts []NoteDoc, notes flow.Notes) []NoteDoc {
	for i, n := range notes {
		code := knownCode(n.Code)
		again := false
		for _, m := range notes[:i] {
			if knownCode(m.Code) == code {
				again = true
				break
			}
		}
		if again {
			continue
		}
		j := 0
		for j < len(counts) && counts[j].Code != code {
			j++
		}
		if j == len(counts) {
			counts = append(counts, NoteDoc{Code: code, Example: n.Text})
		}
		counts[j].Flows++
	}
	return counts
}

// knownCode reads a code newer than this build as NoteOther, the way its
// name reads.
func knownCode(c flow.NoteCode) flow.NoteCode {
	if c.String() == flow.NoteOther.String() {
		return flow.NoteOther
	}
	return c
}

// kindBit returns the index of a kind, giving it the next one when new.
func (s *Summary) kindBit(kind flow.Kind) uint32 {
	i, ok := s.kindIndex[kind]
	if !ok {
		i = uint32(len(s.kinds))
		s.kindIndex[kind] = i
		s.kinds = append(s.kinds, kind)
	}
	return i
}

// Add counts one flow, decoding its request again to learn its endpoint's
// fields: for flows that come with findings and no decoded tree (a stored
// session). Where the request was just decoded, AddDecoded reads that tree.
func (s *Summary) Add(f *flow.Flow) { s.add(f, nil, false) }

// AddDecoded is Add for a flow whose request was just decoded, by detection:
// it learns from vals, the values decoded from f.Request, and decodes
// nothing. It reads vals during the call only, so it can be handed to
// detect.Engine.InspectWith as is. The report is the same as Add's when vals
// were decoded with the same limits.
func (s *Summary) AddDecoded(f *flow.Flow, vals []decode.Value) { s.add(f, vals, true) }

// add counts one flow; decoded says vals are f.Request's values.
func (s *Summary) add(f *flow.Flow, vals []decode.Value, decoded bool) {
	s.flows++
	s.addStopped(f)
	if dev := f.DeviceName(); dev != "" {
		s.clients[dev] = true
	}
	if !f.Start.IsZero() {
		if s.first.IsZero() || f.Start.Before(s.first) {
			s.first = f.Start
		}
		if f.End.After(s.last) {
			s.last = f.End
		} else if f.Start.After(s.last) {
			s.last = f.Start
		}
	}
	if f.Transport == flow.TransportDNS && f.DNS != nil {
		s.lookups++
		s.dns[f.DNS.Name] = true
		if len(f.Notes) > 0 {
			s.dnsNotes = countNotes(s.dnsNotes, f.Notes)
		}
		return
	}
	host := f.HostOrAddr()
	d := s.dests[host]
	if d == nil {
		d = &Destination{Host: host, Methods: map[string]int{}, Transports: map[flow.Transport]int{}, Apps: map[string]int{}, Data: map[string]*Datum{}}
		s.dests[host] = d
	}
	if f.Dest.Owner != "" || d.Dest.Site == "" {
		party := d.Dest.Party
		d.Dest = f.Dest
		if f.Dest.Party == "" {
			d.Dest.Party = party
		}
	}
	if f.App != "" {
		d.Apps[f.App]++
	}
	if len(f.Notes) > 0 {
		d.Notes = countNotes(d.Notes, f.Notes)
	}
	if n, ok := detect.OpaqueNote(f); ok {
		d.Notes = countNotes(d.Notes, flow.Notes{n}) // read back from a store that kept no notes
	}
	var counted map[string]bool // a value repeated inside one request counts once
	if len(f.Findings) > 0 {
		counted = map[string]bool{}
	}
	plain := f.Transport.Cleartext()
	var mask uint64 // kinds this flow carried, for the kinds over time
	from := len(s.moreKinds)
	for _, x := range f.Findings {
		if x.Context {
			continue
		}
		if Exposed(f, x) {
			d.Cleartext = true
		}
		k := string(x.Kind) + "\x00" + x.Value
		dt := d.Data[k]
		if dt != nil {
			if !counted[k] {
				dt.Count++
				if kept(f, x.Kind) {
					dt.Stopped++
				}
			}
		} else {
			dt = &Datum{Kind: x.Kind, Value: x.Value, Path: x.Path, Method: x.Method, Count: 1}
			if kept(f, x.Kind) {
				dt.Stopped = 1
			}
			d.Data[k] = dt
		}
		dt.Cleartext = dt.Cleartext || plain
		counted[k] = true
		if f.Start.IsZero() {
			continue
		}
		if i := s.kindBit(x.Kind); i < 64 {
			mask |= 1 << i
		} else if !slices.Contains(s.moreKinds[from:], moreStamp{f.Start.UnixNano(), i}) {
			s.moreKinds = append(s.moreKinds, moreStamp{f.Start.UnixNano(), i})
		}
	}
	if mask != 0 {
		s.kindTimes = append(s.kindTimes, kindStamp{f.Start.UnixNano(), mask})
	}
	d.Requests++
	if !f.Start.IsZero() {
		s.times = append(s.times, stamp{f.Start.UnixNano(), d})
	}
	if f.Request != nil && !s.NoSchema {
		s.learn(f, d, vals, decoded)
	}
	d.BytesUp += f.BytesUp
	d.BytesDown += f.BytesDown
	if f.Request != nil {
		d.Methods[f.Request.Method]++
	}
	d.Transports[f.Transport]++
	if !f.Start.IsZero() && (d.First.IsZero() || f.Start.Before(d.First)) {
		d.First = f.Start
	}
	end := f.End
	if end.IsZero() {
		end = f.Start
	}
	if end.After(d.Last) {
		d.Last = end
	}
}

// learnAll is how many requests of an endpoint are all learned; beyond, one
// in every requests/learnAll is (about learnAll more per tenfold growth), so a
// busy endpoint costs little more than a quiet one. Findings of the requests
// left out still count toward the identifiers.
const learnAll = 1000

// learn feeds the request's values to its endpoint and the identifier table,
// decoding the request first unless decoded (flows from a store carry
// findings, not decoded values).
func (s *Summary) learn(f *flow.Flow, d *Destination, vals []decode.Value, decoded bool) {
	s.classified = false
	path := endpointPath(f.Request.URL)
	k := d.Host + "\x00" + path
	e := s.endpoints[k]
	if e == nil {
		e = &Endpoint{Host: d.Host, Path: path, Fields: map[string]*Field{}, clients: map[netip.Addr]bool{}}
		s.endpoints[k] = e
		d.Endpoints = append(d.Endpoints, e)
	}
	e.Requests++
	owner := f.Dest.Owner
	if owner == "" {
		owner = d.Host
	}
	if e.Requests > learnAll && s.random()%uint64(e.Requests/learnAll) != 0 {
		s.spare = s.ids.addFindings(owner, d.Host, f.Findings, s.spare)
		return
	}
	if !decoded {
		vals = s.dec.Decode(decode.FromFlow(f.Request), decode.Limits{}).Values
		s.decodes++
	}
	kinds := findingKinds(f.Findings)
	e.learn(f.Client.Addr, vals, kinds)
	s.ids.add(owner, d.Host, vals, kindsOf(vals, kinds))
}

// random is a fixed-seed xorshift generator: which requests of a busy endpoint
// are learned must not follow a period of the traffic, yet the same input
// must give the same report.
func (s *Summary) random() uint64 {
	if s.rng == 0 {
		s.rng = 0x9e3779b97f4a7c15
	}
	s.rng ^= s.rng << 13
	s.rng ^= s.rng >> 7
	s.rng ^= s.rng << 17
	return s.rng
}

// classify gives every endpoint's fields their roles, once after the last Add.
func (s *Summary) classify() {
	if s.classified {
		return
	}
	for _, e := range s.endpoints {
		e.classify()
	}
	s.classified = true
}

// Endpoints returns the endpoints of a destination, most events first.
func (d *Destination) SortedEndpoints() []*Endpoint {
	out := append([]*Endpoint(nil), d.Endpoints...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Events != out[j].Events {
			return out[i].Events > out[j].Events
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// PersistentIDs returns the identifiers that came back, most parties first.
func (s *Summary) PersistentIDs() []*ID { return s.ids.Persistent() }

// Links returns, per party, the identifiers it can tie together.
func (s *Summary) Links() []Link { return s.ids.Links() }

// Destinations returns the destinations, most requests first, then by name.
func (s *Summary) Destinations() []*Destination {
	out := make([]*Destination, 0, len(s.dests))
	for _, d := range s.dests {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		return out[i].Host < out[j].Host
	})
	return out
}

// transportLabel says, in a few letters, how readable the destination's traffic was.
func transportLabel(ts map[flow.Transport]int) string {
	var parts []string
	for _, t := range []flow.Transport{flow.TransportHTTP, flow.TransportHTTPS, flow.TransportTLS, flow.TransportQUIC, flow.TransportTCP, flow.TransportLAN} {
		if ts[t] > 0 {
			label := t.String()
			switch t {
			case flow.TransportHTTP:
				label = "CLEARTEXT"
			case flow.TransportHTTPS:
				label = "https"
			case flow.TransportTLS:
				label = "tls"
			case flow.TransportLAN:
				label = "LAN" // told to every device on the network
			}
			parts = append(parts, label)
		}
	}
	return strings.Join(parts, "+")
}

func methodLabel(m map[string]int) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// Bytes formats a byte count for people.
func Bytes(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

const timeFormat = "2006-01-02 15:04:05"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(timeFormat)
}

// WriteText writes the table of destinations and what each received, plain.
func (s *Summary) WriteText(w io.Writer) error { return s.WriteTerminal(w, false) }

// WriteTerminal writes the text report, in colour if color is set.
func (s *Summary) WriteTerminal(w io.Writer, color bool) error {
	dests := s.Destinations()
	doc := s.Doc()
	var b strings.Builder
	fmt.Fprintf(&b, "%d flows from %d device(s) to %d destination(s)", s.flows, len(s.clients), len(dests))
	if !s.first.IsZero() {
		fmt.Fprintf(&b, ", %s to %s UTC", fmtTime(s.first), fmtTime(s.last))
	}
	b.WriteString("\n")
	if s.lookups > 0 {
		fmt.Fprintf(&b, "DNS: %d lookups of %d names\n", s.lookups, len(s.dns))
	}
	writeNotes(&b, doc.DNSNotes, "  ")
	if len(dests) == 0 {
		b.WriteString("\nNo connections to report.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	rows := [][]string{{"DESTINATION", "OWNER", "REQUESTS", "UP", "DOWN", "METHODS", "TRANSPORT", "FIRST SEEN", "LAST SEEN"}}
	for _, d := range dests {
		methods := methodLabel(d.Methods)
		if methods == "" {
			methods = "-"
		}
		owner := d.Dest.Owner
		if owner == "" {
			owner = "-"
		}
		rows = append(rows, []string{d.Host, owner, fmt.Sprint(d.Requests), Bytes(d.BytesUp), Bytes(d.BytesDown),
			methods, transportLabel(d.Transports), fmtTime(d.First), fmtTime(d.Last)})
	}
	b.WriteString("\n")
	writeTable(&b, rows, map[int]bool{2: true, 3: true, 4: true})
	b.WriteString("\nCLEARTEXT: sent unencrypted, readable by anyone on the network. tls/quic: encrypted and not decrypted (only the name is known).\n")
	s.writeStopped(&b)
	s.writeFindings(&b, doc, style(color))
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTable pads columns; right-aligned columns are named in right.
func writeTable(b *strings.Builder, rows [][]string, right map[int]bool) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, r := range rows {
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if right[i] {
				b.WriteString(pad + c)
			} else if i == len(r)-1 {
				b.WriteString(c)
			} else {
				b.WriteString(c + pad)
			}
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		b.WriteString("\n")
	}
}

// Flows returns how many flows were added.
func (s *Summary) Flows() int { return s.flows }

// kept reports whether data of the kind in f was kept from its party: the
// request was blocked, or the kind taken out of (or faked in) what was sent.
func kept(f *flow.Flow, kind flow.Kind) bool {
	switch f.Verdict.Action {
	case flow.ActionBlock:
		return true
	case flow.ActionRedact:
		for _, r := range f.Verdict.Redactions {
			if r.Kind == kind {
				return true
			}
		}
	}
	return false
}
