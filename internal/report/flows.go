package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"phonehome/internal/flow"
)

// FlowLine writes one flow as a line of text for --flows.
func FlowLine(w io.Writer, f *flow.Flow) error {
	var what string
	switch {
	case f.Request != nil:
		status := "---"
		if f.Response != nil {
			status = fmt.Sprint(f.Response.Status)
		}
		what = fmt.Sprintf("%s %s %s", f.Request.Method, f.Request.URL, status)
	case f.DNS != nil:
		what = fmt.Sprintf("DNS %s %s", f.DNS.Type, f.DNS.Name)
		if f.DNS.Answered {
			what += " → " + f.DNS.RCode
			if len(f.DNS.Answers) > 0 {
				what += " " + strings.Join(f.DNS.Answers, ",")
			}
		}
	case f.TLS != nil:
		what = fmt.Sprintf("%s %s", strings.ToUpper(f.Transport.String()), f.HostOrAddr())
		if len(f.TLS.ALPN) > 0 {
			what += " alpn=" + strings.Join(f.TLS.ALPN, ",")
		}
	default:
		what = fmt.Sprintf("%s %s", strings.ToUpper(f.Transport.String()), f.HostOrAddr())
	}
	line := fmt.Sprintf("%s  %-21s → %-21s %-5s %s  ↑%s ↓%s", fmtClock(f.Start), f.Client.String(), f.Server.String(),
		f.Transport, what, Bytes(f.BytesUp), Bytes(f.BytesDown))
	if len(f.Notes) > 0 {
		line += "  [" + f.Notes.String() + "]"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

func fmtClock(t time.Time) string {
	if t.IsZero() {
		return "--:--:--.---"
	}
	return t.UTC().Format("15:04:05.000")
}

// FlowJSON is the stable JSON Lines form of a flow (documented in the README).
type FlowJSON struct {
	Type         string        `json:"type"` // always "flow"
	ID           int64         `json:"id"`
	Source       string        `json:"source"`
	Seq          int           `json:"seq"`
	Time         *time.Time    `json:"time,omitempty"`
	End          *time.Time    `json:"end,omitempty"`
	Client       string        `json:"client,omitempty"`
	Server       string        `json:"server,omitempty"`
	Host         string        `json:"host"`
	Transport    string        `json:"transport"`
	Cleartext    bool          `json:"cleartext"`
	Method       string        `json:"method,omitempty"`
	URL          string        `json:"url,omitempty"`
	Status       int           `json:"status,omitempty"`
	RequestBody  *BodyJSON     `json:"request_body,omitempty"`
	ResponseBody *BodyJSON     `json:"response_body,omitempty"`
	BytesUp      int64         `json:"bytes_up"`
	BytesDown    int64         `json:"bytes_down"`
	TLS          *flow.TLSInfo `json:"tls,omitempty"`
	DNS          *flow.DNS     `json:"dns,omitempty"`
	Headers      *HeadersJSON  `json:"headers,omitempty"`
	Notes        []string      `json:"notes,omitempty"`
	// Verdict is what the policy did, only when it did not simply allow.
	Verdict *VerdictJSON `json:"verdict,omitempty"`
}

// VerdictJSON is a policy decision: the action by its name, the rule and the
// list that decided.
type VerdictJSON struct {
	Action     string          `json:"action"`
	Rule       string          `json:"rule,omitempty"`
	List       string          `json:"list,omitempty"`
	Status     int             `json:"status,omitempty"`
	Redactions []RedactionJSON `json:"redactions,omitempty"`
}

// RedactionJSON is one value a forwarded request lacked.
type RedactionJSON struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
}

// BodyJSON describes a body without its content.
type BodyJSON struct {
	Size        int64  `json:"size"`
	ContentType string `json:"content_type,omitempty"`
	Truncated   bool   `json:"truncated,omitempty"`
	Incomplete  bool   `json:"incomplete,omitempty"`
}

// HeadersJSON carries both header lists as [name, value] pairs, in order.
type HeadersJSON struct {
	Request  [][2]string `json:"request,omitempty"`
	Response [][2]string `json:"response,omitempty"`
}

func pairs(h flow.Headers) [][2]string {
	if len(h) == 0 {
		return nil
	}
	out := make([][2]string, len(h))
	for i, x := range h {
		out[i] = [2]string{x.Name, x.Value}
	}
	return out
}

func bodyJSON(b flow.Body, h flow.Headers) *BodyJSON {
	if b.Size == 0 && !b.Incomplete {
		return nil
	}
	return &BodyJSON{Size: b.Size, ContentType: h.Get("Content-Type"), Truncated: b.Truncated, Incomplete: b.Incomplete}
}

// ToJSON converts a flow to its JSON Lines form.
func ToJSON(f *flow.Flow) FlowJSON {
	j := FlowJSON{Type: "flow", ID: f.ID, Source: f.Source, Seq: f.Seq, Client: f.Client.String(), Server: f.Server.String(),
		Host: f.HostOrAddr(), Transport: f.Transport.String(), BytesUp: f.BytesUp, BytesDown: f.BytesDown,
		TLS: f.TLS, DNS: f.DNS, Notes: f.Notes.Texts()}
	j.Cleartext = f.Transport.Cleartext()
	if !f.Start.IsZero() {
		t := f.Start.UTC()
		j.Time = &t
	}
	if !f.End.IsZero() {
		t := f.End.UTC()
		j.End = &t
	}
	var hj HeadersJSON
	if r := f.Request; r != nil {
		j.Method, j.URL = r.Method, r.URL
		j.RequestBody = bodyJSON(r.Body, r.Headers)
		hj.Request = pairs(r.Headers)
	}
	if r := f.Response; r != nil {
		j.Status = r.Status
		j.ResponseBody = bodyJSON(r.Body, r.Headers)
		hj.Response = pairs(r.Headers)
	}
	if hj.Request != nil || hj.Response != nil {
		j.Headers = &hj
	}
	if v := f.Verdict; v.Action != flow.ActionAllow {
		vj := &VerdictJSON{Action: v.Action.String(), Rule: v.Rule, List: v.List, Status: v.Status}
		for _, r := range v.Redactions {
			vj.Redactions = append(vj.Redactions, RedactionJSON{Kind: string(r.Kind), Path: r.Path})
		}
		j.Verdict = vj
	}
	return j
}

// JSONWriter writes flows as JSON Lines.
type JSONWriter struct{ enc *json.Encoder }

// NewJSONWriter writes to w.
func NewJSONWriter(w io.Writer) *JSONWriter {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &JSONWriter{enc: enc}
}

// Flow writes one flow line.
func (j *JSONWriter) Flow(f *flow.Flow) error { return j.enc.Encode(ToJSON(f)) }
