//go:build unix

package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"phonehome/internal/example/exampleflows"
	"phonehome/internal/report"
	"phonehome/internal/store"
	"phonehome/internal/web"
)

// startUICmd runs phonehome ui on db until the test ends and returns its address.
func startUICmd(t *testing.T, db string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"ui", "--db", db, "--ui", "127.0.0.1:0"}, strings.NewReader(""), &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("phonehome ui: exit %d: %s", code, stderr.String())
		}
	})
	re := regexp.MustCompile(`UI on (http://127\.0\.0\.1:\d+/)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("phonehome ui did not start: %s", stderr.String())
	return ""
}

func httpDo(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	code, b := httpDo(t, "GET", url, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestUICommandBrowsesStoredSessions: phonehome ui serves two sessions that
// analyze stored: their flows (one read whole from the database), report,
// diff and evidence pack; it captures nothing and changes nothing.
func TestUICommandBrowsesStoredSessions(t *testing.T) {
	ui := startUICmd(t, storedBeforeAfter(t))
	var ss []web.Session
	getJSON(t, ui+"api/sessions", &ss)
	if len(ss) != 2 || ss[0].Name != "before" || ss[1].Name != "after" || ss[0].Flows == 0 || ss[0].Live {
		t.Fatalf("sessions: %+v", ss)
	}
	before, after := ss[0].ID, ss[1].ID
	var p web.Page
	getJSON(t, fmt.Sprintf("%sapi/flows?session=%d&limit=1000", ui, before), &p)
	if int64(len(p.Flows)) != ss[0].Flows {
		t.Errorf("%d flows listed of %d", len(p.Flows), ss[0].Flows)
	}
	var withData web.Row
	for _, r := range p.Flows {
		if len(r.Kinds) > 0 && r.Status != 0 {
			withData = r
		}
	}
	// the oldest such flow: the read goes through most of the session
	var d web.FlowDetail
	getJSON(t, fmt.Sprintf("%sapi/flows/%d?session=%d", ui, withData.ID, before), &d)
	if d.ID != withData.ID || len(d.Findings) == 0 || d.Headers == nil || len(d.Headers.Response) == 0 {
		t.Errorf("stored flow %d: %d findings, headers %+v", withData.ID, len(d.Findings), d.Headers)
	}
	var doc report.Doc
	getJSON(t, fmt.Sprintf("%sapi/report?session=%d", ui, before), &doc)
	if doc.Session != "before" || len(doc.Parties) == 0 || int64(doc.Flows) != ss[0].Flows {
		t.Errorf("report: session %q, %d parties, %d flows", doc.Session, len(doc.Parties), doc.Flows)
	}
	code, b := httpDo(t, "GET", fmt.Sprintf("%sdiff?a=%d&b=%d", ui, before, after), "")
	if code != http.StatusOK || !bytes.Contains(b, []byte("STILL SENT")) || !bytes.Contains(b, []byte("graph.facebook.com")) {
		t.Errorf("diff page: %d\n%s", code, b)
	}
	code, b = httpDo(t, "GET", fmt.Sprintf("%ssessions/%d/evidence.zip", ui, before), "")
	if code != http.StatusOK {
		t.Fatalf("evidence pack: %d %s", code, b)
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("evidence pack is not a zip: %v", err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "manifest.json") || !strings.Contains(strings.Join(names, " "), ".har") {
		t.Errorf("evidence pack holds %v", names)
	}
	code, b = httpDo(t, "GET", fmt.Sprintf("%sapi/report?session=%d&format=html", ui, after), "")
	if code != http.StatusOK || !bytes.Contains(b, []byte("<html")) {
		t.Errorf("HTML report: %d", code)
	}
	for _, page := range []string{"", "parties", "devices", "ids", "markers", "sessions", "setup"} {
		if code, b := httpDo(t, "GET", fmt.Sprintf("%s%s?session=%d", ui, page, before), ""); code != http.StatusOK {
			t.Errorf("/%s: %d %s", page, code, b)
		}
	}
	if code, b := httpDo(t, "POST", ui+"api/markers", `{"label":"x"}`); code != http.StatusConflict || !bytes.Contains(b, []byte("phonehome run")) {
		t.Errorf("a marker with no capture: %d %s", code, b)
	}
	if code, _ := httpDo(t, "GET", ui+"api/rules", ""); code != http.StatusNotFound {
		t.Errorf("rules with no capture: %d", code)
	}
}

// TestRunUIMarkersPersist: a marker set during phonehome run is stored
// with the session, and groups the flows that followed it when the session
// is browsed later.
func TestRunUIMarkersPersist(t *testing.T) {
	up := newCountingUpstream(false)
	defer up.Close()
	rp := startRun(t, "--ui", "127.0.0.1:0")
	ui := uiURL(t, rp)
	if out, err := curl("-x", "http://"+rp.addr, up.URL+"/before"); err != nil {
		t.Fatal(err, out)
	}
	time.Sleep(10 * time.Millisecond)
	if code, b := httpDo(t, "POST", ui+"api/markers", `{"label":"I opened Contacts now","note":"first try"}`); code != http.StatusCreated {
		t.Fatalf("POST /api/markers: %d %s", code, b)
	}
	for _, p := range []string{"/contacts/a", "/contacts/b"} {
		if out, err := curl("-x", "http://"+rp.addr, up.URL+p); err != nil {
			t.Fatal(err, out)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if code := rp.stop(); code != 0 {
		t.Fatalf("phonehome run: exit %d: %s", code, rp.stderr.String())
	}
	ui2 := startUICmd(t, rp.db)
	var gs []web.MarkerGroup
	getJSON(t, ui2+"api/markers", &gs)
	if len(gs) != 1 || gs[0].Marker.Label != "I opened Contacts now" || gs[0].Marker.Note != "first try" || gs[0].Flows != 2 {
		t.Fatalf("stored marker groups: %+v", gs)
	}
	for _, r := range gs[0].First {
		if !strings.Contains(r.URL, "/contacts/") {
			t.Errorf("a flow before the marker is in its group: %s", r.URL)
		}
	}
}

// TestRunUIAddressRefused: a --ui address that cannot be listened on stops
// the run with the reason, before anything is captured.
func TestRunUIAddressRefused(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := phonehome(t, "run", "--listen", "127.0.0.1:0", "--ui", "256.1.1.1:80", "--db", filepath.Join(dir, "r.db"), "--ca-dir", filepath.Join(dir, "ca"))
	if code == 0 || !strings.Contains(errOut, "--ui") || !strings.Contains(errOut, "--ui off") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// BenchmarkUIOpenStoredSession opens a stored session of 100,000 flows in a
// fresh UI, as phonehome ui does, until its first page of flows and its
// Parties page are served: the one-off cost before every view is served from
// memory (see internal/web's BenchmarkFirstPage), and the page of its oldest
// and of its middle flow, read from the database.
func BenchmarkUIOpenStoredSession(b *testing.B) {
	base, err := exampleflows.Detected()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	db := filepath.Join(b.TempDir(), "big.db")
	st, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	sess, err := st.CreateSession(ctx, "big", time.Now(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	w := st.Writer(ctx, sess)
	const n = 100_000
	for i := range n {
		f := *base[i%len(base)]
		f.ID = 0
		if err := w.Add(&f); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	st.Close()
	ro, err := store.Open(ctx, db, store.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer ro.Close()
	us := newUIStore(ro, true)
	get := func(b *testing.B, base, path string) {
		resp, err := http.Get(base + path)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	serve := func(b *testing.B) (string, func()) {
		srv, err := web.New(web.Options{Addr: "127.0.0.1:0", Store: us})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() { srv.Run(ctx); close(done) }()
		return "http://" + srv.Addr().String() + "/", func() { srv.Close(); <-done }
	}
	b.Run("first pages", func(b *testing.B) {
		for b.Loop() {
			u, stop := serve(b)
			get(b, u, "api/flows?session=1")
			get(b, u, "parties?session=1")
			stop()
		}
	})
	u, stop := serve(b)
	defer stop()
	get(b, u, "api/flows?session=1")
	for _, id := range []int{1, n / 2} {
		b.Run(fmt.Sprintf("flow %d of %d", id, n), func(b *testing.B) {
			for b.Loop() {
				get(b, u, fmt.Sprintf("api/flows/%d?session=1", id))
			}
		})
	}
}
