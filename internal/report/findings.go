package report

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"phonehome/internal/detect/pii"
	"phonehome/internal/flow"
)

// kindOrder sorts data kinds as a reader wants them: identifiers, person,
// location, behaviour, then the device description.
var kindOrder = func() map[string]int {
	m := map[string]int{}
	for i, k := range pii.Kinds {
		m[k] = i
	}
	m["opaque_payload"] = len(pii.Kinds)
	return m
}()

// Mask hides the middle of a value that identifies someone, so a report can be
// shared; behaviour (URLs, searches, app lists) and device descriptions are
// shown as they are, shortened.
func Mask(kind, v string) string {
	switch kind {
	case pii.Password:
		return "••••••"
	case pii.VisitedURL, pii.SearchQuery, pii.AppList, "opaque_payload", pii.SenderApp,
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

func destLabel(d *Destination) string {
	var parts []string
	if d.Dest.Owner != "" {
		parts = append(parts, d.Dest.Owner)
	}
	if d.Dest.Category != "" {
		c := d.Dest.Category
		if d.Dest.SDK != "" {
			c += " (" + d.Dest.SDK + ")"
		}
		parts = append(parts, c)
	}
	switch d.Dest.Party {
	case "first":
		parts = append(parts, "first party")
	case "third":
		parts = append(parts, "third party")
	}
	if len(parts) == 0 {
		return "unknown owner"
	}
	return strings.Join(parts, ", ")
}

// writeFindings writes, per destination that received personal data, what it received.
func (s *Summary) writeFindings(b *strings.Builder) {
	dests := s.Destinations()
	started := false
	for _, d := range dests {
		if len(d.Data) == 0 {
			continue
		}
		if !started {
			b.WriteString("\nWHAT WAS SENT, BY DESTINATION (values masked; --format json shows them in full)\n")
			started = true
		}
		fmt.Fprintf(b, "\n%s — %s\n", d.Host, destLabel(d))
		if d.Cleartext {
			b.WriteString("  ! sent in CLEARTEXT or in the URL of a third-party request: others can read it\n")
		}
		if len(d.Apps) > 0 {
			apps := make([]string, 0, len(d.Apps))
			for a := range d.Apps {
				apps = append(apps, a)
			}
			sort.Strings(apps)
			fmt.Fprintf(b, "  sent by: %s\n", strings.Join(apps, ", "))
		}
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
		rows := make([][]string, 0, len(data))
		for _, x := range data {
			count := ""
			if x.Count > 1 {
				count = fmt.Sprintf("×%d", x.Count)
			}
			rows = append(rows, []string{"  " + x.Kind, Mask(x.Kind, x.Value), count, x.Path})
		}
		writeTable(b, rows, map[int]bool{2: true})
	}
}

// FindingJSON is the JSON Lines form of one finding (documented in the README).
type FindingJSON struct {
	Type       string  `json:"type"` // always "finding"
	Flow       int64   `json:"flow"`
	Time       string  `json:"time,omitempty"`
	Client     string  `json:"client,omitempty"`
	Method     string  `json:"method"`
	URL        string  `json:"url"`
	Host       string  `json:"host"`
	Owner      string  `json:"owner,omitempty"`
	Category   string  `json:"category,omitempty"`
	Party      string  `json:"party,omitempty"`
	App        string  `json:"app,omitempty"`
	Kind       string  `json:"kind"`
	Value      string  `json:"value"`
	Path       string  `json:"path"`
	Found      string  `json:"method_found"`
	Confidence float64 `json:"confidence"`
	Cleartext  bool    `json:"cleartext"`
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
	return inURL && f.Dest.Party == "third"
}
