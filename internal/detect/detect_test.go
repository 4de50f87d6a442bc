package detect

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"phonehome/internal/capture"
	"phonehome/internal/decode"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/example"
	"phonehome/internal/flow"
)

func exampleFlows(t testing.TB) []*flow.Flow {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	var flows []*flow.Flow
	for _, ex := range example.Files() {
		if _, err := capture.Read(bytes.NewReader(ex.Data), ex.Name, capture.Options{}, func(f *flow.Flow) {
			e.Inspect(f)
			flows = append(flows, f)
		}); err != nil {
			t.Fatal(err)
		}
	}
	return flows
}

// TestExample checks what the seed write-ups saw, in the example session.
func TestExample(t *testing.T) {
	got := map[string]bool{}
	opaque := false
	for _, f := range exampleFlows(t) {
		if f.HostOrAddr() == "global.api.huangye.miui.com" {
			// The encrypted blob is a note, not a claim that data was sent.
			for _, n := range f.Notes {
				opaque = opaque || n.Code == flow.NoteOpaque && strings.Contains(n.Text, "48 bytes, 5.5 bits/byte at body › form:data › base64")
			}
		}
		for _, x := range Reported(f) {
			if x.Kind == OpaquePayload {
				t.Errorf("an unreadable payload is reported as data: %+v", x)
			}
			got[fmt.Sprintf("%s %s=%s @ %s", f.HostOrAddr(), x.Kind, x.Value, x.Path)] = true
		}
		if f.HostOrAddr() == "connect.rom.miui.com" && len(Reported(f)) > 0 {
			t.Errorf("a connectivity check carries nothing: %+v", f.Findings)
		}
		for _, x := range f.Findings {
			if strings.Contains(x.Path, "form:sign") || strings.Contains(x.Path, "form:ts") || strings.Contains(x.Path, "json:events[0].ts") {
				t.Errorf("signatures and timestamps are not personal data: %+v", x)
			}
		}
	}
	want := []string{
		"api.ad.intl.xiaomi.com imei=356938035643809 @ query:clientInfo › json:deviceInfo.imei",
		"api.ad.intl.xiaomi.com mac_address=64:cc:2e:9a:41:7d @ query:clientInfo › json:deviceInfo.mac",
		"us.micardapi.micloud.xiaomi.net phone_number=+919820012345 @ query:phone › base64",
		"tracking.intl.miui.com sender_app=com.miui.systemAdSolution @ body › form:sender",
		"tracking.intl.miui.com sender_app=com.miui.securitycenter @ body › form:sender",
		"tracking.intl.miui.com android_id=3b6f1e0a9c2d4f81 @ body › form:android_id",
		"tracking.intl.miui.com advertising_id=d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90 @ body › form:oaid",
		"global.market.xiaomi.com app_list=com.whatsapp,com.facebook.katana,com.truecaller,in.amazon.mShop.android.shopping,com.phonepe.app,com.google.android.youtube @ body › json:packageNames",
		"global.market.xiaomi.com imei=af2d48f2495881aed1737bb21017f9b6 @ body › json:imei_md5",
		"data.mistat.intl.xiaomi.com visited_url=https://www.healthline.com/health/depression/signs @ body › gzip › json:events[0].url",
		"data.mistat.intl.xiaomi.com search_query=loan against salary no documents @ body › gzip › json:events[1].query",
		"data.mistat.intl.xiaomi.com account_id=6120847731 @ body › gzip › json:events[3].mi_account",
		"data.mistat.intl.xiaomi.com install_id=6f3c2b9e-0d4a-4c8e-b1f7-2a9d5e8c7b13 @ body › gzip › json:events[0].instance_id",
		"data.mistat.intl.xiaomi.com screen_size=720x1280 @ body › gzip › json:events[2].screen",
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing: %s", w)
		}
	}
	if !opaque {
		t.Error("the encrypted blob sent to global.api.huangye.miui.com has no opaque note")
	}
	if t.Failed() {
		var all []string
		for k := range got {
			all = append(all, k)
		}
		sort.Strings(all)
		t.Log("found:\n" + strings.Join(all, "\n"))
	}
}

func TestDestinationAndParty(t *testing.T) {
	for _, f := range exampleFlows(t) {
		switch f.HostOrAddr() {
		case "tracking.intl.miui.com":
			if f.Dest.Owner != "Xiaomi" || f.Dest.Category != "telemetry" || (f.Request != nil && f.Dest.Party != "first") {
				t.Errorf("tracking: %+v app %q", f.Dest, f.App)
			}
		case "api.ad.intl.xiaomi.com":
			if f.Dest.Category != "advertising" || f.App != "com.miui.home" {
				t.Errorf("ad API: %+v app %q", f.Dest, f.App)
			}
		}
	}
}

// TestFingerprintAlone: a User-Agent on an image fetch is noise, kept but not reported.
func TestFingerprintAlone(t *testing.T) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	f := &flow.Flow{Host: "img.example.com", Request: &flow.Request{Method: "GET", URL: "https://img.example.com/a.png?v=4.3.2",
		Headers: flow.Headers{{Name: "User-Agent", Value: "Dalvik/2.1.0 (Linux; U; Android 12; M2101K6G Build/SKQ1)"}}}}
	e.Inspect(f)
	if len(f.Findings) == 0 || len(Reported(f)) != 0 {
		t.Errorf("findings %+v reported %+v", f.Findings, Reported(f))
	}
}

func BenchmarkInspectTrackerRequest(b *testing.B) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	var req *flow.Request
	for _, f := range exampleFlows(b) {
		if f.Request != nil && strings.Contains(f.Request.URL, "mistats") {
			req = f.Request
		}
	}
	b.SetBytes(int64(len(req.Body.Data) + len(req.URL)))
	b.ReportAllocs()
	for b.Loop() {
		f := &flow.Flow{Host: "data.mistat.intl.xiaomi.com", Request: req}
		e.Inspect(f)
		if len(f.Findings) < 20 {
			b.Fatal(len(f.Findings))
		}
	}
}

// BenchmarkInspectProxied inspects what the proxy's benchmark sends: a GET
// with a few headers and a 1 KiB answer of text.
func BenchmarkInspectProxied(b *testing.B) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	body := []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz", 40)[:1024])
	req := &flow.Request{Method: "GET", URL: "http://127.0.0.1:18100/", Proto: "HTTP/1.1",
		Headers: flow.Headers{{Name: "Host", Value: "127.0.0.1:18100"}, {Name: "User-Agent", Value: "Go-http-client/1.1"}, {Name: "Accept-Encoding", Value: "gzip"}}}
	resp := &flow.Response{Status: 200, Reason: "OK", Proto: "HTTP/1.1",
		Headers: flow.Headers{{Name: "Content-Type", Value: "application/octet-stream"}, {Name: "Content-Length", Value: "1024"}},
		Body:    flow.Body{Data: body, Size: 1024}}
	b.ReportAllocs()
	for b.Loop() {
		f := &flow.Flow{Host: "127.0.0.1", Transport: flow.TransportHTTP, Request: req, Response: resp}
		e.Inspect(f)
	}
}

// TestInspectWith: the values handed over are the request as decode decodes
// it, handed once per flow after the findings are on it, and the findings are
// Inspect's.
func TestInspectWith(t *testing.T) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	for _, f := range exampleFlows(t) {
		g := &flow.Flow{Host: f.Host, Server: f.Server, Transport: f.Transport, Request: f.Request}
		calls := 0
		e.InspectWith(g, func(got *flow.Flow, vals []decode.Value) {
			calls++
			if got != g || len(got.Findings) != len(f.Findings) {
				t.Errorf("%s: handed %p with %d findings, want %p with %d", f.HostOrAddr(), got, len(got.Findings), g, len(f.Findings))
			}
			var want []decode.Value
			if f.Request != nil {
				want = decode.Decode(decode.FromFlow(f.Request), decode.Limits{}).Values
			}
			if !slices.Equal(vals, want) {
				t.Errorf("%s: handed %d values, decode finds %d", f.HostOrAddr(), len(vals), len(want))
			}
		})
		if calls != 1 {
			t.Errorf("%s: use called %d times", f.HostOrAddr(), calls)
		}
		if !slices.Equal(g.Findings, f.Findings) || g.Dest != f.Dest || g.App != f.App {
			t.Errorf("%s: InspectWith found %+v, Inspect %+v", f.HostOrAddr(), g.Findings, f.Findings)
		}
	}
}
