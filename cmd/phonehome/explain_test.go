package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"phonehome/internal/example"
)

// exampleHAR writes the example session's HAR to a file, as a user has one.
func exampleHAR(t *testing.T) string {
	t.Helper()
	for _, f := range example.Files() {
		if strings.HasSuffix(f.Name, ".har") {
			p := filepath.Join(t.TempDir(), "session.har")
			if err := os.WriteFile(p, f.Data, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatal("the example has no HAR file")
	return ""
}

func TestExplainFlowOfAFile(t *testing.T) {
	har := exampleHAR(t)
	out, errOut, code := phonehome(t, "explain", har, "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// the decode tree with paths, and per finding its evidence and confidence
	for _, want := range []string{
		"flow POST https://tracking.intl.miui.com/track/v1",
		"body › form:android_id = 3b6f1e0a9c2d4f81",
		"android_id = 3b6f1e0a9c2d4f81\n    at body › form:android_id\n    by key, confidence 0.95: the field's name \"android_id\" says android_id",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain does not say %q:\n%s", want, out)
		}
	}
	js, _, code := phonehome(t, "explain", "--format", "json", har, "1")
	var x struct {
		Values   []struct{ Path, Value string }
		Findings []struct {
			Kind       string
			Confidence float64
			Evidence   string
		}
	}
	if err := json.Unmarshal([]byte(js), &x); code != 0 || err != nil || len(x.Values) == 0 || len(x.Findings) == 0 || x.Findings[0].Evidence == "" {
		t.Errorf("explain --format json: %d %v %s", code, err, js)
	}
	// the same flow numbers as analyze --format json
	aj, _, _ := phonehome(t, "analyze", "--format", "json", har)
	if !strings.Contains(aj, `"type":"finding","flow":1,`) || !strings.Contains(aj, `"url":"https://tracking.intl.miui.com/track/v1"`) {
		t.Error("analyze numbers the flow explain calls 1 differently")
	}
	// errors say what to do
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"explain", har}, "name a capture file and a flow number"},
		{[]string{"explain", har, "x"}, "not a flow number"},
		{[]string{"explain", har, "999"}, "has 6 flows, not 999"},
		{[]string{"explain", "--format", "yaml", har, "1"}, "use text or json"},
	} {
		_, errOut, code := phonehome(t, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want %q", c.args, code, errOut, c.want)
		}
	}
}

func TestExplainStoredFlow(t *testing.T) {
	db := filepath.Join(t.TempDir(), "p.db")
	if _, errOut, code := phonehome(t, "analyze", "--example", "--db", db, "--session", "s"); code != 0 {
		t.Fatal(errOut)
	}
	js, _, _ := phonehome(t, "report", "--db", db, "--format", "json")
	var id int64
	for _, line := range strings.Split(js, "\n") {
		if strings.Contains(line, `"type":"flow"`) && strings.Contains(line, "api.ad.intl.xiaomi.com") {
			var f struct{ ID int64 }
			if err := json.Unmarshal([]byte(line), &f); err != nil {
				t.Fatal(err)
			}
			id = f.ID
		}
	}
	if id == 0 {
		t.Fatal("no stored flow to api.ad.intl.xiaomi.com")
	}
	out, errOut, code := phonehome(t, "explain", "--db", db, strconv.FormatInt(id, 10))
	if code != 0 || !strings.Contains(out, "imei = 356938035643809") || !strings.Contains(out, "query:clientInfo › json:deviceInfo.imei") {
		t.Errorf("explain --db: exit %d %s\n%s", code, errOut, out)
	}
	if _, errOut, code := phonehome(t, "explain", "--db", db, "100000"); code == 0 || !strings.Contains(errOut, "no flow with id 100000") {
		t.Errorf("unknown id: %d %s", code, errOut)
	}
}

// TestAnalyzeNamesTheFirstSighting: a value that comes back is an
// identifier in its first request too; JSON output names that request.
func TestAnalyzeNamesTheFirstSighting(t *testing.T) {
	entry := func(ts, nonce string) string {
		return `{"startedDateTime":"2026-03-14T09:12:0` + ts + `.000Z","time":10,"request":{"method":"GET","url":"https://sdk.example/v1/e?u=q8Zr2LmX0pVbT7nC4kWd&n=` + nonce +
			`","httpVersion":"HTTP/1.1","headers":[],"queryString":[],"cookies":[],"headersSize":-1,"bodySize":0},` +
			`"response":{"status":204,"statusText":"","httpVersion":"HTTP/1.1","headers":[],"cookies":[],"content":{"size":0,"mimeType":""},"redirectURL":"","headersSize":-1,"bodySize":0},"cache":{},"timings":{"send":0,"wait":10,"receive":0}}`
	}
	har := `{"log":{"version":"1.2","creator":{"name":"test","version":"1"},"entries":[` + entry("1", "Hf83kQ0zLmN2pR7s") + "," + entry("2", "Zx91mN3qLp0sRt5u") + `]}}`
	p := filepath.Join(t.TempDir(), "two.har")
	if err := os.WriteFile(p, []byte(har), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := phonehome(t, "analyze", "--format", "json", p)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var flows []int64
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"type":"finding"`) && strings.Contains(line, `"value":"q8Zr2LmX0pVbT7nC4kWd"`) {
			var f struct{ Flow int64 }
			if err := json.Unmarshal([]byte(line), &f); err != nil {
				t.Fatal(err)
			}
			flows = append(flows, f.Flow)
		}
		if strings.Contains(line, `"type":"finding"`) && (strings.Contains(line, `"value":"Hf83kQ0zLmN2pR7s"`) || strings.Contains(line, `"value":"Zx91mN3qLp0sRt5u"`)) {
			t.Errorf("a nonce is reported: %s", line)
		}
	}
	if len(flows) != 2 || flows[0] != 2 || flows[1] != 1 {
		t.Errorf("findings of the value that came back, by flow: %v (want the second, then the first named at the end)", flows)
	}
}
