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
	"noteCount": noteCount,
	"noteWords": noteWords,
}).Parse(htmlTemplate))

type bar struct {
	Y, W, N      int
	Label, Color string
	Title        string
}

type column struct {
	X, Y, W, H int
	Color      string
	Opacity    string // fill-opacity, for the cells of the kinds over time
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
	Single    string // the party's name when there is one party: its hosts are charted
	Hosts     []bar
	HostsH    int
	HostsMore int // hosts left out of the chart
	Columns   []column
	TimeAxis  []axisLabel
	Legend    []bar
	TimelineW int
	KindRows  []axisLabel // data kinds over time
	KindCells []column
	KindAxis  []axisLabel
	KindTimeW int
	KindTimeH int
	Kinds     []axisLabel
	Rows      []axisLabel
	Cells     []cell
	MatrixW   int
	MatrixH   int
}

// WriteHTML writes the report as one self-contained HTML page, values masked.
func WriteHTML(w io.Writer, doc *Doc) error { return htmlTmpl.Execute(w, htmlDataOf(doc)) }

// maxChartHosts is how many hosts the hosts chart draws; the rest are counted.
const maxChartHosts = 15

// htmlDataOf lays out the charts of a report.
func htmlDataOf(doc *Doc) htmlData {
	d := htmlData{Doc: doc}
	colors := map[string]string{}
	for i, p := range doc.Parties {
		colors[p.Name] = palette[i%len(palette)]
	}
	if len(doc.Parties) == 1 {
		// one bar of data kinds per party would say only a number: chart
		// the party's hosts instead, by requests
		p := doc.Parties[0]
		d.Single = p.Name
		peak := 1
		for _, h := range p.Hosts {
			peak = max(peak, h.Requests)
		}
		for i, h := range p.Hosts {
			if i == maxChartHosts {
				d.HostsMore = len(p.Hosts) - i
				break
			}
			d.Hosts = append(d.Hosts, bar{Y: i * 24, W: 4 + 380*h.Requests/peak, N: h.Requests, Label: clip(h.Host, 38),
				Color: colors[p.Name], Title: fmt.Sprintf("%s: %s, %s up, %s", h.Host, plural(h.Requests, "request"), Bytes(h.BytesUp), transportWords(h))})
		}
		d.HostsH = len(d.Hosts)*24 + 4
	} else {
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
	}
	// every kind received, in the order of the matrix
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
		end := fmtTime(t.Start.Add(t.Slice * time.Duration(n)))
		d.TimeAxis = []axisLabel{{X: 0, Y: 176, Text: fmtTime(t.Start)}, {X: d.TimelineW, Y: 176, Text: end}}
		for _, p := range doc.Parties {
			if t.Counts[p.Name] != nil {
				d.Legend = append(d.Legend, bar{Label: p.Name, Color: colors[p.Name]})
			}
		}
		// data kinds over time: one row per kind, a slice darker the more
		// requests carried the kind in it
		const left, row = 150, 16
		peak = 1
		for _, c := range t.Kinds {
			for _, x := range c {
				peak = max(peak, x)
			}
		}
		r := 0
		for _, k := range kinds {
			c := t.Kinds[k]
			if c == nil {
				continue
			}
			d.KindRows = append(d.KindRows, axisLabel{X: left - 6, Y: r*row + 12, Text: string(k)})
			for i, x := range c {
				if x == 0 {
					continue
				}
				at := t.Start.Add(t.Slice * time.Duration(i))
				d.KindCells = append(d.KindCells, column{X: left + i*colW, Y: r * row, W: colW - 1, H: row - 2,
					Color: palette[0], Opacity: fmt.Sprintf("%.2f", 0.3+0.7*float64(x)/float64(peak)),
					Title: fmt.Sprintf("%s: %s from %s UTC", k, plural(x, "request"), fmtTime(at))})
			}
			r++
		}
		if r > 0 {
			d.KindTimeW = left + d.TimelineW
			d.KindTimeH = r*row + 22
			d.KindAxis = []axisLabel{{X: left, Y: r*row + 14, Text: fmtTime(t.Start)}, {X: d.KindTimeW, Y: r*row + 14, Text: end}}
		}
	}
	// party × kind matrix: a cell is outlined when at least one request
	// carried the kind to the party unencrypted
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
		plain := map[flow.Kind]bool{}
		for _, h := range p.Hosts {
			for _, x := range h.Data {
				plain[x.Kind] = plain[x.Kind] || x.Cleartext
			}
		}
		for i, k := range kinds {
			title := fmt.Sprintf("%s does not receive %s", p.Name, k)
			switch {
			case plain[k]:
				title = fmt.Sprintf("%s receives %s, at least once unencrypted (plain HTTP or DNS)", p.Name, k)
			case has[k]:
				title = fmt.Sprintf("%s receives %s", p.Name, k)
			}
			d.Cells = append(d.Cells, cell{X: left + i*size, Y: top + r*size, Filled: has[k], Cleartext: has[k] && plain[k], Title: title})
		}
	}
	d.MatrixW = left + len(kinds)*size + 90 // room for the last rotated label
	d.MatrixH = top + len(doc.Parties)*size + 10
	return d
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
