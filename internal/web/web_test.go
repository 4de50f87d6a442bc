package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/live"
	"phonehome/internal/policy"
	"phonehome/internal/report"
)

// testUI is a Server fed by a real broker, as phonehome run wires it,
// without a database: the live session is held in memory.
type testUI struct {
	*Server
	base   string
	broker *live.Broker
	set    atomic.Pointer[policy.Policy]
	nextID int64
}

func startUI(t *testing.T, mod func(*Options)) *testUI {
	t.Helper()
	u := &testUI{broker: live.New(live.Options{})}
	pol := NewPolicy(nil, policy.Options{}, func(p policy.Policy) { u.set.Store(&p) })
	opts := Options{Addr: "127.0.0.1:0", Live: u.broker, LiveSession: Session{ID: 7, Name: "test", Started: time.Now()},
		Policy: pol, CAPEM: []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), ProxyAddr: "127.0.0.1:8080"}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	u.Server = s
	u.base = "http://" + s.Addr().String()
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		u.broker.Close()
	})
	return u
}

// testFlow is a request from device dev to host, owned by owner, carrying
// kind (when not "") at path.
func testFlow(dev, host, owner string, kind flow.Kind, path string) *flow.Flow {
	f := &flow.Flow{Start: time.Now(), End: time.Now(), Client: flow.Endpoint{Addr: netip.MustParseAddr("192.168.1.20"), Port: 40000},
		Device: dev, Host: host, Transport: flow.TransportHTTPS,
		Request:  &flow.Request{Method: "POST", URL: "https://" + host + "/collect", Headers: flow.Headers{{Name: "Content-Type", Value: "application/json"}}, Body: flow.Body{Data: []byte(`{"device":{"imei":"490154203237518"}}`), Size: 36}},
		Response: &flow.Response{Status: 200, Headers: flow.Headers{{Name: "Content-Type", Value: "text/plain"}}, Body: flow.Body{Data: []byte("ok"), Size: 2}},
		Dest:     flow.Destination{Owner: owner, Site: host, Category: "analytics"}}
	if kind != "" {
		f.Findings = []flow.Finding{{Kind: kind, Value: "490154203237518", Path: path, Method: flow.MethodPattern, Confidence: 0.9}}
	}
	return f
}

// publish sends flows as the pipeline does, numbered as the store would,
// and waits until the live index holds them.
func (u *testUI) publish(t *testing.T, fs ...*flow.Flow) {
	t.Helper()
	for _, f := range fs {
		u.nextID++
		f.ID = u.nextID
		u.broker.Publish(live.Event{Kind: live.EventFlow, Flow: f})
	}
	for deadline := time.Now().Add(5 * time.Second); u.live.count() < int(u.nextID); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the live index holds %d flows of %d", u.live.count(), u.nextID)
		}
	}
}

func (u *testUI) do(t *testing.T, method, path, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req) // no redirects followed
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (u *testUI) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	code, body := u.do(t, "GET", path, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

func TestAPIFlowsPagesAndFilters(t *testing.T) {
	u := startUI(t, nil)
	var fs []*flow.Flow
	for i := range 250 {
		dev, owner, kind := "pixel", "Google", flow.Kind("")
		if i%5 == 0 {
			dev, owner, kind = "tv", "Xiaomi", "imei"
		}
		fs = append(fs, testFlow(dev, fmt.Sprintf("h%d.example", i%3), owner, kind, "body › json:device.imei"))
	}
	u.publish(t, fs...)
	var p Page
	u.getJSON(t, "/api/flows?limit=100", &p)
	if len(p.Flows) != 100 || p.Flows[0].ID != 250 || p.Flows[99].ID != 151 || p.Next != 151 {
		t.Fatalf("first page: %d flows, %d..%d, next %d; want 100, 250..151, next 151", len(p.Flows), p.Flows[0].ID, p.Flows[len(p.Flows)-1].ID, p.Next)
	}
	seen := len(p.Flows)
	for p.Next != 0 {
		next := p.Next
		p = Page{}
		u.getJSON(t, fmt.Sprintf("/api/flows?limit=100&before=%d", next), &p)
		if len(p.Flows) > 0 && p.Flows[0].ID != next-1 {
			t.Fatalf("page after %d starts at %d", next, p.Flows[0].ID)
		}
		seen += len(p.Flows)
	}
	if seen != 250 {
		t.Errorf("the pages held %d flows, want 250", seen)
	}
	p = Page{}
	if u.getJSON(t, "/api/flows?before=999999", &p); len(p.Flows) != 0 || p.Next != 0 {
		t.Errorf("a cursor the session does not hold gave %d flows", len(p.Flows))
	}
	for q, want := range map[string]int{"device=tv": 50, "party=Xiaomi": 50, "kind=imei": 50, "host=h1.": 83, "verdict=allow": 250, "device=tv&host=h0.": 17, "device=none": 0} {
		var p Page
		u.getJSON(t, "/api/flows?limit=1000&"+q, &p)
		if len(p.Flows) != want {
			t.Errorf("%s: %d flows, want %d", q, len(p.Flows), want)
		}
		for _, r := range p.Flows {
			if strings.HasPrefix(q, "device=tv") && r.Device != "tv" {
				t.Errorf("%s gave a flow of %s", q, r.Device)
			}
		}
	}
	for _, q := range []string{"limit=0", "limit=x", "before=x", "from=yesterday"} {
		if code, body := u.do(t, "GET", "/api/flows?"+q, ""); code != http.StatusBadRequest || !strings.Contains(body, "give") {
			t.Errorf("%s: %d %s, want 400 saying what to give", q, code, body)
		}
	}
	if code, _ := u.do(t, "GET", "/api/flows?session=99", ""); code != http.StatusNotFound {
		t.Errorf("an unknown session: %d, want 404", code)
	}
}

func TestAPIFlowAndSessions(t *testing.T) {
	u := startUI(t, nil)
	u.publish(t, testFlow("pixel", "t.example", "Tracker Inc", "imei", "body › json:device.imei"))
	var d FlowDetail
	u.getJSON(t, "/api/flows/1", &d)
	if d.Host != "t.example" || d.Party != "Tracker Inc" || len(d.Findings) != 1 || d.ResponseText != "ok" || !strings.Contains(d.RequestText, "490154203237518") {
		t.Errorf("flow detail: %+v", d)
	}
	// the finding hangs at its path in the decode tree, and the tree says so on the way down
	var at *Node
	var walk func(ns []*Node)
	walk = func(ns []*Node) {
		for _, n := range ns {
			if len(n.Found) > 0 {
				at = n
			}
			walk(n.Children)
		}
	}
	walk(d.Tree)
	if at == nil || at.Path != "body › json:device.imei" || at.Found[0].Kind != "imei" || !strings.Contains(at.Found[0].Why, "shape") || !holds(d.Tree, "body") {
		t.Errorf("decode tree: the finding is at %+v", at)
	}
	if code, _ := u.do(t, "GET", "/api/flows/999", ""); code != http.StatusNotFound {
		t.Errorf("an unknown flow: %d, want 404", code)
	}
	if code, _ := u.do(t, "GET", "/api/flows/abc", ""); code != http.StatusBadRequest {
		t.Errorf("a flow id that is not a number: %d, want 400", code)
	}
	var ss []Session
	u.getJSON(t, "/api/sessions", &ss)
	if len(ss) != 1 || ss[0].ID != 7 || !ss[0].Live || ss[0].Flows != 1 {
		t.Errorf("sessions: %+v", ss)
	}
}

// holds reports whether the top node labelled label is marked as holding a finding.
func holds(ns []*Node, label string) bool {
	for _, n := range ns {
		if n.Label == label {
			return n.Holds
		}
	}
	return false
}

func TestAPIReport(t *testing.T) {
	u := startUI(t, nil)
	u.publish(t, testFlow("pixel", "t.example", "Tracker Inc", "imei", "body › json:device.imei"))
	var doc report.Doc
	u.getJSON(t, "/api/report", &doc)
	if doc.Flows != 1 || len(doc.Parties) != 1 || doc.Parties[0].Name != "Tracker Inc" || doc.Session != "test" {
		t.Errorf("report: %+v", doc)
	}
	for format, want := range map[string]string{"html": "<html", "md": "Tracker Inc"} {
		code, body := u.do(t, "GET", "/api/report?format="+format, "")
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("report as %s: %d, %d bytes", format, code, len(body))
		}
	}
	if code, _ := u.do(t, "GET", "/api/report?format=pdf", ""); code != http.StatusBadRequest {
		t.Errorf("an unknown format: %d, want 400", code)
	}
}

// TestAPIRules: a switch is parsed as a policy rule, put in force in front
// of the command line's, counted as it stops flows, and taken out.
func TestAPIRules(t *testing.T) {
	base, err := policy.ParseRule(flow.ActionBlock, "owner:Xiaomi", nil)
	if err != nil {
		t.Fatal(err)
	}
	var u *testUI
	u = startUI(t, func(o *Options) {
		o.Policy = NewPolicy(policy.NewEngine([]policy.Rule{base}, policy.Options{}), policy.Options{}, func(p policy.Policy) { u.set.Store(&p) })
	})
	code, body := u.do(t, "POST", "/api/rules", `{"action":"block","host":".tracker.example"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /api/rules: %d %s", code, body)
	}
	var sw Switch
	json.Unmarshal([]byte(body), &sw)
	pol := *u.set.Load()
	f := testFlow("pixel", "a.tracker.example", "", "", "")
	if v, _ := pol.Request(f); v.Action != flow.ActionBlock || v.Rule != sw.Text {
		t.Errorf("the switch's rule decided %v (%q), want block by %q", v.Action, v.Rule, sw.Text)
	}
	if v, _ := pol.Request(testFlow("pixel", "mi.example", "Xiaomi", "", "")); v.Action != flow.ActionBlock || v.Rule != "owner:Xiaomi" {
		t.Errorf("the command line's rule is no longer in force: %v %q", v.Action, v.Rule)
	}
	// an allow switch wins over the command line's block
	if code, body := u.do(t, "POST", "/api/rules", `{"action":"allow","owner":"Xiaomi","device":"tv"}`); code != http.StatusCreated {
		t.Fatalf("POST allow: %d %s", code, body)
	}
	if v, _ := (*u.set.Load()).Request(testFlow("tv", "mi.example", "Xiaomi", "", "")); v.Action != flow.ActionAllow {
		t.Errorf("an allow switch did not win over the command line: %v", v.Action)
	}
	if code, body := u.do(t, "POST", "/api/rules", `{"action":"redact","kind":"imei","category":"analytics"}`); code != http.StatusCreated {
		t.Fatalf("POST redact: %d %s", code, body)
	}
	f.Verdict = flow.Verdict{Action: flow.ActionBlock, Rule: sw.Text}
	u.publish(t, f)
	if _, body := u.do(t, "GET", "/parties", ""); !strings.Contains(body, `id="stopped"`) || !strings.Contains(body, sw.Text) {
		t.Errorf("the parties page does not say what the switch stopped")
	}
	var doc RulesDoc
	u.getJSON(t, "/api/rules", &doc)
	if len(doc.Rules) != 3 || doc.Rules[2].ID != sw.ID || doc.Rules[2].Stopped != 1 || len(doc.CommandLine) != 1 {
		t.Errorf("GET /api/rules: %+v", doc)
	}
	for _, bad := range []string{`{"action":"explode","host":"x"}`, `{"action":"block","kind":"shoe_size"}`, `{"action":"block","colour":"red"}`, `not json`} {
		if code, body := u.do(t, "POST", "/api/rules", bad); code != http.StatusBadRequest || !strings.Contains(body, "error") {
			t.Errorf("POST %s: %d %s, want 400 with the reason", bad, code, body)
		}
	}
	if code, _ := u.do(t, "POST", "/api/rules", `{"action":"block","host":"x"}`, "Content-Type", "text/plain"); code != http.StatusUnsupportedMediaType {
		t.Errorf("a rule not sent as JSON: %d, want 415", code)
	}
	if code, _ := u.do(t, "POST", "/api/rules", `{"action":"block","host":"x"}`, "Origin", "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("a rule posted from another site's page: %d, want 403", code)
	}
	if code, _ := u.do(t, "DELETE", fmt.Sprintf("/api/rules/%d", sw.ID), ""); code != http.StatusOK {
		t.Errorf("DELETE: %d", code)
	}
	if v, _ := (*u.set.Load()).Request(testFlow("pixel", "a.tracker.example", "", "", "")); v.Action != flow.ActionAllow {
		t.Errorf("after DELETE the host is still %v", v.Action)
	}
	if code, _ := u.do(t, "DELETE", fmt.Sprintf("/api/rules/%d", sw.ID), ""); code != http.StatusNotFound {
		t.Errorf("DELETE twice: %d, want 404", code)
	}
	// a reload of the command line's rules keeps the switches in front
	u.Server.rules.SetPolicy(nil)
	if v, _ := (*u.set.Load()).Request(testFlow("pixel", "mi.example", "Xiaomi", "", "")); v.Action != flow.ActionAllow {
		t.Errorf("after a reload without rules: %v", v.Action)
	}
}

func TestAPIMarkersGroupWhatFollows(t *testing.T) {
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	u := startUI(t, func(o *Options) { o.Now = func() time.Time { return time.Unix(0, clock.Load()) } })
	before := testFlow("pixel", "early.example", "", "", "")
	before.Start = now.Add(-time.Second)
	u.publish(t, before)
	code, body := u.do(t, "POST", "/api/markers", `{"label":"I opened Contacts now","note":"contacts tab"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /api/markers: %d %s", code, body)
	}
	var after []*flow.Flow
	for i := range 3 {
		f := testFlow("pixel", "contacts.example", "Contacts Co", "imei", "body › json:device.imei")
		f.Start = now.Add(time.Duration(i+1) * time.Millisecond)
		after = append(after, f)
	}
	u.publish(t, after...)
	clock.Store(now.Add(time.Second).UnixNano())
	u.do(t, "POST", "/api/markers", `{"label":"I closed it"}`)
	late := testFlow("pixel", "late.example", "", "", "")
	late.Start = now.Add(2 * time.Second)
	u.publish(t, late)
	var gs []MarkerGroup
	u.getJSON(t, "/api/markers", &gs)
	if len(gs) != 2 || gs[0].Marker.Label != "I opened Contacts now" || gs[0].Flows != 3 || gs[0].Parties[0].Party != "Contacts Co" || gs[0].Kinds["imei"] != 3 || gs[1].Flows != 1 {
		t.Errorf("marker groups: %+v", gs)
	}
	if code, _ := u.do(t, "POST", "/api/markers", `{"label":"`+strings.Repeat("x", 300)+`"}`); code == http.StatusCreated {
		t.Errorf("a 300-byte label was taken")
	}
}

// TestAPIEvents: every completed flow is one "flow" event; a burst arrives
// whole, written in batches.
func TestAPIEvents(t *testing.T) {
	u := startUI(t, nil)
	resp, err := http.Get(u.base + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil { // the retry line: subscribed
		t.Fatal(err)
	}
	for i := range 500 {
		f := testFlow("pixel", fmt.Sprintf("h%d.example", i), "", "", "")
		f.ID = int64(i + 1)
		u.broker.Publish(live.Event{Kind: live.EventFlow, Flow: f})
	}
	got := 0
	for got < 500 {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d events: %v", got, err)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var r Row
			if err := json.Unmarshal([]byte(data), &r); err != nil || r.Host != fmt.Sprintf("h%d.example", got) {
				t.Fatalf("event %d: %v %s", got, err, data)
			}
			got++
		}
	}
}

// TestStuckTabIsDropped: a client that stops reading is dropped by the
// broker (or its writes time out); publishing never waits for it.
func TestStuckTabIsDropped(t *testing.T) {
	u := startUI(t, nil)
	c, err := net.Dial("tcp", u.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /api/events HTTP/1.1\r\nHost: %s\r\n\r\n", u.Addr())
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	// the client reads nothing more
	f := testFlow("pixel", "t.example", "Tracker Inc", "imei", "body › json:device.imei")
	f.Request.URL += "?" + strings.Repeat("x", 2000) // fill the socket buffers sooner
	f.ID = 1
	start := time.Now()
	for i := 0; i < 200000 && u.broker.Stats().Dropped < 1; i++ {
		// the index subscriber keeps up; the stuck tab must be dropped
		u.broker.Publish(live.Event{Kind: live.EventFlow, Flow: f})
		if i%1000 == 0 {
			time.Sleep(time.Millisecond) // let the index subscriber drain
		}
	}
	if d := u.broker.Stats().Dropped; d < 1 {
		t.Fatalf("the stuck tab was not dropped: %s", u.broker.Stats())
	}
	t.Logf("stuck tab dropped after %v: %s", time.Since(start).Round(time.Millisecond), u.broker.Stats())
}

// TestHostileFlowIsInert: script in the URL, a header, the body, the host,
// the device's name and a finding reaches every page as text.
func TestHostileFlowIsInert(t *testing.T) {
	u := startUI(t, nil)
	const evil = `"><script>alert(1)</script><img src=x onerror=alert(2)>`
	f := testFlow("phone"+evil, "h.example", "Owner"+evil, "imei", "body › json:"+evil)
	f.Request.URL = "https://h.example/p?q=" + evil
	f.Request.Headers = append(f.Request.Headers, flow.Header{Name: "X-Evil" + evil, Value: evil})
	f.Request.Body.Data = []byte(evil)
	f.Response.Body.Data = []byte("<html><body>" + evil + "</body></html>")
	f.App = evil
	f.Findings[0].Value = evil
	u.publish(t, f)
	u.do(t, "POST", "/api/markers", `{"label":"`+strings.ReplaceAll(evil, `"`, `\"`)+`","note":"`+strings.ReplaceAll(evil, `"`, `\"`)+`"}`)
	for _, page := range []string{"/", "/flows/1", "/parties", "/devices", "/ids", "/markers", "/sessions", "/setup", "/diff?a=7&b=7", "/flows/1?session=" + url.QueryEscape(evil)} {
		code, body := u.do(t, "GET", page, "")
		if code != http.StatusOK && code != http.StatusNotFound {
			t.Errorf("%s: %d", page, code)
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s renders the flow's markup as markup", page)
		}
	}
	_, body := u.do(t, "GET", "/flows/1", "")
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the flow page does not show the hostile text, escaped")
	}
	// the API's JSON escapes markup too, for clients that paste it into a page
	for _, p := range []string{"/api/flows", "/api/flows/1", "/api/markers", "/api/report"} {
		if _, body := u.do(t, "GET", p, ""); strings.Contains(body, "<script>") {
			t.Errorf("%s carries raw markup", p)
		}
	}
	_, body = u.do(t, "GET", "/api/report?format=html", "")
	if strings.Contains(body, "<script>alert") {
		t.Errorf("the HTML report renders the flow's markup")
	}
}

// TestAccessChecks: loopback answers only to loopback names (no DNS
// rebinding); bound elsewhere, the token is required, then a cookie.
func TestAccessChecks(t *testing.T) {
	u := startUI(t, nil)
	if code, _ := u.do(t, "GET", "/", "", "Host", "rebind.evil.example:8081"); code != http.StatusMisdirectedRequest {
		t.Errorf("a loopback UI asked under another name: %d, want 421", code)
	}
	if code, _ := u.do(t, "GET", "/", "", "Host", "localhost"); code != http.StatusOK {
		t.Errorf("localhost: %d", code)
	}
	pub := startUI(t, func(o *Options) { o.Addr = "0.0.0.0:0" })
	if pub.token == "" || !strings.HasPrefix(pub.URL(), "http://127.0.0.1:") || !strings.Contains(pub.URL(), "?token="+pub.token) {
		t.Fatalf("no token made for a UI bound to every address: %q", pub.URL())
	}
	port := pub.Addr().(*net.TCPAddr).Port
	pub.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	for _, p := range []string{"/", "/api/flows", "/api/events"} {
		if code, _ := pub.do(t, "GET", p, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", p, code)
		}
	}
	if code, _ := pub.do(t, "GET", "/?token=wrong", ""); code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", pub.base+"/?token="+pub.token, nil)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == tokenCookie {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || cookie == nil || !cookie.HttpOnly || resp.Header.Get("Location") != "/" {
		t.Fatalf("the token's page: %d, cookie %v, to %q; want a redirect without the token, setting the cookie", resp.StatusCode, cookie, resp.Header.Get("Location"))
	}
	if code, _ := pub.do(t, "GET", "/parties", "", "Cookie", tokenCookie+"="+cookie.Value); code != http.StatusOK {
		t.Errorf("with the cookie: %d", code)
	}
	if code, _ := pub.do(t, "POST", "/api/rules", `{"action":"block","host":"x.example"}`, "X-Phonehome-Token", pub.token); code != http.StatusCreated {
		t.Errorf("a rule with the token header: %d", code)
	}
	if code, _ := pub.do(t, "POST", "/api/rules", `{"action":"block","host":"x.example"}`, "Cookie", tokenCookie+"="+cookie.Value, "Origin", "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("a rule from another origin with the cookie: %d, want 403", code)
	}
	// the redirect that drops the token stays on this UI
	req, _ = http.NewRequest("GET", pub.base+"//evil.example/x?token="+pub.token, nil)
	if resp, err = http.DefaultTransport.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if to := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(to, "/") || strings.HasPrefix(to, "//") {
		t.Errorf("redirect of //evil.example/x: %d to %q", resp.StatusCode, to)
	}
	// another site may link to a page, not fetch an export or the API
	c := "Cookie"
	v := tokenCookie + "=" + cookie.Value
	if code, _ := pub.do(t, "GET", "/sessions/7/evidence.zip", "", c, v, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"); code != http.StatusForbidden {
		t.Errorf("an export fetched by another site: %d, want 403", code)
	}
	if code, _ := pub.do(t, "GET", "/api/flows", "", c, v, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate"); code != http.StatusForbidden {
		t.Errorf("the API opened from another site: %d, want 403", code)
	}
	if code, _ := pub.do(t, "GET", "/parties", "", c, v, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate"); code != http.StatusOK {
		t.Errorf("a link from another site to a page: %d, want 200", code)
	}
}

// TestEveryPageRenders: each page answers 200 on a live session with data,
// and on a UI without a capture the pages that need one say so.
func TestEveryPageRenders(t *testing.T) {
	u := startUI(t, nil)
	u.publish(t, testFlow("pixel", "t.example", "Tracker Inc", "imei", "body › json:device.imei"))
	for _, p := range []string{"/", "/parties", "/flows/1", "/devices", "/ids", "/markers", "/sessions", "/setup", "/diff?a=7&b=7", "/setup/qr.png", "/setup/phonehome-ca.pem", "/static/app.js", "/static/app.css"} {
		req, _ := http.NewRequest("GET", u.base+p, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(b) == 0 {
			t.Errorf("%s: %d, %d bytes", p, resp.StatusCode, len(b))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: no content security policy", p)
		}
	}
	if _, body := u.do(t, "GET", "/parties", ""); !strings.Contains(body, "Tracker Inc") || !strings.Contains(body, `data-owner="Tracker Inc"`) {
		t.Errorf("the parties page lacks the party or its switch")
	}
	if code, _ := u.do(t, "GET", "/flows/42", ""); code != http.StatusNotFound {
		t.Errorf("an unknown flow's page: %d", code)
	}
	off := startUI(t, func(o *Options) { o.Live, o.Policy = nil, nil })
	if code, body := off.do(t, "GET", "/api/events", ""); code != http.StatusNotFound || !strings.Contains(body, "phonehome run") {
		t.Errorf("the live stream with no capture: %d %s", code, body)
	}
	if code, _ := off.do(t, "GET", "/api/rules", ""); code != http.StatusNotFound {
		t.Errorf("rules with no capture: %d", code)
	}
}

// TestDevicesPage: the devices the capture was set up for are listed before
// they send anything; then with what they sent.
func TestDevicesPage(t *testing.T) {
	u := startUI(t, func(o *Options) {
		o.Devices = []KnownDevice{{Name: "192.168.1.23", Addr: "192.168.1.23", How: "ARP spoofing (--spoof)"}}
	})
	if _, body := u.do(t, "GET", "/devices", ""); !strings.Contains(body, "ARP spoofing") || !strings.Contains(body, "192.168.1.23") {
		t.Errorf("the spoofed device is not listed before it sends anything")
	}
	f := testFlow("", "t.example", "Tracker Inc", "imei", "body › json:device.imei")
	f.Client.Addr = netip.MustParseAddr("192.168.1.23")
	u.publish(t, f, testFlow("pixel", "t.example", "Tracker Inc", "", ""))
	ds := u.live.devices(u.opts.Devices)
	if len(ds) != 2 || ds[0].Flows != 1 || ds[0].How == "" || len(ds[0].Kinds) != 1 || ds[1].Name != "pixel" {
		t.Errorf("devices: %+v", ds)
	}
}

// TestSessionKeptAcrossLinks: a page opened on a session links to the other
// pages of the same session.
func TestSessionKeptAcrossLinks(t *testing.T) {
	u := startUI(t, nil)
	_, body := u.do(t, "GET", "/parties?session=7", "")
	if !strings.Contains(body, `href="/devices?session=7"`) {
		t.Errorf("the navigation does not keep the session:\n%s", body)
	}
}

// TestBodyText: a body cut at the page's limit inside a character is shown
// as text up to it; a short binary one is said to be binary.
func TestBodyText(t *testing.T) {
	long := strings.Repeat("a", 64<<10-1) + "é" + "tail"
	got := bodyText([]byte(long))
	if !strings.HasPrefix(got, strings.Repeat("a", 64<<10-1)+"\n… (") {
		t.Errorf("a cut rune: %q", got[len(got)-40:])
	}
	if got := bodyText([]byte{0xff}); !strings.Contains(got, "binary") {
		t.Errorf("one invalid byte: %q", got)
	}
}

// TestLiveRowsBounded: the live session's lists keep the newest flows past
// their bound, the oldest dropped, and a page still finds what is kept.
func TestLiveRowsBounded(t *testing.T) {
	x := newIndex()
	x.maxRows = 10
	for i := 1; i <= 25; i++ {
		f := testFlow("phone", fmt.Sprintf("h%d.example", i), "Owner", "imei", "body › json:device.imei")
		f.ID = int64(i)
		x.add(f, false)
	}
	if n := len(x.rows); n > 10 || n < 9 {
		t.Fatalf("%d rows kept, bound 10", n)
	}
	p := x.page(Query{Limit: 100})
	if len(p.Flows) != len(x.rows) || p.Flows[0].ID != 25 || p.Flows[len(p.Flows)-1].ID != int64(26-len(x.rows)) {
		t.Errorf("page: %d rows, newest %d, oldest %d", len(p.Flows), p.Flows[0].ID, p.Flows[len(p.Flows)-1].ID)
	}
	for id, i := range x.pos {
		if x.rows[i].ID != id {
			t.Fatalf("position of %d points at %d", id, x.rows[i].ID)
		}
	}
	if _, ok := x.pos[1]; ok {
		t.Error("the oldest flow is still indexed")
	}
}
