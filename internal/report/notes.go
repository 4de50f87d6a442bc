package report

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"phonehome/internal/flow"
)

// Notes say what phonehome could not see or chose not to: a reader must
// learn from the report itself that it may be missing something, not only
// from the JSON. Every format shows, per destination, one line per code:
// how many flows, and the first note's text as the example.

// noteRank orders codes by what they mean for the report: first what was
// not analysed or not seen (the report may miss data), then what was
// decided, then detail of the capture.
var noteRank = func() map[flow.NoteCode]int {
	m := map[flow.NoteCode]int{}
	for i, c := range []flow.NoteCode{flow.NoteShed, flow.NoteCertRefused, flow.NotePassthrough, flow.NoteOpaque, flow.NoteDecodeLimit,
		flow.NoteUpstream, flow.NoteResponseCut, flow.NoteCaptureGap, flow.NoteMalformed, flow.NoteBlocked, flow.NoteRedacted,
		flow.NotePolicy, flow.NoteDoH, flow.NoteDoHRefused, flow.NoteQUICDropped, flow.NoteTunnel, flow.NoteUpgrade,
		flow.NoteUnanswered, flow.NoteSource, flow.NoteOther} {
		m[c] = i
	}
	return m
}()

// noteGloss says, for the codes whose note texts speak of the mechanism, what
// the code means for what this report shows.
var noteGloss = map[flow.NoteCode]string{
	flow.NoteShed:        "part of the analysis was skipped because phonehome fell behind: this host may have received more than is shown",
	flow.NoteDecodeLimit: "decoding stopped at a limit: data past it was not searched",
	flow.NotePassthrough: "relayed without decrypting: what was sent inside is not in this report",
	flow.NoteCaptureGap:  "bytes were missing from the capture",
	flow.NoteOpaque:      "an unreadable (encrypted or unknown) payload was sent: what it carries cannot be checked",
}

// quietNotes are about how traffic was steered, not about what the report
// may miss: the text report, which shows only the hosts that say something,
// lists them under a host shown for another reason and never shows a host for
// them alone (on a phone that tries QUIC everywhere that would be every host).
var quietNotes = map[flow.NoteCode]bool{flow.NoteQUICDropped: true, flow.NoteUnanswered: true, flow.NoteDoH: true,
	flow.NoteDoHRefused: true}

// worthShowing reports whether any note says the report may miss something.
func worthShowing(notes []NoteDoc) bool {
	for _, n := range notes {
		if !quietNotes[n.Code] {
			return true
		}
	}
	return false
}

// maxNoteExample is how much of a note's text is shown as the example.
const maxNoteExample = 240

// noteDocs orders a destination's note counts for reading.
func noteDocs(counts []NoteDoc) []NoteDoc {
	if len(counts) == 0 {
		return nil
	}
	out := slices.Clone(counts)
	sort.SliceStable(out, func(i, j int) bool { return noteRank[out[i].Code] < noteRank[out[j].Code] })
	return out
}

// noteCount is "shed ×3", the code and, above one, the number of flows.
func noteCount(n NoteDoc) string {
	if n.Flows > 1 {
		return fmt.Sprintf("%s ×%d", n.Code, n.Flows)
	}
	return n.Code.String()
}

// noteWords is what follows the count: the gloss, if any, and the example,
// on one line.
func noteWords(n NoteDoc) string {
	ex := strings.TrimPrefix(n.Example, n.Code.String()+": ") // "upstream: upstream: …" says it twice
	ex = clip(strings.Join(strings.Fields(ex), " "), maxNoteExample)
	gloss := noteGloss[n.Code]
	switch {
	case gloss == "":
		return ex
	case ex == "":
		return gloss
	}
	return gloss + " (e.g. " + ex + ")"
}

// NoteLine says one code's notes in a line: "decode_limit ×3: decode: …".
func NoteLine(n NoteDoc) string { return noteCount(n) + ": " + noteWords(n) }

// writeNotes writes a notes section in text, indented by indent.
func writeNotes(b *strings.Builder, notes []NoteDoc, indent string) {
	if len(notes) == 0 {
		return
	}
	b.WriteString(indent + "notes:\n")
	for _, n := range notes {
		b.WriteString(indent + "  " + NoteLine(n) + "\n")
	}
}
