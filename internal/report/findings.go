package report

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"phonehome/internal/detect"
	"phonehome/internal/detect/pii"
	"phonehome/internal/flow"
)

// kindOrder sorts data kinds as a reader wants them: identifiers, person,
// location, behaviour, then the device description.
var kindOrder = func() map[flow.Kind]int {
	m := map[flow.Kind]int{}
	for i, k := range pii.Kinds {
		m[k] = i
	}
	m[detect.OpaquePayload] = len(pii.Kinds)
	return m
}()

// Mask hides the middle of a value that identifies someone, so a report can be
// shared; behaviour (URLs, searches, app lists) and device descriptions are
// shown as they are, shortened.
func Mask(kind flow.Kind, v string) string {
	switch kind {
	case pii.Password:
		return "••••••"
	case pii.VisitedURL, pii.SearchQuery, pii.AppList, detect.OpaquePayload, pii.SenderApp,
		pii.DeviceModel, pii.Manufacturer, pii.OSVersion, pii.AppVersion, pii.Locale, pii.Timezone, pii.Carrier, pii.NetworkType, pii.ScreenSize:
		return clip(v, 60)
	}
	n := utf8.RuneCountInString(v)
	r := []rune(v)
	switch {
	case n <= 4:
		return strings.Repeat("•", n)
	case n <= 10:
		return string(r[:2]) + strings.Repeat("•", n-4) + string(r[n-2:])
	}
	return string(r[:4]) + "…" + string(r[n-4:])
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// writeFindings writes, per destination that received personal data, what it
// received and, per endpoint, its events and what rides on every event; then
// the identifiers that come back and who can link them.
func (s *Summary) writeFindings(b *strings.Builder, doc *Doc, st style) {
	started := false
	for _, p := range doc.Parties {
		for _, h := range p.Hosts {
			if len(h.Data) == 0 && !hasSchema(h) && !worthShowing(h.Notes) {
				continue
			}
			if !started {
				b.WriteString("\n" + st.bold("WHAT WAS SENT, BY DESTINATION") + " (values masked; --format json shows them in full)\n")
				started = true
			}
			fmt.Fprintf(b, "\n%s — %s\n", st.bold(h.Host), hostLabel(p, h))
			if h.Cleartext {
				b.WriteString(st.red("  ! sent in CLEARTEXT or in the URL of a third-party request: others can read it") + "\n")
			}
			if len(h.Apps) > 0 {
				fmt.Fprintf(b, "  sent by: %s\n", strings.Join(h.Apps, ", "))
			}
			rows := make([][]string, 0, len(h.Data))
			for _, x := range h.Data {
				count := ""
				if x.Count > 1 {
					count = fmt.Sprintf("×%d", x.Count)
				}
				rows = append(rows, []string{"  " + string(x.Kind), Mask(x.Kind, x.Value), count, x.Path})
			}
			if len(rows) > 0 {
				writeTable(b, rows, map[int]bool{2: true})
			}
			for _, e := range h.Endpoints {
				writeEndpoint(b, e)
			}
			writeNotes(b, h.Notes, "  ")
		}
	}
	writeIDs(b, doc, st)
}

func hasSchema(h HostDoc) bool {
	for _, e := range h.Endpoints {
		if e.Events >= 2 {
			return true
		}
	}
	return false
}

// writeEndpoint writes an endpoint the way the seed write-up lists telemetry:
// the events, then the fields attached to every event.
func writeEndpoint(b *strings.Builder, e EndpointDoc) {
	if e.Events < 2 {
		return // one request: nothing to tell apart
	}
	fmt.Fprintf(b, "  %s: %s\n", e.Path, countsLabel(e))
	if len(e.EventKinds) > 0 {
		b.WriteString("    Events:\n")
		rows := make([][]string, 0, len(e.EventKinds))
		for _, ev := range e.EventKinds {
			count := ""
			if ev.Count > 1 {
				count = fmt.Sprintf("×%d", ev.Count)
			}
			rows = append(rows, []string{"      " + ev.Name, count, fieldList(ev.Fields, 8)})
		}
		writeTable(b, rows, map[int]bool{1: true})
	} else if len(e.EventData) > 0 {
		fmt.Fprintf(b, "    Varies per event: %s\n", fieldList(e.EventData, 12))
	}
	if len(e.Annotations) > 0 {
		fmt.Fprintf(b, "    Attached to every event: %s\n", fieldList(e.Annotations, 16))
	}
}

func countsLabel(e EndpointDoc) string {
	req := plural(e.Requests, "request")
	if e.Batched > 0 {
		approx := ""
		if e.Learned < e.Requests {
			approx = "about "
		}
		req = fmt.Sprintf("%s, %s%s in batches", req, approx, plural(e.Events, "event"))
	}
	if e.Learned < e.Requests {
		req += fmt.Sprintf(" (fields learned from %d of them)", e.Learned)
	}
	return req
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// fieldList names up to n fields, data-carrying ones first.
func fieldList(fs []FieldDoc, n int) string {
	parts := make([]string, 0, min(len(fs), n)+1)
	for i, f := range fs {
		if i == n {
			parts = append(parts, fmt.Sprintf("and %d more", len(fs)-n))
			break
		}
		parts = append(parts, FieldLabel(f))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// writeIDs lists the persistent identifiers and the links between them.
func writeIDs(b *strings.Builder, doc *Doc, st style) {
	if len(doc.IDs) == 0 {
		return
	}
	b.WriteString("\n" + st.bold("IDENTIFIERS THAT COME BACK") + " (the same value in more than one event)\n")
	rows := make([][]string, 0, len(doc.IDs))
	for i, id := range doc.IDs {
		if i == 20 {
			fmt.Fprintf(b, "  and %d more (--format json lists all)\n", len(doc.IDs)-20)
			break
		}
		rows = append(rows, []string{"  " + id.Name, Mask(id.Kind, id.Value), plural(id.Events, "event"), strings.Join(id.Parties, ", ")})
	}
	writeTable(b, rows, map[int]bool{2: true})
	for _, l := range doc.Links {
		fmt.Fprintf(b, "  %s\n", LinkSentence(l))
	}
}

// LinkSentence says what a party can tie together.
func LinkSentence(l LinkDoc) string {
	return fmt.Sprintf("%s can tie %s together: they travel in the same %s.", l.Party, andList(l.Names), plural(l.Requests, "request"))
}

func andList(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// hostLabel describes a host's owner, category and party.
func hostLabel(p Party, h HostDoc) string {
	var parts []string
	if p.Owner != "" {
		parts = append(parts, p.Owner)
	}
	if h.Category != "" {
		c := h.Category
		if h.SDK != "" {
			c += " (" + h.SDK + ")"
		}
		parts = append(parts, c)
	}
	switch h.Party {
	case flow.PartyFirst:
		parts = append(parts, "first party")
	case flow.PartyThird:
		parts = append(parts, "third party")
	}
	if len(parts) == 0 {
		return "unknown owner"
	}
	return strings.Join(parts, ", ")
}

// style adds terminal colour when writing to one.
type style bool

func (s style) bold(t string) string {
	if !s {
		return t
	}
	return "\x1b[1m" + t + "\x1b[0m"
}

func (s style) red(t string) string {
	if !s {
		return t
	}
	return "\x1b[31m" + t + "\x1b[0m"
}

// FindingJSON is the JSON Lines form of one finding (documented in the README).
type FindingJSON struct {
	Type       string      `json:"type"` // always "finding"
	Flow       int64       `json:"flow"`
	Time       string      `json:"time,omitempty"`
	Client     string      `json:"client,omitempty"`
	Method     string      `json:"method"`
	URL        string      `json:"url"`
	Host       string      `json:"host"`
	Owner      string      `json:"owner,omitempty"`
	Category   string      `json:"category,omitempty"`
	Party      flow.Party  `json:"party,omitempty"`
	App        string      `json:"app,omitempty"`
	Kind       flow.Kind   `json:"kind"`
	Value      string      `json:"value"`
	Path       string      `json:"path"`
	Found      flow.Method `json:"method_found"`
	Confidence float64     `json:"confidence"`
	Cleartext  bool        `json:"cleartext"`
}

// Findings writes one JSON line per reported finding of f.
func (j *JSONWriter) Findings(f *flow.Flow) error {
	if f.Request == nil {
		return nil
	}
	for _, x := range f.Findings {
		if x.Context {
			continue
		}
		fj := FindingJSON{Type: "finding", Flow: f.ID, Client: f.Client.String(), Method: f.Request.Method, URL: f.Request.URL,
			Host: f.HostOrAddr(), Owner: f.Dest.Owner, Category: f.Dest.Category, Party: f.Dest.Party, App: f.App,
			Kind: x.Kind, Value: x.Value, Path: x.Path, Found: x.Method, Confidence: x.Confidence, Cleartext: Exposed(f, x)}
		if !f.Start.IsZero() {
			fj.Time = f.Start.UTC().Format("2006-01-02T15:04:05.999999999Z07:00")
		}
		if err := j.enc.Encode(fj); err != nil {
			return err
		}
	}
	return nil
}

// Exposed reports whether a finding travelled where others can read it: over
// plain HTTP, or in the URL of a request to a third party (URLs end up in
// server logs, proxies and Referer headers).
func Exposed(f *flow.Flow, x flow.Finding) bool {
	if f.Transport.Cleartext() {
		return true
	}
	inURL := strings.HasPrefix(x.Path, "query:") || strings.HasPrefix(x.Path, "path[")
	return inURL && f.Dest.Party == flow.PartyThird
}
