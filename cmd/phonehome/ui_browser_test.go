//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// uiURL is the web UI's address phonehome run printed.
func uiURL(t *testing.T, rp *runningProxy) string {
	t.Helper()
	re := regexp.MustCompile(`web UI on (http://127\.0\.0\.1:\d+/)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(rp.stderr.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("phonehome run did not say where its web UI is: %s", rp.stderr.String())
	return ""
}

// browser starts Debian's Chromium, headless, with a profile the test
// removes. It skips when Chromium is not installed.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("Chromium is not installed (Debian: apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless,
		chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// artifacts is where screenshots are kept: $PHONEHOME_ARTIFACTS when set
// (CI keeps it), else the test's temporary directory.
func artifacts(t *testing.T) string {
	if d := os.Getenv("PHONEHOME_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(artifacts(t), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot: %s", p)
}

// within runs actions with a deadline, on the tab of ctx.
func within(ctx context.Context, d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return chromedp.Do(tctx, steps...)
}

// TestUIInBrowser drives the web UI of a real phonehome run with Chromium:
// a curl through the proxy shows on the live page within a second; the
// block switch on its row stops the next one; a marker groups the requests
// that follow it; a flow's page shows where its finding sat; and a hostile
// request (script in the URL, a header and the body) runs nothing.
func TestUIInBrowser(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	ctx := browser(t)
	messages := chromedp.Console(ctx) // subscribed before the first page
	up := newCountingUpstream(false)
	defer up.Close()
	rp := startRun(t, "--ui", "127.0.0.1:0")
	ui := uiURL(t, rp)
	proxy := "http://" + rp.addr

	if err := within(ctx, 10*time.Second, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#flows"), chromedp.NodeReady),
		waitText("#status", "live")); err != nil {
		t.Fatalf("the live page did not connect: %v", err)
	}
	// the advertising ID in the query is the finding the flow page shows
	if out, err := curl("-x", proxy, up.URL+"/collect?idfa=6D92078A-8246-4BA4-AE5B-76104861E7DC&ev=open"); err != nil {
		t.Fatalf("curl through the proxy: %v %s", err, out)
	}
	shown := time.Now()
	if err := within(ctx, time.Second, chromedp.WaitVisible(chromedp.CSS(`#flows tr[data-host="127.0.0.1"]`))); err != nil {
		t.Fatalf("the flow did not appear on the live page within a second: %v", err)
	}
	t.Logf("the flow appeared %v after curl returned", time.Since(shown).Round(time.Millisecond))
	screenshot(t, ctx, "live")

	// the block switch on the row: the next request is answered by phonehome
	hits := up.hits.Load()
	if err := within(ctx, 5*time.Second, chromedp.Click(chromedp.CSS(`#flows tr[data-host="127.0.0.1"] button.switch[data-host]`)),
		waitText("#rules", "ui: block host:127.0.0.1")); err != nil {
		t.Fatalf("the block switch did not put its rule in force: %v", err)
	}
	out, err := curl("-x", proxy, "-o", "/dev/null", "-w", "%{http_code}", up.URL+"/collect?ev=second")
	if err != nil || out != "403" || up.hits.Load() != hits {
		t.Fatalf("after the block switch the request got %q (%v), and the server saw %d more", out, err, up.hits.Load()-hits)
	}
	if err := within(ctx, 5*time.Second, waitText("#rules", "1 stopped since")); err != nil {
		t.Errorf("the switch does not count what it stopped: %v", err)
	}
	screenshot(t, ctx, "blocked")
	if err := within(ctx, 5*time.Second, chromedp.Click(chromedp.CSS(`#rules li button`)), waitText("#rules", "none yet")); err != nil {
		t.Fatalf("the switch could not be removed: %v", err)
	}

	// a marker groups the requests that follow it
	if err := within(ctx, 5*time.Second, chromedp.SetValue(chromedp.ID("marker-label"), "I opened Contacts now"),
		chromedp.SetValue(chromedp.ID("marker-note"), "contacts screen"), chromedp.Click(chromedp.ID("mark")),
		waitText("#marker-said", "marked at")); err != nil {
		t.Fatalf("the marker was not set: %v", err)
	}
	for _, p := range []string{"/contacts/sync", "/contacts/upload"} {
		if out, err := curl("-x", proxy, up.URL+p); err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
	}
	var group string
	if err := within(ctx, 10*time.Second, chromedp.Navigate(ui+"markers"), waitText("section.marker", "2 requests followed"),
		textOf("section.marker", &group)); err != nil {
		t.Fatalf("the markers page does not group the two requests after the marker: %v (%q)", err, group)
	}
	if !strings.Contains(group, "I opened Contacts now") || !strings.Contains(group, "contacts screen") || !strings.Contains(group, "127.0.0.1") {
		t.Errorf("the marker's group lacks its label, note or party:\n%s", group)
	}
	screenshot(t, ctx, "markers")

	// the flow's page shows the decode path of its finding, highlighted
	id := firstFlowID(t, ui, "kind=advertising_id")
	var found, why string
	if err := within(ctx, 10*time.Second, chromedp.Navigate(fmt.Sprintf("%sflows/%d", ui, id)),
		textOf("#tree li.found > code.layer", &found), textOf("#tree li.found .why", &why)); err != nil {
		t.Fatalf("the flow page shows no finding in its decode tree: %v", err)
	}
	if found != "query:idfa" || !strings.Contains(why, "advertising_id") {
		t.Errorf("the finding is shown at %q (%q), want query:idfa and advertising_id", found, why)
	}
	screenshot(t, ctx, "flow")

	// hostile input stays text
	hostile := `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>`
	if out, err := curl("-x", proxy, "-H", "X-Evil: "+hostile, "--data-binary", hostile,
		up.URL+"/evil?q=%3Cscript%3Ewindow.pwned%3D3%3C%2Fscript%3E%22%3E%3Cimg%20src%3Dx%20onerror%3Dwindow.pwned%3D4%3E"); err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	var evil int64
	if err := within(ctx, 10*time.Second, chromedp.Navigate(ui), waitText("#flows", "/evil")); err != nil {
		t.Fatalf("the hostile flow is not listed: %v", err)
	}
	evil = firstFlowID(t, ui, "host=127.0.0.1")
	for _, page := range []string{"", fmt.Sprintf("flows/%d", evil), "parties", "devices", "markers"} {
		var pwned bool
		if err := within(ctx, 10*time.Second, chromedp.Navigate(ui+page), chromedp.WaitReady(chromedp.CSS("main")), chromedp.Sleep(300*time.Millisecond)); err != nil {
			t.Fatalf("open /%s: %v", page, err)
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		pwned, err = chromedp.Run(tctx, chromedp.Evaluate[bool](`window.pwned !== undefined || document.querySelector("main img[src=x]") !== null`))
		cancel()
		if err != nil || pwned {
			t.Errorf("/%s: the hostile flow's markup ran or was inserted (%v)", page, err)
		}
	}
	screenshot(t, ctx, "hostile-flow")

	// light and dark, as the system prefers
	background := func() string {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		bg, err := chromedp.Run(tctx, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
		if err != nil {
			t.Fatal(err)
		}
		return bg
	}
	if err := within(ctx, 10*time.Second, chromedp.Navigate(ui+"parties"), chromedp.WaitVisible(chromedp.CSS("#matrix"))); err != nil {
		t.Fatalf("the parties page: %v", err)
	}
	light := background()
	screenshot(t, ctx, "parties")
	dark := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
		return chromedp.Void{}, err
	}
	if err := within(ctx, 10*time.Second, dark, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#matrix"))); err != nil {
		t.Fatalf("dark mode: %v", err)
	}
	if d := background(); d == light {
		t.Errorf("the page looks the same in dark mode: background %s", d)
	}
	screenshot(t, ctx, "parties-dark")

	// nothing the pages ran failed (an exception, a refused script)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`console.log("phonehome-test-end")`)); err != nil {
		t.Fatal(err)
	}
	for m, err := range messages {
		if err != nil {
			t.Fatalf("console: %v", err)
		}
		if m.Text == "phonehome-test-end" {
			break
		}
		if m.Type == chromedp.ConsoleError || m.IsException() {
			t.Errorf("console: %s", m.String())
		}
	}
}

// firstFlowID is the id of the newest flow the filter takes, from the API.
func firstFlowID(t *testing.T, ui, filter string) int64 {
	t.Helper()
	resp, err := http.Get(ui + "api/flows?limit=1&" + filter)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		Flows []struct{ ID int64 } `json:"flows"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || len(p.Flows) == 0 {
		t.Fatalf("GET /api/flows: %v %+v", err, p)
	}
	return p.Flows[0].ID
}

// waitText waits until the element's text contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		var last string
		for {
			txt, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)))
			if err == nil && strings.Contains(txt, want) {
				return chromedp.Void{}, nil
			}
			last = txt
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("%s never said %q (last: %q): %w", sel, want, last, ctx.Err())
			case <-time.After(25 * time.Millisecond):
			}
		}
	}
}

// textOf reads an element's text.
func textOf(sel string, into *string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		txt, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		*into = strings.TrimSpace(txt)
		return chromedp.Void{}, err
	}
}
