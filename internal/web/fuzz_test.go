package web

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"phonehome/internal/flow"
)

// FuzzRuleSpec: whatever a client posts as a rule is a rule or an error
// naming what was wrong, never a panic, and the rule it makes parses again.
func FuzzRuleSpec(f *testing.F) {
	for _, s := range []string{`{"action":"block","host":".tracker.example"}`, `{"action":"redact","kind":"imei"}`,
		`{"action":"fake imei","category":"analytics"}`, `{"action":"block","device":"192.168.1.0/24","path":"/v1/*"}`,
		`{"action":"allow","owner":"Xiaomi","method":"POST","status":451}`, `{"action":"block","host":"a\nb: c"}`,
		`{"action":"block","host":"[x"}`, `{"action":"passthrough","host":"*.bank.example"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var spec RuleSpec
		if json.Unmarshal([]byte(body), &spec) != nil {
			return
		}
		r, err := parseSpec(spec)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		if r.Text == "" {
			t.Fatalf("rule %+v has no text for verdicts to name", spec)
		}
		if _, err := parseSpec(spec); err != nil {
			t.Fatalf("parsed once, refused the second time: %v", err)
		}
	})
}

// FuzzFlowPage: a hostile request (URL, header, body, finding path) renders
// as a page without a panic and without its markup becoming markup.
func FuzzFlowPage(f *testing.F) {
	f.Add("https://h.example/p?q=<script>x</script>", "<b>", []byte(`{"a":{"b":"<img src=x>"}}`), "body › json:a.b")
	f.Add("http://h/?d=eyJhIjoxfQ==", "x", []byte("a=b&c=%3Cscript%3E"), "query:d › base64 › json:a")
	f.Add("", "", []byte{0x1f, 0x8b, 0, 0}, "")
	pg, err := newPages()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, url, header string, body []byte, path string) {
		fl := testFlow("dev", "h.example", "Owner", "", "")
		fl.ID = 1
		fl.Request.URL = url
		fl.Request.Headers = append(fl.Request.Headers, flow.Header{Name: "X-" + header, Value: header})
		fl.Request.Body = flow.Body{Data: body, Size: int64(len(body))}
		fl.Findings = []flow.Finding{{Kind: "imei", Value: header, Path: path}}
		d := pageData{Title: "Flow", Page: "flow", Data: flowView{D: detailOf(fl), F: fl}}
		rec := httptest.NewRecorder()
		if err := pg.t["flow"].Execute(rec, d); err != nil {
			t.Fatalf("render: %v", err)
		}
		for _, v := range []string{url, header, path} {
			if strings.Contains(v, "<") && strings.Contains(v, ">") && strings.Contains(rec.Body.String(), v) {
				t.Fatalf("%q reached the page unescaped", v)
			}
		}
	})
}
