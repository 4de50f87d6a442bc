package report

import (
	"encoding/json"
	"strings"
	"testing"

	"phonehome/internal/flow"
)

// TestVerdictJSONAndStopped: a flow line carries its verdict only when the
// policy did more than allow, and the text report says what was stopped,
// per party.
func TestVerdictJSONAndStopped(t *testing.T) {
	blocked := &flow.Flow{Host: "tracking.intl.miui.com", Transport: flow.TransportHTTPS, Dest: flow.Destination{Owner: "Xiaomi"},
		Request: &flow.Request{Method: "POST", URL: "https://tracking.intl.miui.com/t"},
		Verdict: flow.Verdict{Action: flow.ActionBlock, Rule: "owner:Xiaomi", List: "phonehome", Status: 403}}
	lookup := &flow.Flow{Host: "tracking.intl.miui.com", Transport: flow.TransportDNS, Dest: flow.Destination{Owner: "Xiaomi"},
		DNS:     &flow.DNS{Name: "tracking.intl.miui.com", Type: "A"},
		Verdict: flow.Verdict{Action: flow.ActionBlock, Rule: "owner:Xiaomi", List: "phonehome"}}
	redacted := &flow.Flow{Host: "app-measurement.com", Transport: flow.TransportHTTPS,
		Request:  &flow.Request{Method: "GET", URL: "https://app-measurement.com/a"},
		Response: &flow.Response{Status: 204},
		Verdict:  flow.Verdict{Action: flow.ActionRedact, Rule: "redact imei", Redactions: []flow.Redaction{{Kind: "imei", Path: "query:imei"}}}}
	allowed := &flow.Flow{Host: "example.org", Transport: flow.TransportHTTPS, Request: &flow.Request{Method: "GET", URL: "https://example.org/"}}

	b, _ := json.Marshal(ToJSON(blocked))
	if !strings.Contains(string(b), `"verdict":{"action":"block","rule":"owner:Xiaomi","list":"phonehome","status":403}`) {
		t.Errorf("blocked flow line: %s", b)
	}
	b, _ = json.Marshal(ToJSON(redacted))
	if !strings.Contains(string(b), `"verdict":{"action":"redact","rule":"redact imei","redactions":[{"kind":"imei","path":"query:imei"}]}`) {
		t.Errorf("redacted flow line: %s", b)
	}
	if b, _ = json.Marshal(ToJSON(allowed)); strings.Contains(string(b), "verdict") {
		t.Errorf("an allowed flow has no verdict: %s", b)
	}

	s := NewSummary()
	for _, f := range []*flow.Flow{blocked, blocked, lookup, redacted, allowed} {
		s.Add(f)
	}
	var out strings.Builder
	if err := s.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	i := strings.Index(text, "WHAT WAS STOPPED")
	if i < 0 {
		t.Fatalf("no section:\n%s", text)
	}
	sec := text[i:]
	for _, want := range []string{"Xiaomi", "owner:Xiaomi from phonehome ×3", "app-measurement.com", "1 (imei)", "204"} {
		if !strings.Contains(sec, want) {
			t.Errorf("section lacks %q:\n%s", want, sec)
		}
	}
	st := s.Stopped()
	if st[0].Party != "Xiaomi" || st[0].Blocked != 2 || st[0].Retried != 1 || st[0].Lookups != 1 {
		t.Errorf("Xiaomi: %+v", st[0])
	}
	if strings.Contains(sec, "example.org") {
		t.Errorf("an allowed host was not stopped:\n%s", sec)
	}
	quiet := NewSummary()
	quiet.Add(allowed)
	out.Reset()
	quiet.WriteText(&out)
	if strings.Contains(out.String(), "WHAT WAS STOPPED") {
		t.Error("nothing stopped: no section")
	}
}

// TestDiffTellsKeptFromGone: after a change, data phonehome kept from a
// party (the request blocked, the kind redacted, the host refused at DNS) is
// told apart from data the app no longer sent, and neither is "still sent".
func TestDiffTellsKeptFromGone(t *testing.T) {
	req := func(host, imei string, v flow.Verdict) *flow.Flow {
		return &flow.Flow{Host: host, Transport: flow.TransportHTTPS,
			Request:  &flow.Request{Method: "POST", URL: "https://" + host + "/t"},
			Findings: []flow.Finding{{Kind: "imei", Value: imei, Path: "body › json:imei"}},
			Verdict:  v}
	}
	const imei = "356938035643809"
	block := flow.Verdict{Action: flow.ActionBlock, Rule: "tracker.example"}
	redact := flow.Verdict{Action: flow.ActionRedact, Rule: "redact imei", Redactions: []flow.Redaction{{Kind: "imei"}}}
	before, after := NewSummary(), NewSummary()
	for _, h := range []string{"tracker.example", "redacted.example", "refused.example", "quit.example", "kept-on.example"} {
		before.Add(req(h, imei, flow.Verdict{}))
	}
	after.Add(req("tracker.example", imei, block))
	after.Add(req("tracker.example", imei, block))
	after.Add(req("redacted.example", imei, redact))
	after.Add(&flow.Flow{Host: "refused.example", Transport: flow.TransportDNS,
		DNS: &flow.DNS{Name: "refused.example.", Type: "A"}, Verdict: block})
	after.Add(req("kept-on.example", imei, flow.Verdict{}))
	bd, ad := before.Doc(), after.Doc()
	bd.Session, ad.Session = "before", "after"
	d := Diff(bd, ad)
	hosts := func(items []DiffItem) (hs []string) {
		for _, x := range items {
			hs = append(hs, x.Host)
		}
		return hs
	}
	if got := strings.Join(hosts(d.Kept), " "); got != "redacted.example refused.example tracker.example" {
		t.Errorf("kept back by phonehome: %s", got)
	}
	if got := strings.Join(hosts(d.Gone), " "); got != "quit.example" {
		t.Errorf("no longer sent by the app: %s", got)
	}
	if got := strings.Join(hosts(d.Still), " "); got != "kept-on.example" {
		t.Errorf("still sent: %s", got)
	}
	for _, x := range d.Kept {
		if x.Host == "tracker.example" && (x.Before != 1 || x.Tried != 2 || x.After != 0) {
			t.Errorf("blocked twice after: %+v", x)
		}
	}
	var out strings.Builder
	if err := WriteDiffText(&out, d, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"3 kept back by phonehome, 1 no longer sent by the app", "STOPPED BY PHONEHOME", "1 → 2 tried", "1 → host refused", "STOPPED BY THE APP"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("diff text lacks %q:\n%s", want, out.String())
		}
	}
}
