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
// kind of data to the same destination). What went away is told apart: data
// phonehome kept from the party (its request blocked, the kind redacted, the
// host's lookups or connections refused) is not data the app stopped sending.

// DiffItem is one kind of data to one destination.
type DiffItem struct {
	Party  string    `json:"party"`
	Host   string    `json:"host"`
	Kind   flow.Kind `json:"kind"`
	Before int       `json:"before"` // requests that carried it to the party
	After  int       `json:"after"`
	// Tried: requests after the change that carried it but were kept from
	// the party by phonehome (blocked, or the kind redacted).
	Tried int    `json:"tried_after,omitempty"`
	Value string `json:"value"` // one value (from the later session when still sent)
	Path  string `json:"path"`
}

// DiffDoc compares two reports.
type DiffDoc struct {
	Before string     `json:"before"`
	After  string     `json:"after"`
	Still  []DiffItem `json:"still_sent"`
	// Kept: sent before, kept from the party after by phonehome's policy
	// (the app still tried, or the host was blocked).
	Kept []DiffItem `json:"stopped_by_phonehome,omitempty"`
	// Gone: sent before, not tried after: the app stopped sending it.
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
		y, was := a[k]
		x.Before = y.After // 0 when it was not sent before
		switch {
		case x.After > 0 && was:
			d.Still = append(d.Still, x)
		case x.After > 0:
			d.New = append(d.New, x)
		case was: // tried, and every time kept from the party
			d.Kept = append(d.Kept, x)
		}
	}
	for k, y := range a {
		if y.After == 0 {
			continue // never reached the party before either
		}
		if _, ok := b[k]; ok {
			continue
		}
		y.Before, y.After = y.After, 0
		if after.Blocked[k.host] > 0 {
			d.Kept = append(d.Kept, y) // the host itself was refused after
		} else {
			d.Gone = append(d.Gone, y)
		}
	}
	for _, s := range [][]DiffItem{d.Still, d.Kept, d.Gone, d.New} {
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
				it.After = max(it.After, x.Count-x.Stopped)
				it.Tried = max(it.Tried, x.Stopped)
				m[k] = it
			}
		}
	}
	// After holds the requests that reached the party, Tried those kept
	// from it, on this side; Diff sets Before from the other side.
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
	stopped := fmt.Sprintf("%d kind-and-destination pairs stopped", len(d.Gone)+len(d.Kept))
	if len(d.Kept) > 0 {
		stopped += fmt.Sprintf(" (%d kept back by phonehome, %d no longer sent by the app)", len(d.Kept), len(d.Gone))
	}
	if len(d.Still) == 0 {
		return fmt.Sprintf("Nothing that was sent before is still sent: %s, %d are new.", stopped, len(d.New))
	}
	partyWord := "parties"
	if len(parties) == 1 {
		partyWord = "party"
	}
	return fmt.Sprintf("After the change, %s still go to %d %s (%d kind-and-destination pairs); %s, %d are new.",
		plural(len(kinds), "data kind"), len(parties), partyWord, len(d.Still), stopped, len(d.New))
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
	section("Stopped by phonehome (the app still tried, or its host was refused)", d.Kept, func(x DiffItem) string {
		if x.Tried == 0 {
			return fmt.Sprintf("%d → host refused", x.Before)
		}
		return fmt.Sprintf("%d → %d tried", x.Before, x.Tried)
	})
	section("Stopped by the app (no longer sent)", d.Gone, func(x DiffItem) string { return fmt.Sprint(x.Before) })
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
