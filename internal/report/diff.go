package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"phonehome/internal/flow"
)

// A diff answers the question of the before/after experiment: after switching
// something off, what went away, what is new, and what is still sent (the same
// kind of data to the same destination).

// DiffItem is one kind of data to one destination.
type DiffItem struct {
	Party  string    `json:"party"`
	Host   string    `json:"host"`
	Kind   flow.Kind `json:"kind"`
	Before int       `json:"before"` // requests that carried it
	After  int       `json:"after"`
	Value  string    `json:"value"` // one value (from the later session when still sent)
	Path   string    `json:"path"`
}

// DiffDoc compares two reports.
type DiffDoc struct {
	Before   string     `json:"before"`
	After    string     `json:"after"`
	Still    []DiffItem `json:"still_sent"`
	Gone     []DiffItem `json:"gone"`
	New      []DiffItem `json:"new"`
	SameIDs  []IDDoc    `json:"same_ids"`  // persistent identifiers seen in both: not reset
	NewHosts []string   `json:"new_hosts"` // destinations contacted only after
	GoneHost []string   `json:"gone_hosts"`
}

type diffKey struct {
	host string
	kind flow.Kind
}

// Diff compares a report made before a change with one made after it.
func Diff(before, after *Doc) *DiffDoc {
	d := &DiffDoc{Before: before.Session, After: after.Session}
	a, b := diffIndex(before), diffIndex(after)
	for k, x := range b {
		if y, ok := a[k]; ok {
			x.Before = y.Before
			d.Still = append(d.Still, x)
		} else {
			x.Before = 0
			d.New = append(d.New, x)
		}
	}
	for k, y := range a {
		if _, ok := b[k]; !ok {
			y.After = 0
			d.Gone = append(d.Gone, y)
		}
	}
	for _, s := range [][]DiffItem{d.Still, d.Gone, d.New} {
		sortItems(s)
	}
	ha, hb := hostSet(before), hostSet(after)
	for h := range hb {
		if !ha[h] {
			d.NewHosts = append(d.NewHosts, h)
		}
	}
	for h := range ha {
		if !hb[h] {
			d.GoneHost = append(d.GoneHost, h)
		}
	}
	sort.Strings(d.NewHosts)
	sort.Strings(d.GoneHost)
	ids := map[string]IDDoc{}
	for _, id := range before.IDs {
		ids[id.Value] = id
	}
	for _, id := range after.IDs {
		if old, ok := ids[id.Value]; ok {
			id.Events += old.Events
			id.Requests += old.Requests
			for _, p := range old.Parties {
				if !contains(id.Parties, p) {
					id.Parties = append(id.Parties, p)
				}
			}
			d.SameIDs = append(d.SameIDs, id)
		}
	}
	return d
}

func diffIndex(doc *Doc) map[diffKey]DiffItem {
	m := map[diffKey]DiffItem{}
	for _, p := range doc.Parties {
		for _, h := range p.Hosts {
			for _, x := range h.Data {
				k := diffKey{h.Host, x.Kind}
				it, ok := m[k]
				if !ok {
					it = DiffItem{Party: p.Name, Host: h.Host, Kind: x.Kind, Value: x.Value, Path: x.Path}
				}
				// requests that carried the kind: at least as many as carried its commonest value
				it.Before = max(it.Before, x.Count)
				it.After = it.Before
				m[k] = it
			}
		}
	}
	// Before and After both hold this side's count; Diff fixes the other.
	return m
}

func hostSet(doc *Doc) map[string]bool {
	m := map[string]bool{}
	for _, p := range doc.Parties {
		for _, h := range p.Hosts {
			m[h.Host] = true
		}
	}
	return m
}

func sortItems(s []DiffItem) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Party != s[j].Party {
			return s[i].Party < s[j].Party
		}
		if s[i].Host != s[j].Host {
			return s[i].Host < s[j].Host
		}
		return kindRank(s[i].Kind) < kindRank(s[j].Kind)
	})
}

// Headline says in one sentence what the change changed.
func (d *DiffDoc) Headline() string {
	kinds, parties := map[flow.Kind]bool{}, map[string]bool{}
	for _, x := range d.Still {
		kinds[x.Kind] = true
		parties[x.Party] = true
	}
	if len(d.Still) == 0 {
		return fmt.Sprintf("Nothing that was sent before is still sent: %d kind-and-destination pairs stopped, %d are new.",
			len(d.Gone), len(d.New))
	}
	partyWord := "parties"
	if len(parties) == 1 {
		partyWord = "party"
	}
	return fmt.Sprintf("After the change, %s still go to %d %s (%d kind-and-destination pairs); %d pairs stopped, %d are new.",
		plural(len(kinds), "data kind"), len(parties), partyWord, len(d.Still), len(d.Gone), len(d.New))
}

// WriteDiffText writes the diff for a terminal or a Markdown file.
func WriteDiffText(w io.Writer, d *DiffDoc, markdown bool) error {
	var b strings.Builder
	h := func(s string) {
		if markdown {
			b.WriteString("\n## " + s + "\n\n")
		} else {
			b.WriteString("\n" + strings.ToUpper(s) + "\n")
		}
	}
	if markdown {
		b.WriteString("# Before and after\n\n")
	}
	fmt.Fprintf(&b, "Before: %s\nAfter:  %s\n", d.Before, d.After)
	if markdown {
		b.WriteString("\n")
	}
	b.WriteString(d.Headline() + "\n")
	section := func(title string, items []DiffItem, counts func(DiffItem) string) {
		if len(items) == 0 {
			return
		}
		h(title)
		var rows [][]string
		if markdown {
			b.WriteString("| Party | Destination | Data | Value (masked) | Requests |\n|---|---|---|---|---:|\n")
		}
		for _, x := range items {
			if markdown {
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", mdCell(x.Party), mdCell(x.Host), x.Kind, mdCell(Mask(x.Kind, x.Value)), counts(x))
				continue
			}
			rows = append(rows, []string{"  " + x.Party, x.Host, string(x.Kind), Mask(x.Kind, x.Value), counts(x)})
		}
		if !markdown {
			writeTable(&b, rows, map[int]bool{4: true})
		}
	}
	section("Still sent", d.Still, func(x DiffItem) string { return fmt.Sprintf("%d → %d", x.Before, x.After) })
	section("Stopped", d.Gone, func(x DiffItem) string { return fmt.Sprint(x.Before) })
	section("New", d.New, func(x DiffItem) string { return fmt.Sprint(x.After) })
	if len(d.SameIDs) > 0 {
		h("Same identifiers in both sessions (not reset)")
		for _, id := range d.SameIDs {
			line := fmt.Sprintf("%s %s, received by %s", id.Name, Mask(id.Kind, id.Value), strings.Join(id.Parties, ", "))
			if markdown {
				b.WriteString("- " + mdText(line) + "\n")
			} else {
				b.WriteString("  " + line + "\n")
			}
		}
	}
	if len(d.NewHosts) > 0 || len(d.GoneHost) > 0 {
		h("Destinations")
		if len(d.NewHosts) > 0 {
			fmt.Fprintf(&b, "  contacted only after: %s\n", strings.Join(d.NewHosts, ", "))
		}
		if len(d.GoneHost) > 0 {
			fmt.Fprintf(&b, "  contacted only before: %s\n", strings.Join(d.GoneHost, ", "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteDiffJSON writes the diff as one JSON line of type "diff", values in full.
func WriteDiffJSON(w io.Writer, d *DiffDoc) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		Type     string `json:"type"`
		Headline string `json:"headline"`
		*DiffDoc
	}{"diff", d.Headline(), d})
}
