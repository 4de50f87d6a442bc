package report

import (
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes the report as Markdown, values masked.
func WriteMarkdown(w io.Writer, doc *Doc) error {
	var b strings.Builder
	b.WriteString("# What was sent, and to whom\n\n")
	b.WriteString(overview(doc) + "\n")
	mdNotes(&b, "Notes on the DNS lookups", doc.DNSNotes)
	if len(doc.Parties) == 0 {
		b.WriteString("\nNo connections to report.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	b.WriteString("\n| Party | Hosts | Requests | Sent | Data received | Cleartext |\n|---|---:|---:|---:|---|---|\n")
	for _, p := range doc.Parties {
		clear := ""
		if p.Cleartext {
			clear = "**yes**"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s |\n", mdCell(p.Name), len(p.Hosts), p.Requests, Bytes(p.BytesUp),
			mdCell(joinKinds(p.Kinds, ", ")), clear)
	}
	for _, p := range doc.Parties {
		fmt.Fprintf(&b, "\n## %s\n", mdText(p.Name))
		for _, h := range p.Hosts {
			fmt.Fprintf(&b, "\n### %s\n\n%s · %s · %s · %s up, %s down\n", mdText(h.Host), mdText(hostLabel(p, h)),
				plural(h.Requests, "request"), transportWords(h), Bytes(h.BytesUp), Bytes(h.BytesDown))
			if h.Cleartext {
				b.WriteString("\n> **Sent in cleartext** (or in the URL of a third-party request): anyone on the network, or in the logs, can read it.\n")
			}
			if len(h.Apps) > 0 {
				fmt.Fprintf(&b, "\nSent by: %s\n", mdText(strings.Join(h.Apps, ", ")))
			}
			if len(h.Data) > 0 {
				b.WriteString("\n| Data | Value (masked) | Requests | Evidence |\n|---|---|---:|---|\n")
				for _, x := range h.Data {
					fmt.Fprintf(&b, "| %s | %s | %d | `%s` |\n", x.Kind, mdCell(Mask(x.Kind, x.Value)), x.Count, strings.ReplaceAll(x.Path, "`", "'"))
				}
			}
			for _, e := range h.Endpoints {
				if e.Events < 2 {
					continue
				}
				fmt.Fprintf(&b, "\n#### `%s` — %s\n", strings.ReplaceAll(e.Path, "`", "'"), countsLabel(e))
				if len(e.EventKinds) > 0 {
					b.WriteString("\n**Events**\n\n| Event | Count | Carries |\n|---|---:|---|\n")
					for _, ev := range e.EventKinds {
						fmt.Fprintf(&b, "| %s | %d | %s |\n", mdCell(ev.Name), ev.Count, mdCell(fieldList(ev.Fields, 12)))
					}
				} else if len(e.EventData) > 0 {
					fmt.Fprintf(&b, "\n**Varies per event:** %s\n", mdText(fieldList(e.EventData, 16)))
				}
				if len(e.Annotations) > 0 {
					fmt.Fprintf(&b, "\n**Attached to every event:** %s\n", mdText(fieldList(e.Annotations, 24)))
				}
			}
			mdNotes(&b, "Notes", h.Notes)
		}
	}
	if len(doc.IDs) > 0 {
		b.WriteString("\n## Identifiers that come back\n\nThe same value in more than one event: whoever receives it can recognise this device again.\n\n")
		b.WriteString("| Identifier | Value (masked) | Events | Requests | Parties |\n|---|---|---:|---:|---|\n")
		for _, id := range doc.IDs {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %s |\n", mdCell(id.Name), mdCell(Mask(id.Kind, id.Value)), id.Events, id.Requests,
				mdCell(strings.Join(id.Parties, ", ")))
		}
		if len(doc.Links) > 0 {
			b.WriteString("\n")
			for _, l := range doc.Links {
				fmt.Fprintf(&b, "- %s\n", mdText(LinkSentence(l)))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdNotes writes a notes section as a list under a bold title.
func mdNotes(b *strings.Builder, title string, notes []NoteDoc) {
	if len(notes) == 0 {
		return
	}
	fmt.Fprintf(b, "\n**%s**\n\n", title)
	for _, n := range notes {
		fmt.Fprintf(b, "- `%s`: %s\n", noteCount(n), mdText(noteWords(n)))
	}
}

// overview is the report's first sentence.
func overview(doc *Doc) string {
	hosts := 0
	for _, p := range doc.Parties {
		hosts += len(p.Hosts)
	}
	s := fmt.Sprintf("%d flows from %d device(s) to %d destination(s) of %d part%s", doc.Flows, doc.Devices, hosts, len(doc.Parties),
		map[bool]string{true: "y", false: "ies"}[len(doc.Parties) == 1])
	if doc.Session != "" {
		s = fmt.Sprintf("Session %q: %s", doc.Session, s)
	}
	if !doc.First.IsZero() {
		s += fmt.Sprintf(", %s to %s UTC", fmtTime(doc.First), fmtTime(doc.Last))
	}
	s += "."
	if doc.DNSLookups > 0 {
		s += fmt.Sprintf(" DNS: %d lookups of %d names.", doc.DNSLookups, doc.DNSNames)
	}
	return s
}

// transportWords says how readable a host's traffic was. It reads the
// transports only: whether personal data was exposed is said apart.
func transportWords(h HostDoc) string {
	switch {
	case h.Transport == "CLEARTEXT":
		return "cleartext HTTP"
	case strings.Contains(h.Transport, "CLEARTEXT"):
		return "partly cleartext HTTP"
	case strings.Contains(h.Transport, "https"):
		return "TLS, decrypted"
	case h.Transport != "":
		return "encrypted (" + h.Transport + "), not decrypted"
	}
	return "-"
}

var mdEscaper = strings.NewReplacer("\\", "\\\\", "*", "\\*", "_", "\\_", "`", "\\`", "[", "\\[", "]", "\\]", "<", "&lt;", ">", "&gt;", "#", "\\#")

// mdText escapes Markdown in running text.
func mdText(s string) string { return mdEscaper.Replace(s) }

// mdCell escapes a table cell.
func mdCell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(mdText(s), "|", "\\|"), "\n", " ")
}
