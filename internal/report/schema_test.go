package report

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"phonehome/internal/flow"
)

func post(host, path, body string, at time.Time, client string, findings ...flow.Finding) *flow.Flow {
	return &flow.Flow{Start: at, Host: host, Transport: flow.TransportHTTPS, Client: flow.Endpoint{Addr: netip.MustParseAddr(client)},
		Request: &flow.Request{Method: "POST", URL: "https://" + host + path,
			Headers: flow.Headers{{Name: "Content-Type", Value: "application/json"}}, Body: flow.Body{Data: []byte(body)}},
		Findings: findings}
}

func roles(e EndpointDoc) map[string]Role {
	m := map[string]Role{}
	for _, fs := range [][]FieldDoc{e.Annotations, e.EventData, e.Unclassified} {
		for _, f := range fs {
			m[f.Name] = f.Role
		}
	}
	return m
}

func onlyEndpoint(t *testing.T, doc *Doc) EndpointDoc {
	t.Helper()
	if len(doc.Parties) != 1 || len(doc.Parties[0].Hosts) != 1 || len(doc.Parties[0].Hosts[0].Endpoints) != 1 {
		t.Fatalf("want one endpoint, got %+v", doc.Parties)
	}
	return doc.Parties[0].Hosts[0].Endpoints[0]
}

// Unbatched telemetry: one event per request. The install ID and model ride
// on every request; the URL varies; "event" names the event. The OS version
// is missing from 1 request in 20 (95%) and still counts as an annotation;
// the carrier is present in 60% only and does not.
func TestSchemaUnbatched(t *testing.T) {
	s := NewSummary()
	at := time.Date(2026, 11, 18, 8, 0, 0, 0, time.UTC)
	for i := 0; i < 20; i++ {
		ev := []string{"page_view", "search", "video_play"}[i%3]
		os := `,"os":"Android 14"`
		if i == 7 {
			os = ""
		}
		carrier := ""
		if i%5 < 3 {
			carrier = `,"carrier":"Jio"`
		}
		// /v2/user/{numeric id}/log folds into one endpoint
		s.Add(post("t.example.com", fmt.Sprintf("/v2/user/%d/log", 1000+i%2), fmt.Sprintf(`{"event":%q,"url":"https://news.example/%d","iid":"0f3e2d1b-4a57-4e8a-9c61-5b2d7a1c3f0e","model":"Pixel 7"%s%s}`, ev, i, os, carrier), at.Add(time.Duration(i)*time.Second), "10.0.0.2"))
	}
	e := onlyEndpoint(t, s.Doc())
	if e.Path != "/v2/user/{id}/log" || e.Requests != 20 || e.Events != 20 || e.Batched != 0 {
		t.Errorf("endpoint %q: %d requests, %d events, %d batched", e.Path, e.Requests, e.Events, e.Batched)
	}
	want := map[string]Role{"body › json:iid": RoleAnnotation, "body › json:model": RoleAnnotation, "body › json:os": RoleAnnotation,
		"body › json:url": RoleEventData, "body › json:carrier": RoleEventData}
	got := roles(e)
	for name, r := range want {
		if got[name] != r {
			t.Errorf("%s: role %q, want %q", name, got[name], r)
		}
	}
	if e.EventField != "body › json:event" || len(e.EventKinds) != 3 || e.EventKinds[0].Name != "page_view" || e.EventKinds[0].Count != 7 {
		t.Errorf("event names: field %q, %+v", e.EventField, e.EventKinds)
	}
}

// Batched telemetry: each request carries an array of events; fields outside
// the array ride on every event of the batch; an annotation repeated inside
// each event (session) counts too, and one missing from 1 event in 20 as well.
func TestSchemaBatched(t *testing.T) {
	s := NewSummary()
	at := time.Date(2026, 11, 18, 8, 0, 0, 0, time.UTC)
	n := 0
	for r := 0; r < 5; r++ {
		events := ""
		for i := 0; i < 4; i++ {
			lang := `,"lang":"de-DE"`
			if n == 13 {
				lang = ""
			}
			name := []string{"open", "click"}[i%2]
			events += fmt.Sprintf(`%s{"ts":%d,"name":"x","type":%q,"target":"button-%d"%s}`, map[bool]string{true: ",", false: ""}[i > 0], 1763452800000+n, name, n, lang)
			n++
		}
		body := fmt.Sprintf(`{"device":{"id":"a1b2c3d4e5f60718","model":"SM-G991B"},"sent_at":%d,"events":[%s]}`, 1763452800000+r*1000, events)
		s.Add(post("logs.example.net", "/batch", body, at.Add(time.Duration(r)*time.Minute), "10.0.0.2",
			flow.Finding{Kind: "device_id", Value: "a1b2c3d4e5f60718", Path: "body › json:device.id"}))
	}
	e := onlyEndpoint(t, s.Doc())
	if e.Requests != 5 || e.Events != 20 || e.Batched != 5 {
		t.Errorf("%d requests, %d events, %d batched; want 5, 20, 5", e.Requests, e.Events, e.Batched)
	}
	got := roles(e)
	for name, r := range map[string]Role{"body › json:device.id": RoleAnnotation, "body › json:device.model": RoleAnnotation,
		"lang": RoleAnnotation, "ts": RoleEventData, "target": RoleEventData, "body › json:sent_at": RoleEventData} {
		if got[name] != r {
			t.Errorf("%s: role %q, want %q (all: %v)", name, got[name], r, got)
		}
	}
	if e.EventField != "type" || len(e.EventKinds) != 2 || e.EventKinds[0].Count != 10 {
		t.Errorf("event names: field %q, %+v", e.EventField, e.EventKinds)
	}
	for _, f := range e.Annotations {
		if f.Name == "body › json:device.id" && f.Kind != "device_id" {
			t.Errorf("the device ID field carries its finding's kind, got %q", f.Kind)
		}
	}
	// an array of objects without time or name is data, not a batch of events
	s2 := NewSummary()
	for r := 0; r < 3; r++ {
		s2.Add(post("apps.example.org", "/sync", fmt.Sprintf(`{"apps":[{"pkg":"com.a","v":%d},{"pkg":"com.b","v":2}],"uid":"u-88c1f0a2b7d94e31"}`, r), at, "10.0.0.2"))
	}
	if e := onlyEndpoint(t, s2.Doc()); e.Batched != 0 || e.Events != 3 {
		t.Errorf("app list taken for a batch: %d batched, %d events", e.Batched, e.Events)
	}
}

func TestPersistentIDsAndLinks(t *testing.T) {
	s := NewSummary()
	at := time.Date(2026, 11, 18, 8, 0, 0, 0, time.UTC)
	for i := 0; i < 4; i++ {
		// a per-request nonce and a millisecond timestamp must not be taken for IDs
		s.Add(post("a.example.com", "/e", fmt.Sprintf(`{"iid":"k3J9xQ2mZ7vL4pW8","aid":"3b6f1e0a9c2d4f81","nonce":"%x","t":%d,"rid":"r%08dzq7"}`, 0x9e3779b97f4a7c15*uint64(i+1), 1763452800000+i, i*7919),
			at.Add(time.Duration(i)*time.Second), "10.0.0.2", flow.Finding{Kind: "android_id", Value: "3b6f1e0a9c2d4f81", Path: "body › json:aid"}))
	}
	f := post("b.example.net", "/px", `{"android":"3b6f1e0a9c2d4f81"}`, at, "10.0.0.2", flow.Finding{Kind: "android_id", Value: "3b6f1e0a9c2d4f81", Path: "body › json:android"})
	f.Dest = flow.Destination{Owner: "Other Co"}
	s.Add(f)
	doc := s.Doc()
	if len(doc.IDs) != 2 {
		t.Fatalf("persistent IDs: %+v", doc.IDs)
	}
	if doc.IDs[0].Value != "3b6f1e0a9c2d4f81" || doc.IDs[0].Kind != "android_id" || len(doc.IDs[0].Parties) != 2 || doc.IDs[0].Requests != 5 {
		t.Errorf("the Android ID goes to two parties in 5 requests: %+v", doc.IDs[0])
	}
	if doc.IDs[1].Value != "k3J9xQ2mZ7vL4pW8" || doc.IDs[1].Name != "iid" || doc.IDs[1].Kind != "" {
		t.Errorf("an unnamed install ID found by itself: %+v", doc.IDs[1])
	}
	if len(doc.Links) != 1 || doc.Links[0].Party != "a.example.com" || doc.Links[0].Requests != 4 || len(doc.Links[0].Names) != 2 {
		t.Errorf("links: %+v", doc.Links)
	}
	if got := LinkSentence(doc.Links[0]); got != "a.example.com can tie android_id and iid together: they travel in the same 4 requests." {
		t.Errorf("sentence: %q", got)
	}
}

func TestEndpointPath(t *testing.T) {
	for in, want := range map[string]string{
		"https://x.com/v2/user/88123/feed?x=1":                      "/v2/user/{id}/feed",
		"https://x.com/d/6f3c2b9e-0d4a-4c8e-b1f7-2a9d5e8c7b13/ping": "/d/{id}/ping",
		"https://x.com/v17.0/1288392747887445/activities":           "/v17.0/{id}/activities",
		"https://x.com/api/track":                                   "/api/track",
		"https://x.com":                                             "/",
		"https://x.com/img/deadbeefcafe.png":                        "/img/deadbeefcafe.png",
	} {
		if got := endpointPath(in); got != want {
			t.Errorf("endpointPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// A busy endpoint is learned from a sample: the request count stays exact,
// events and event names are estimated, the roles are those of the whole,
// and identifiers found by detection are still counted in every request.
func TestSchemaSampledEndpoint(t *testing.T) {
	s := NewSummary()
	at := time.Date(2026, 11, 18, 8, 0, 0, 0, time.UTC)
	const n = 20000
	for i := 0; i < n; i++ {
		events := `{"ts":1,"type":"open"}`
		if i%4 == 0 {
			events += `,{"ts":2,"type":"click"}`
		}
		body := fmt.Sprintf(`{"aid":"3b6f1e0a9c2d4f81","seq":%d,"events":[%s]}`, i, events)
		s.Add(post("busy.example.com", "/b", body, at.Add(time.Duration(i)*time.Millisecond), "10.0.0.2",
			flow.Finding{Kind: "android_id", Value: "3b6f1e0a9c2d4f81", Path: "body › json:aid"}))
	}
	doc := s.Doc()
	e := onlyEndpoint(t, doc)
	if e.Requests != n || e.Learned >= n/2 || e.Learned < learnAll {
		t.Errorf("%d requests, %d learned", e.Requests, e.Learned)
	}
	if want := n + n/4; e.Events < want*9/10 || e.Events > want*11/10 {
		t.Errorf("events estimated at %d, true %d", e.Events, want)
	}
	if got := roles(e); got["body › json:aid"] != RoleAnnotation || got["body › json:seq"] != RoleEventData {
		t.Errorf("roles from the sample: %v", got)
	}
	if len(doc.IDs) != 1 || doc.IDs[0].Requests != n {
		t.Errorf("the Android ID is counted in every request: %+v", doc.IDs)
	}
}

// BenchmarkSummaryAdd is the report's cost per flow: the example's flows of
// both days, detected, added again and again (the sampling of busy endpoints
// included, as on a large store).
func BenchmarkSummaryAdd(b *testing.B) {
	at := time.Date(2026, 11, 18, 8, 0, 0, 0, time.UTC)
	flows := []*flow.Flow{
		post("t.example.com", "/v1/batch", `{"events":[{"event":"page","url":"https://news.example/a","ts":1},{"event":"search","q":"weather","ts":2}],"install_id":"6f3c2b9e-0d4a-4c8e-b1f7-2a9d5e8c7b13","model":"Pixel 7","os":"14","lang":"de"}`, at, "10.0.0.2",
			flow.Finding{Kind: "install_id", Value: "6f3c2b9e-0d4a-4c8e-b1f7-2a9d5e8c7b13", Path: "body › json:install_id"}),
		{Start: at, Host: "ads.example.net", Transport: flow.TransportHTTP, Request: &flow.Request{Method: "GET", URL: "http://ads.example.net/ad?gaid=d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90&slot=3"},
			Findings: []flow.Finding{{Kind: "advertising_id", Value: "d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90", Path: "query:gaid"}}},
		{Start: at, Host: "cdn.example.org", Transport: flow.TransportTLS},
	}
	s := NewSummary()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Add(flows[i%len(flows)])
	}
}
