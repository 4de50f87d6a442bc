package report

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"phonehome/internal/flow"
)

// chromium finds Debian's Chromium; the test skips without it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium installed (Debian: apt-get install chromium): the HTML report is checked in a real browser")
	return ""
}

// telemetryDoc is a report of two parties with batched events over a minute.
func telemetryDoc() *Doc {
	s := NewSummary()
	at := time.Date(2026, 11, 18, 7, 0, 0, 0, time.UTC)
	for i := 0; i < 30; i++ {
		body := `{"events":[{"event":"page","url":"https://news.example/` + string(rune('a'+i%26)) + `","ts":` + itoa(1763449200000+i) +
			`},{"event":"search","q":"weather","ts":` + itoa(1763449200500+i) + `}],"install_id":"6f3c2b9e-0d4a-4c8e-b1f7-2a9d5e8c7b13","model":"Pixel 7"}`
		s.Add(&flow.Flow{Start: at.Add(time.Duration(i) * 2 * time.Second), Host: "t.tracker.example", Transport: flow.TransportHTTPS,
			Dest:    flow.Destination{Owner: "Tracker Inc", Category: "analytics", Party: "third"},
			Request: &flow.Request{Method: "POST", URL: "https://t.tracker.example/v1/batch", Headers: flow.Headers{{Name: "Content-Type", Value: "application/json"}}, Body: flow.Body{Data: []byte(body)}},
			Findings: []flow.Finding{{Kind: "install_id", Value: "6f3c2b9e-0d4a-4c8e-b1f7-2a9d5e8c7b13", Path: "body › json:install_id"},
				{Kind: "visited_url", Value: "https://news.example/a", Path: "body › json:events[0].url"}}})
		s.Add(&flow.Flow{Start: at.Add(time.Duration(i) * 2 * time.Second), Host: "ads.example.net", Transport: flow.TransportHTTP,
			Dest:     flow.Destination{Owner: "Ad Network", Category: "advertising", Party: "third"},
			Request:  &flow.Request{Method: "GET", URL: "http://ads.example.net/ad?gaid=d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90&slot=" + itoa(i)},
			Findings: []flow.Finding{{Kind: "advertising_id", Value: "d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90", Path: "query:gaid"}}})
	}
	return s.Doc()
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(i)) }

func fmtInt(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// TestHTMLInChromium opens reports in headless Chromium, one of two parties
// and one of a single party: the charts must have drawn shapes, the matrix
// must outline only the kinds sent unencrypted and say so in its legend, the
// page must log no error, and a screenshot is kept in the test's directory.
func TestHTMLInChromium(t *testing.T) {
	exe := chromium(t)
	for _, c := range []struct {
		name string
		doc  *Doc
		// the first chart: data kinds per party, or the hosts of the one party
		first       string
		firstBars   int
		cells       int // matrix cells, filled and outlined
		filled      int
		outlined    int
		kindRows    int // rows of the data kinds over time
		description string
	}{
		// parties × kinds present: Tracker Inc has 2 kinds, Ad Network 1, of 3 kinds in all;
		// only the advertising ID went over plain HTTP
		{"two-parties", telemetryDoc(), "#chart-kinds", 2, 6, 3, 1, 3, "one bar per party"},
		// Example Corp: install ID and URLs over TLS, the advertising ID over plain HTTP
		{"one-party", onePartySummary().Doc(), "#chart-hosts", 5, 3, 3, 1, 3, "one bar per host"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			page := filepath.Join(dir, "report.html")
			fh, err := os.Create(page)
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteHTML(fh, c.doc); err != nil {
				t.Fatal(err)
			}
			fh.Close()

			opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
				chromedp.Flag("headless", "new"), chromedp.WindowSize(1200, 1600), chromedp.UserDataDir(filepath.Join(dir, "profile")))
			actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
			defer cancelA()
			ctx, cancel := chromedp.NewContext(actx)
			defer cancel()
			ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
			defer cancelT()
			messages := chromedp.Console(ctx) // subscribed before the page loads
			count := func(js string) int {
				n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
				if err != nil {
					t.Fatalf("chromium: %s: %v", js, err)
				}
				return n
			}
			if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page), chromedp.WaitVisible("#chart-matrix svg")); err != nil {
				t.Fatalf("chromium: %v", err)
			}
			title, err := chromedp.Run(ctx, chromedp.Title())
			if err != nil {
				t.Fatal(err)
			}
			bars := count(`document.querySelectorAll('` + c.first + ` svg rect').length`)
			columns := count(`document.querySelectorAll('#chart-timeline svg rect').length`)
			kindRows := count(`document.querySelectorAll('#chart-kinds-time svg text[text-anchor="end"]').length - 1`) // less the end of the axis
			kindCells := count(`[...document.querySelectorAll('#chart-kinds-time svg rect')].filter(r => r.getBBox().width > 0).length`)
			cells := count(`document.querySelectorAll('#chart-matrix svg rect').length`)
			filled := count(`[...document.querySelectorAll('#chart-matrix svg rect')].filter(r => r.getBBox().width > 0 && r.getAttribute('fill') !== '#f1f1f1').length`)
			outlined := count(`[...document.querySelectorAll('#chart-matrix svg rect')].filter(r => getComputedStyle(r).stroke === 'rgb(198, 40, 40)').length`)
			legend := count(`[...document.querySelectorAll('#chart-matrix .legend span')].filter(s => s.textContent.includes('unencrypted') && s.querySelector('i').getBoundingClientRect().width > 0).length`)
			drawn := count(`[...document.querySelectorAll('svg')].filter(s => s.getBoundingClientRect().width > 0 && s.getBoundingClientRect().height > 0).length`)
			shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
			if err != nil {
				t.Fatalf("chromium: screenshot: %v", err)
			}
			// everything the page logged, up to a line of our own
			if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`console.log("phonehome-test-end")`)); err != nil {
				t.Fatal(err)
			}
			var problems []string
			for m, err := range messages {
				if err != nil {
					t.Fatalf("console: %v", err)
				}
				if m.Text == "phonehome-test-end" {
					break
				}
				if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
					problems = append(problems, m.String())
				}
			}
			if err := os.WriteFile(filepath.Join(dir, "report.png"), shot, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s (%d bytes)", filepath.Join(dir, "report.png"), len(shot))
			if title != "phonehome report" {
				t.Errorf("title %q", title)
			}
			if bars != c.firstBars {
				t.Errorf("%s: %d bars, want %s (%d)", c.first, bars, c.description, c.firstBars)
			}
			if columns < 2 {
				t.Errorf("timeline: %d columns drawn", columns)
			}
			if kindRows != c.kindRows || kindCells < kindRows {
				t.Errorf("data kinds over time: %d rows, %d cells; want %d rows, a cell or more each", kindRows, kindCells, c.kindRows)
			}
			if cells != c.cells || filled != c.filled || outlined != c.outlined {
				t.Errorf("matrix: %d cells, %d filled, %d outlined; want %d, %d and %d", cells, filled, outlined, c.cells, c.filled, c.outlined)
			}
			if legend != 1 {
				t.Error("the matrix has no legend for its red outline")
			}
			if drawn != 4 {
				t.Errorf("%d of 4 charts have a size on the page", drawn)
			}
			if len(shot) < 10_000 {
				t.Errorf("screenshot of %d bytes: nothing rendered?", len(shot))
			}
			if len(problems) > 0 {
				t.Errorf("console errors: %v", problems)
			}
		})
	}
}
