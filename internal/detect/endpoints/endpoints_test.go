package endpoints

import (
	"testing"

	"phonehome/internal/decode"
	"phonehome/internal/flow"
)

func TestBuiltinLoads(t *testing.T) {
	tab, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	// TrackHAR's adapters name over a thousand fields with a kind; a table
	// that lost most of them on import would still "load".
	if n := tab.Fields(); n < 900 {
		t.Errorf("the built-in table knows %d fields, want at least 900", n)
	}
}

func TestLookupAndField(t *testing.T) {
	tab, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		url, path string
		want      flow.Kind
	}{
		// a string URL, protobuf field numbers with an array element between
		{"https://app-measurement.com/a", "body › gzip › protobuf:1.19", "advertising_id"},
		{"https://app-measurement.com/a", "body › gzip › protobuf:1.16", "app_version"},
		// phonehome's own row beside TrackHAR's
		{"https://app-measurement.com/a", "body › gzip › protobuf:1.12", "timezone"},
		// a URL pattern, a form body
		{"https://app.adjust.com/session", "body › form:gps_adid", "advertising_id"},
		{"https://app.eu.adjust.com/event", "body › form:connectivity_type", "network_type"},
		// nested JSON
		{"https://api2.branch.io/v1/install", "body › json:advertising_ids.aaid", "advertising_id"},
		// headers are named in any case
		{"https://www.googleapis.com/identitytoolkit/v3/relyingparty/getAccountInfo", "header:X-Android-Package", "host_app"},
		// unknown field of a known endpoint, unknown endpoint
		{"https://app-measurement.com/a", "body › gzip › protobuf:1.2.3", ""},
		{"https://tracker.example/a", "body › gzip › protobuf:1.19", ""},
		{"https://app.adjust.com.evil.example/session", "body › form:gps_adid", ""},
	}
	for _, c := range cases {
		m := tab.Lookup(c.url)
		f := m.Field(decode.Value{Path: c.path})
		var got flow.Kind
		if f != nil {
			got = f.Kind
			if f.Why() == "" {
				t.Errorf("%s %s: no reasoning", c.url, c.path)
			}
		}
		if got != c.want {
			t.Errorf("%s %s: %q, want %q", c.url, c.path, got, c.want)
		}
	}
}

func TestNormalValue(t *testing.T) {
	for in, want := range map[string]string{
		"body › form:p › base64 › gzip › json:env.model": "body.p.env.model",
		"query:clientInfo › json:deviceInfo.mac":         "query.clientInfo.deviceInfo.mac",
		"body › json:installed[5].pkg":                   "body.installed.pkg",
		"header:User-Agent":                              "header.user-agent",
		"cookie:IDE":                                     "cookie.IDE",
		"path[2]":                                        "path",
	} {
		if got := string(normalValue(nil, in)); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	if normalValue(nil, "nothing:here") != nil {
		t.Error("a path that starts in no part of the request has no lookup form")
	}
}

func TestRenamesFollowTheDecodingSteps(t *testing.T) {
	steps := []Step{
		{Function: "parseJson", Input: "body", Output: "res.body"},
		{Function: "decodeBase64", Input: "res.body.pd", Output: "res.body.pdDecoded"},
		{Function: "parseQueryString", Input: "body", Output: "parsedBody"},
		{Function: "getProperty", Input: "parsedBody", Output: "ae", Options: map[string]any{"path": "ae"}},
	}
	a, v := renames(steps)
	if got := resolve("body.pdDecoded.email", a, v); got != "body.pd.email" {
		t.Errorf("renamed output: %q", got)
	}
	if got := resolve("ae.x", a, v); got != "body.ae.x" {
		t.Errorf("variable: %q", got)
	}
}

func TestLiteralHost(t *testing.T) {
	for in, want := range map[string]string{
		`^https:\/\/app(\.eu)?\.adjust\.(com|net\.in|world)\/session$`: ".adjust.",
		`^https:\/\/graph\.facebook\.com\/v\d{1,2}.\d$`:                "graph.facebook.com/v",
		`^https?:\/\/x\.example\/`:                                     "x.example/",
	} {
		if got := literalHost(in); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

func TestFilters(t *testing.T) {
	f := Field{notIf: filter("00000000-0000-0000-0000-000000000000"), onlyIf: filter(map[string]any{"regex": "^[0-9a-f-]+$", "flags": "i"})}
	if f.Accepts("00000000-0000-0000-0000-000000000000") || !f.Accepts("0D361FF5-0F54") || f.Accepts("zz") {
		t.Error("not_if and only_if")
	}
}

func BenchmarkLookupField(b *testing.B) {
	tab, err := Builtin()
	if err != nil {
		b.Fatal(err)
	}
	v := decode.Value{Path: "body › gzip › protobuf:1.19"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if tab.Lookup("https://app-measurement.com/a").Field(v) == nil {
			b.Fatal("no field")
		}
	}
}
