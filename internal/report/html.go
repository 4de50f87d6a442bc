package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"phonehome/internal/flow"
)

// The HTML report is one self-contained file: styles inline, no script, no
// external asset, charts drawn as inline SVG, so it can be mailed or attached
// to a data-access request and opened anywhere.

//go:embed report.html.tmpl
var htmlTemplate string

var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"mask":      Mask,
	"bytes":     Bytes,
	"plural":    plural,
	"fields":    fieldList,
	"counts":    countsLabel,
	"label":     hostLabel,
	"link":      LinkSentence,
	"transport": transportWords,
	"overview":  overview,
	"join":      strings.Join,
	"joinKinds": joinKinds,
	"when":      fmtTime,
}).Parse(htmlTemplate))

type bar struct {
	Y, W, N      int
	Label, Color string
	Title        string
}

type column struct {
	X, Y, W, H int
	Color      string
	Title      string
}

type cell struct {
	X, Y      int
	Filled    bool
	Cleartext bool
	Title     string
}

type axisLabel struct {
	X, Y int
	Text string
}

type htmlData struct {
	*Doc
	Bars      []bar
	BarsH     int
	Columns   []column
	TimeAxis  []axisLabel
	Legend    []bar
	TimelineW int
	Kinds     []axisLabel
	Rows      []axisLabel
	Cells     []cell
	MatrixW   int
	MatrixH   int
}

// WriteHTML writes the report as one self-contained HTML page, values masked.
func WriteHTML(w io.Writer, doc *Doc) error {
	d := htmlData{Doc: doc}
	colors := map[string]string{}
	for i, p := range doc.Parties {
		colors[p.Name] = palette[i%len(palette)]
	}
	// data kinds per party
	maxKinds := 1
	for _, p := range doc.Parties {
		maxKinds = max(maxKinds, len(p.Kinds))
	}
	for i, p := range doc.Parties {
		d.Bars = append(d.Bars, bar{Y: i * 26, W: 4 + 420*len(p.Kinds)/maxKinds, N: len(p.Kinds), Label: clip(p.Name, 28),
			Color: colors[p.Name], Title: fmt.Sprintf("%s: %s", p.Name, joinKinds(p.Kinds, ", "))})
	}
	d.BarsH = len(d.Bars)*26 + 4
	// requests over time, stacked by party
	t := doc.Timeline
	n := 0
	for _, c := range t.Counts {
		n = max(n, len(c))
	}
	if n > 0 {
		peak := 1
		for i := 0; i < n; i++ {
			sum := 0
			for _, c := range t.Counts {
				sum += c[i]
			}
			peak = max(peak, sum)
		}
		colW := max(4, 600/n)
		d.TimelineW = colW * n
		for i := 0; i < n; i++ {
			y := 160
			for _, p := range doc.Parties {
				c := t.Counts[p.Name]
				if c == nil || c[i] == 0 {
					continue
				}
				h := max(1, 160*c[i]/peak)
				y -= h
				at := t.Start.Add(t.Slice * time.Duration(i))
				d.Columns = append(d.Columns, column{X: i * colW, Y: y, W: colW - 1, H: h, Color: colors[p.Name],
					Title: fmt.Sprintf("%s: %s from %s UTC", p.Name, plural(c[i], "request"), fmtTime(at))})
			}
		}
		d.TimeAxis = []axisLabel{{X: 0, Y: 176, Text: fmtTime(t.Start)}, {X: d.TimelineW, Y: 176, Text: fmtTime(t.Start.Add(t.Slice * time.Duration(n)))}}
		for _, p := range doc.Parties {
			if t.Counts[p.Name] != nil {
				d.Legend = append(d.Legend, bar{Label: p.Name, Color: colors[p.Name]})
			}
		}
	}
	// party × kind matrix
	var kinds []flow.Kind
	seen := map[flow.Kind]bool{}
	for _, p := range doc.Parties {
		for _, k := range p.Kinds {
			if !seen[k] {
				seen[k] = true
				kinds = append(kinds, k)
			}
		}
	}
	sortKinds(kinds)
	const left, top, size = 190, 110, 18
	for i, k := range kinds {
		d.Kinds = append(d.Kinds, axisLabel{X: left + i*size + size/2, Y: top - 6, Text: string(k)})
	}
	for r, p := range doc.Parties {
		d.Rows = append(d.Rows, axisLabel{X: left - 6, Y: top + r*size + 13, Text: clip(p.Name, 28)})
		has := map[flow.Kind]bool{}
		for _, k := range p.Kinds {
			has[k] = true
		}
		for i, k := range kinds {
			title := fmt.Sprintf("%s does not receive %s", p.Name, k)
			if has[k] {
				title = fmt.Sprintf("%s receives %s", p.Name, k)
			}
			d.Cells = append(d.Cells, cell{X: left + i*size, Y: top + r*size, Filled: has[k], Cleartext: has[k] && p.Cleartext, Title: title})
		}
	}
	d.MatrixW = left + len(kinds)*size + 90 // room for the last rotated label
	d.MatrixH = top + len(doc.Parties)*size + 10
	return htmlTmpl.Execute(w, d)
}

func sortKinds(kinds []flow.Kind) {
	for i := 1; i < len(kinds); i++ {
		for j := i; j > 0 && kindRank(kinds[j]) < kindRank(kinds[j-1]); j-- {
			kinds[j], kinds[j-1] = kinds[j-1], kinds[j]
		}
	}
}

// joinKinds is strings.Join for kinds.
func joinKinds(kinds []flow.Kind, sep string) string {
	var b strings.Builder
	for i, k := range kinds {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(string(k))
	}
	return b.String()
}
