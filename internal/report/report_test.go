package report

import (
	"strings"
	"testing"

	"phonehome/internal/flow"
)

func TestMask(t *testing.T) {
	cases := map[[2]string]string{
		{"imei", "356938035643809"}:              "3569…3809",
		{"account_id", "6120847731"}:             "61••••••31",
		{"password", "hunter2"}:                  "••••••",
		{"email", "ab@c"}:                        "••••",
		{"visited_url", "https://example.com/x"}: "https://example.com/x",
	}
	for in, want := range cases {
		if got := Mask(flow.Kind(in[0]), in[1]); got != want {
			t.Errorf("Mask(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}

func TestExposed(t *testing.T) {
	inQuery := flow.Finding{Kind: "advertising_id", Path: "query:gaid"}
	inBody := flow.Finding{Kind: "advertising_id", Path: "body › json:gaid"}
	https := func(party flow.Party) *flow.Flow {
		return &flow.Flow{Transport: flow.TransportHTTPS, Dest: flow.Destination{Party: party}}
	}
	if !Exposed(&flow.Flow{Transport: flow.TransportHTTP}, inBody) {
		t.Error("plain HTTP exposes everything")
	}
	if !Exposed(https(flow.PartyThird), inQuery) || Exposed(https(flow.PartyFirst), inQuery) || Exposed(https(flow.PartyThird), inBody) {
		t.Error("only a URL sent to a third party is exposed over TLS")
	}
}

func TestSummaryGroupsFindings(t *testing.T) {
	s := NewSummary()
	for i := 0; i < 3; i++ {
		s.Add(&flow.Flow{Host: "t.example.com", Transport: flow.TransportHTTPS, App: "com.example.app",
			Dest:     flow.Destination{Owner: "Example", Category: "analytics", Party: "third"},
			Request:  &flow.Request{Method: "POST", URL: "https://t.example.com/e"},
			Findings: []flow.Finding{{Kind: "android_id", Value: "3b6f1e0a9c2d4f81", Path: "body › json:aid"}, {Kind: "android_id", Value: "3b6f1e0a9c2d4f81", Path: "body › json:events[1].aid"}, {Kind: "device_model", Value: "Pixel", Context: true}}})
	}
	var b strings.Builder
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"t.example.com — Example, analytics, third party", "sent by: com.example.app", "android_id  3b6f…4f81  ×3  body › json:aid"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Pixel") {
		t.Error("context-only findings are not reported")
	}
}

// TestTransportWords: a host reached only over plain HTTP is "cleartext",
// one reached over HTTP and TLS "partly", whether or not personal data was
// exposed (that is said apart).
func TestTransportWords(t *testing.T) {
	for _, c := range []struct {
		transport string
		exposed   bool
		want      string
	}{
		{"CLEARTEXT", false, "cleartext HTTP"}, // a connectivity check: no data, still all in the clear
		{"CLEARTEXT", true, "cleartext HTTP"},
		{"CLEARTEXT+https", true, "partly cleartext HTTP"},
		{"CLEARTEXT+https", false, "partly cleartext HTTP"},
		{"https+tls", false, "TLS, decrypted"},
		{"tls", false, "encrypted (tls), not decrypted"},
		{"", false, "-"},
	} {
		if got := transportWords(HostDoc{Transport: c.transport, Cleartext: c.exposed}); got != c.want {
			t.Errorf("%q (exposed %v): %q, want %q", c.transport, c.exposed, got, c.want)
		}
	}
}
