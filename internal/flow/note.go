package flow

import (
	"encoding/json"
	"fmt"
	"strings"
)

// NoteCode says what kind of thing a note records, so that later stages
// decide on the code and never on the wording of the text.
type NoteCode uint8

const (
	// NoteOther is the zero value: a note of no particular kind (and every
	// note stored before notes had codes).
	NoteOther NoteCode = iota
	// NoteCaptureGap: bytes were missing from a capture (a gap, an early end,
	// a cut by the snap length).
	NoteCaptureGap
	// NoteMalformed: part of the input could not be read as what it claimed to be.
	NoteMalformed
	// NoteUnanswered: a question (a DNS lookup) got no answer in the capture.
	NoteUnanswered
	// NoteDecodeLimit: decoding stopped at a depth, size or ratio limit.
	NoteDecodeLimit
	// NoteUpstream: the server could not be reached, or was not trusted.
	NoteUpstream
	// NoteResponseCut: the answer stopped before its end.
	NoteResponseCut
	// NotePassthrough: the connection was relayed without decrypting it, on
	// purpose (--ignore-hosts, --intercept, a host that refused before).
	NotePassthrough
	// NoteCertRefused: the client refused phonehome's certificate (pinning,
	// or the CA is not installed).
	NoteCertRefused
	// NoteTunnel: bytes that are neither TLS nor HTTP were relayed raw.
	NoteTunnel
	// NoteUpgrade: the connection switched protocols (a WebSocket) and was relayed.
	NoteUpgrade
	// NoteDoH: a DNS-over-HTTPS endpoint was looked up; its lookups are hidden.
	NoteDoH
	// NoteDoHRefused: a lookup of a DNS-over-HTTPS endpoint was refused (--block-doh).
	NoteDoHRefused
	// NoteQUICDropped: the device tried QUIC and it was dropped so it falls back to TCP.
	NoteQUICDropped
	// NoteShed: part of the analysis was skipped because analysis fell behind.
	NoteShed
	// NotePolicy: the policy gave an answer that cannot apply here; the flow was allowed.
	NotePolicy
	// NoteBlocked: the request (or connection, or lookup) was refused by a rule.
	NoteBlocked
	// NoteRedacted: what was forwarded is a copy with values removed.
	NoteRedacted
	// NoteSource: what the source file says about the flow (a mitmproxy error, a
	// non-HTTP flow).
	NoteSource
	// NoteOpaque: a payload nobody can read (encrypted, or in an unknown
	// format) was sent: what it carries cannot be checked. It is not a
	// finding: nothing is known to be in it.
	NoteOpaque
)

var noteNames = [...]string{"other", "capture_gap", "malformed", "unanswered", "decode_limit", "upstream",
	"response_cut", "passthrough", "cert_refused", "tunnel", "upgrade", "doh", "doh_refused", "quic_dropped",
	"shed", "policy", "blocked", "redacted", "source", "opaque"}

func (c NoteCode) String() string {
	if int(c) < len(noteNames) {
		return noteNames[c]
	}
	return "other"
}

// ParseNoteCode is the inverse of String; unknown names give NoteOther.
func ParseNoteCode(s string) NoteCode {
	for i, n := range noteNames {
		if n == s {
			return NoteCode(i)
		}
	}
	return NoteOther
}

func (c NoteCode) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

func (c *NoteCode) UnmarshalText(b []byte) error { *c = ParseNoteCode(string(b)); return nil }

// Note is one thing that was wrong, missing or decided about a flow, in words
// a person reads, with the code later stages read.
type Note struct {
	Code NoteCode `json:"code"`
	Text string   `json:"text"`
}

func (n Note) String() string { return n.Text }

// UnmarshalJSON also reads a bare string, the form notes were stored in
// before they had codes.
func (n *Note) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		n.Code = NoteOther
		return json.Unmarshal(b, &n.Text)
	}
	type plain Note
	return json.Unmarshal(b, (*plain)(n))
}

// Notes is what was noted about a flow, in the order it was noted.
type Notes []Note

// Has reports whether a note with the code is there.
func (ns Notes) Has(c NoteCode) bool {
	for _, n := range ns {
		if n.Code == c {
			return true
		}
	}
	return false
}

// Texts returns the notes' texts.
func (ns Notes) Texts() []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Text
	}
	return out
}

func (ns Notes) String() string { return strings.Join(ns.Texts(), "; ") }

// Note records something about this flow.
func (f *Flow) Note(code NoteCode, text string) {
	f.Notes = append(f.Notes, Note{Code: code, Text: text})
}

// Notef records something about this flow, formatted.
func (f *Flow) Notef(code NoteCode, format string, args ...any) {
	f.Note(code, fmt.Sprintf(format, args...))
}
