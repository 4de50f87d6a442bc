package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"phonehome/internal/capture"
	"phonehome/internal/flow"
	goldenfile "phonehome/internal/golden"
	"phonehome/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func phonehome(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, "./cmd/phonehome", name, got, *update)
}

// afterFile is the example phone the next day, after opting out: the second
// session of the before/after comparison.
var afterFile = filepath.Join("..", "..", "internal", "example", "after", "xiaomi-after-opt-out.har")

func TestAnalyzeExampleGolden(t *testing.T) {
	for _, c := range []struct {
		golden string
		args   []string
	}{
		{"analyze-example.txt", []string{"analyze", "--example"}},
		{"analyze-example-flows.txt", []string{"analyze", "--example", "--flows"}},
		{"analyze-example.jsonl", []string{"analyze", "--example", "--format", "json"}},
		{"analyze-example.md", []string{"analyze", "--example", "--format", "markdown"}},
		{"analyze-example.html", []string{"analyze", "--example", "--format", "html"}},
		{"analyze-after.txt", []string{"analyze", afterFile}},
		{"analyze-after.md", []string{"analyze", "--format", "markdown", afterFile}},
		{"analyze-after.html", []string{"analyze", "--format", "html", afterFile}},
		{"analyze-after.jsonl", []string{"analyze", "--format", "json", afterFile}},
		{"diff-example.txt", []string{"diff", "--example"}},
		{"diff-example.md", []string{"diff", "--example", "--format", "markdown"}},
		{"diff-example.json", []string{"diff", "--example", "--format", "json"}},
	} {
		t.Run(c.golden, func(t *testing.T) {
			out, errOut, code := phonehome(t, c.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			golden(t, c.golden, out)
		})
	}
}

func TestAnalyzeStoresSession(t *testing.T) {
	db := filepath.Join(t.TempDir(), "phone.db")
	_, errOut, code := phonehome(t, "analyze", "--example", "--db", db, "--session", "before opt-out")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, errOut, code = phonehome(t, "analyze", "--example", "--db", db, "--session", "before opt-out")
	if code == 0 || !strings.Contains(errOut, "already exists") || !strings.Contains(errOut, "--session") {
		t.Errorf("reusing a session name must fail and say what to do: %d %s", code, errOut)
	}
	out, errOut, code := phonehome(t, "sessions", "--db", db)
	if code != 0 || !strings.Contains(out, "before opt-out") || !strings.Contains(out, "22") {
		t.Errorf("sessions: %d %s %s", code, out, errOut)
	}
}

func TestAnalyzeBadInput(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("just some notes"), 0o644)
	good := filepath.Join("..", "..", "internal", "capture", "testdata", "http-ethernet.pcap")
	cut := filepath.Join("..", "..", "internal", "capture", "testdata", "truncated.pcap")

	out, errOut, code := phonehome(t, "analyze", good, text, cut)
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	for _, want := range []string{"notes.txt", "not pcap, pcapng, HAR or a mitmproxy flow file", "truncated.pcap: packet 12 at offset 1538", "the 2 flows read before the damage are shown"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	// Flows of the good file and of the part of the truncated file are still reported.
	if !strings.Contains(out, "12 flows") || !strings.Contains(out, "127.0.0.1") {
		t.Errorf("what was read must be reported:\n%s", out)
	}

	_, errOut, code = phonehome(t, "analyze")
	if code != 1 || !strings.Contains(errOut, "--example") {
		t.Errorf("no files: %d %s", code, errOut)
	}
	_, errOut, code = phonehome(t, "analyze", "--format", "xml", good)
	if code != 1 || !strings.Contains(errOut, "text, markdown, html, json") {
		t.Errorf("bad format: %d %s", code, errOut)
	}
	_, errOut, code = phonehome(t, "analyze", filepath.Join(dir, "missing.pcap"))
	if code != 1 || !strings.Contains(errOut, "missing.pcap") {
		t.Errorf("missing file: %d %s", code, errOut)
	}
}

// TestReadErrorMessages: each file that could not be read is named once,
// with the cause and what of it is shown; when nothing could be read at all
// there is no report to contradict the errors.
func TestReadErrorMessages(t *testing.T) {
	dir := t.TempDir()
	captures := filepath.Join(dir, "captures")
	os.Mkdir(captures, 0o755)
	for _, n := range []string{"a.pcapng", "b.pcapng", "c.har", "notes.txt"} {
		os.WriteFile(filepath.Join(captures, n), nil, 0o644)
	}
	spaced := filepath.Join(dir, "my captures")
	os.Mkdir(spaced, 0o755)
	mixed, err := os.ReadFile(filepath.Join("..", "..", "internal", "capture", "testdata", "mixed.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.pcapng")
	os.WriteFile(cut, mixed[:760], 0o644) // inside the fourth packet, the sixth pcapng block
	truncated := filepath.Join("..", "..", "internal", "capture", "testdata", "truncated.pcap")
	good := filepath.Join("..", "..", "internal", "capture", "testdata", "http-ethernet.pcap")
	missing := filepath.Join(dir, "missing.pcap")
	const cutErr = "packet 4 at offset 660: truncated pcapng block: needs 200 bytes, file has 100"
	const truncErr = "packet 12 at offset 1538: truncated packet data: needs 32834 bytes, file has 18446"
	for _, c := range []struct {
		name   string
		args   []string
		stdout string // "" for none, else a part of it
		stderr string // exactly
	}{
		{"a directory", []string{"analyze", captures}, "",
			"phonehome: nothing could be read from " + captures + ": it is a directory, not a capture file: name the files in it, e.g. phonehome analyze " + captures + "/*.pcapng\n"},
		{"a directory with a space", []string{"analyze", spaced + "/"}, "",
			"phonehome: nothing could be read from " + spaced + "/: it is a directory, not a capture file: name the files in it, e.g. phonehome analyze '" + spaced + "'/*.pcap\n"},
		{"the only file cut before its first flow", []string{"analyze", cut}, "",
			"phonehome: nothing could be read from " + cut + ": " + cutErr + "\n"},
		{"the same in JSON", []string{"analyze", "--format", "json", cut}, "",
			"phonehome: nothing could be read from " + cut + ": " + cutErr + "\n"},
		{"two files, neither readable", []string{"analyze", missing, cut}, "",
			"phonehome: nothing could be read from " + missing + ": no such file or directory\n" +
				"phonehome: nothing could be read from " + cut + ": " + cutErr + "\n"},
		{"the only file cut after two flows", []string{"analyze", truncated}, "2 flows from 1 device(s)",
			"phonehome: read " + truncated + ": " + truncErr + "; the 2 flows read before the damage are shown\n"},
		{"a good file and a cut one", []string{"analyze", good, cut}, "10 flows from 1 device(s)",
			"phonehome: nothing could be read from " + cut + ": " + cutErr + "\n"},
		{"diff of a directory", []string{"diff", captures, good}, "",
			"phonehome: diff: nothing could be read from " + captures + ": it is a directory, not a capture file: name one capture file for each session\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := phonehome(t, c.args...)
			if code != 1 {
				t.Errorf("exit %d", code)
			}
			if errOut != c.stderr {
				t.Errorf("stderr:\n%s\nwant:\n%s", errOut, c.stderr)
			}
			if c.stdout == "" && out != "" || !strings.Contains(out, c.stdout) {
				t.Errorf("stdout:\n%s\nwant %q", out, c.stdout)
			}
		})
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	for _, cmd := range append(root.Commands(), root) {
		if cmd.Name() == "help" || cmd.Name() == "completion" {
			continue
		}
		args := []string{cmd.Name(), "--help"}
		if cmd == root {
			args = []string{"--help"}
		}
		out, _, code := phonehome(t, args...)
		if code != 0 || !strings.Contains(out, "Usage:") || len(out) < 150 {
			t.Errorf("%s --help: exit %d, %d bytes", cmd.Name(), code, len(out))
		}
	}
}

// TestStoredBodiesSurviveBufferReuse reads a capture into a store while the
// reader recycles body buffers, and checks every stored body against a
// second, non-recycling read of the same file.
func TestStoredBodiesSurviveBufferReuse(t *testing.T) {
	capFile := filepath.Join("..", "..", "internal", "capture", "testdata", "http-ethernet.pcap")
	db := filepath.Join(t.TempDir(), "reuse.db")
	if _, errOut, code := phonehome(t, "analyze", "--db", db, "--session", "s", capFile); code != 0 {
		t.Fatal(errOut)
	}
	var want []*flow.Flow
	if _, err := capture.ReadFile(capFile, capture.Options{}, func(f *flow.Flow) { want = append(want, f) }); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, err := st.SessionByName(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	err = st.Flows(ctx, sess, func(f *flow.Flow) error {
		if !bytes.Equal(f.Response.Body.Data, want[i].Response.Body.Data) || !bytes.Equal(f.Request.Body.Data, want[i].Request.Body.Data) {
			t.Errorf("flow %d (%s): stored body differs from the capture", i, f.Request.URL)
		}
		i++
		return nil
	})
	if err != nil || i != len(want) {
		t.Fatalf("%v: %d of %d flows", err, i, len(want))
	}
}

func TestAnalyzeTrackersFlag(t *testing.T) {
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte("0.0.0.0 connect.rom.miui.com\n"), 0o644)
	out, errOut, code := phonehome(t, "analyze", "--example", "--format", "json", "--trackers", hosts)
	if code != 0 || !strings.Contains(errOut, "loaded 1 tracker domains") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, `"type":"finding"`) {
		t.Error("JSON output must carry finding lines")
	}
	prose := filepath.Join(dir, "notes.txt")
	os.WriteFile(prose, []byte("not a list\nof anything\n"), 0o644)
	_, errOut, code = phonehome(t, "analyze", "--example", "--trackers", prose)
	if code != 1 || !strings.Contains(errOut, "notes.txt") || !strings.Contains(errOut, "expected a hosts file") {
		t.Errorf("a file that is no tracker list: %d %s", code, errOut)
	}
	// a program that happens to hold Adblock rules, as phonehome itself does
	program := filepath.Join(dir, "phonehome")
	os.WriteFile(program, []byte("\x7fELF\x02\x01\x01\x00\x00\x00\n||tracking.intl.miui.com^\napi.ad.intl.xiaomi.com\n"), 0o755)
	_, errOut, code = phonehome(t, "analyze", "--example", "--trackers", program)
	want := "phonehome: analyze: --trackers " + program + ": load tracker list phonehome: unknown tracker list format: it is not text (a NUL byte at offset 7, as in a program, an archive or a capture); expected a hosts file, one domain per line, Adblock/EasyPrivacy rules, Disconnect services.json, DuckDuckGo tds.json or an Exodus tracker export\n"
	if code != 1 || errOut != want {
		t.Errorf("a program as a tracker list: %d\n%s\nwant\n%s", code, errOut, want)
	}
	_, errOut, code = phonehome(t, "analyze", "--example", "--phone-region", "India")
	if code != 1 || !strings.Contains(errOut, "two-letter") {
		t.Errorf("bad region: %d %s", code, errOut)
	}
	out, _, code = phonehome(t, "analyze", "--example", "--no-detect")
	if code != 0 || strings.Contains(out, "WHAT WAS SENT") {
		t.Errorf("--no-detect must skip findings: %d", code)
	}
}

func TestAnalyzeProfile(t *testing.T) {
	out, errOut, code := phonehome(t, "analyze", "--example", "--format", "json", "--profile", filepath.Join("..", "..", "docs", "example-profile.yaml"))
	if code != 0 || !strings.Contains(errOut, "looking for") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		`"kind":"imei","value":"356938035643809","path":"body › json:imei_md5 › as md5","method_found":"known"`,
		`"kind":"contact","value":"+91 98200 12345","path":"query:phone › base64","method_found":"known"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s", want)
		}
	}
	bad := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(bad, []byte("shoe_size: 42\n"), 0o644)
	_, errOut, code = phonehome(t, "analyze", "--example", "--profile", bad)
	if code != 1 || !strings.Contains(errOut, "shoe_size") || !strings.Contains(errOut, "imei") {
		t.Errorf("unknown kind in a profile: %d %s", code, errOut)
	}
}

func TestCACommand(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	out, errOut, code := phonehome(t, "ca")
	if code != 0 || !strings.Contains(errOut, "created") || !strings.Contains(out, "SHA-256 fingerprint: ") {
		t.Fatalf("first run: %d %s %s", code, out, errOut)
	}
	path, _, code := phonehome(t, "ca", "--path")
	path = strings.TrimSpace(path)
	if code != 0 || !strings.HasSuffix(path, filepath.Join("phonehome", "ca.pem")) {
		t.Fatalf("--path: %q", path)
	}
	if _, err := os.Stat(path); err != nil {
		t.Error(err)
	}
	again, errOut, _ := phonehome(t, "ca")
	if again != out || strings.Contains(errOut, "created") {
		t.Error("the second run must show the same CA without creating one")
	}
}

func TestFindingsAreStored(t *testing.T) {
	db := filepath.Join(t.TempDir(), "f.db")
	if _, errOut, code := phonehome(t, "analyze", "--example", "--db", db, "--session", "s"); code != 0 {
		t.Fatal(errOut)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, _ := st.SessionByName(ctx, "s")
	var imei, owners int
	st.Flows(ctx, sess, func(f *flow.Flow) error {
		for _, x := range f.Findings {
			if x.Kind == "imei" && x.Value == "356938035643809" {
				imei++
			}
		}
		if f.Dest.Owner == "Xiaomi" {
			owners++
		}
		return nil
	})
	if imei != 1 || owners < 10 {
		t.Errorf("stored findings: imei %d, flows with an owner %d", imei, owners)
	}
}

// TestReportMatchesAnalyze: a stored session reads back as analyze showed it.
func TestReportMatchesAnalyze(t *testing.T) {
	db := filepath.Join(t.TempDir(), "r.db")
	direct, _, code := phonehome(t, "analyze", "--example", "--db", db, "--session", "example")
	if code != 0 {
		t.Fatal("analyze failed")
	}
	stored, errOut, code := phonehome(t, "report", "--db", db)
	if code != 0 {
		t.Fatalf("report: %s", errOut)
	}
	if !strings.HasPrefix(stored, `session "example"`) || !strings.HasSuffix(stored, direct) {
		t.Errorf("report differs from analyze:\n%s\n---\n%s", stored, direct)
	}
	js, _, _ := phonehome(t, "report", "--db", db, "--format", "json")
	if strings.Count(js, `"type":"finding"`) < 50 || strings.Count(js, `"type":"flow"`) != 22 {
		t.Errorf("JSON report: %d findings, %d flows", strings.Count(js, `"type":"finding"`), strings.Count(js, `"type":"flow"`))
	}
	_, errOut, code = phonehome(t, "report", "--db", db, "--session", "nope")
	if code != 1 || !strings.Contains(errOut, "example") {
		t.Errorf("unknown session must list the ones there are: %s", errOut)
	}
}

// storedBeforeAfter is a database of two sessions analyze stored: the
// example phone before the opt-out ("before") and the day after ("after").
func storedBeforeAfter(t *testing.T) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "phone.db")
	for _, c := range [][]string{
		{"analyze", "--example", "--db", db, "--session", "before"},
		{"analyze", "--db", db, "--session", "after", afterFile},
	} {
		if _, errOut, code := phonehome(t, c...); code != 0 {
			t.Fatalf("%v: exit %d: %s", c, code, errOut)
		}
	}
	return db
}

func TestDiffStoredSessions(t *testing.T) {
	db := storedBeforeAfter(t)
	stored, errOut, code := phonehome(t, "diff", "--db", db, "before", "after")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	fresh, _, _ := phonehome(t, "diff", "--example")
	// the same comparison, whether the sessions come from the store or are read afresh
	body := func(s string) string { return s[strings.Index(s, "\nAfter the change"):] }
	if body(stored) != body(fresh) {
		t.Errorf("diff of stored sessions differs from the diff of the captures:\n%s\n---\n%s", stored, fresh)
	}
	for _, want := range []string{"STILL SENT", "us.micardapi.micloud.xiaomi.net  phone_number", "STOPPED", "search_query", "NEW", "graph.facebook.com", "NOT RESET"} {
		if !strings.Contains(stored, want) {
			t.Errorf("diff lacks %q", want)
		}
	}
	_, errOut, code = phonehome(t, "diff", "--db", db, "before", "nope")
	if code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("an unknown session must be named: %d %s", code, errOut)
	}
	_, errOut, code = phonehome(t, "diff", "only-one.pcap")
	if code == 0 || !strings.Contains(errOut, "name two") {
		t.Errorf("one argument: %d %s", code, errOut)
	}
}

func TestEvidencePack(t *testing.T) {
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("sha256sum not installed: it checks the pack as a recipient would")
	}
	dir := filepath.Join(t.TempDir(), "evidence")
	_, errOut, code := phonehome(t, "analyze", "--example", "--evidence", dir)
	if code != 0 || !strings.Contains(errOut, "evidence: 6 requests") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = dir
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), "xiaomi.har: OK") {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	var m struct {
		Files []struct {
			File    string   `json:"file"`
			Party   string   `json:"party"`
			Entries int      `json:"entries"`
			Kinds   []string `json:"kinds"`
		} `json:"files"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 1 || m.Files[0].Party != "Xiaomi" || m.Files[0].Entries != 6 || !slices.Contains(m.Files[0].Kinds, "phone_number") {
		t.Errorf("manifest: %+v", m)
	}
	// the HAR files read back as the flows that carried the data
	out, errOut, code := phonehome(t, "analyze", "--format", "json", filepath.Join(dir, m.Files[0].File))
	if code != 0 || strings.Count(out, `"type":"flow"`) != 6 || !strings.Contains(out, `"kind":"phone_number"`) {
		t.Errorf("evidence HAR does not read back: %d %s", code, errOut)
	}
	// a second pack into the same directory would mix two; refused
	_, errOut, code = phonehome(t, "analyze", "--example", "--evidence", dir)
	if code == 0 || !strings.Contains(errOut, "already holds") {
		t.Errorf("reusing a pack directory: %d %s", code, errOut)
	}
}

func TestDescribeBuild(t *testing.T) {
	vcs := func(rev, at, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: at}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "fe9995da17480647cf5ee814e90d4683d46cab40"
	for _, c := range []struct {
		name    string
		bi      *debug.BuildInfo
		stamped string
		want    string
	}{
		{"go build in a clone, uncommitted changes",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "phonehome", Version: "v0.0.0-20261202165519-fe9995da1748+dirty"}, Settings: vcs(rev, "2026-12-02T16:55:19Z", "true")}, "dev",
			"v0.0.0-20261202165519-fe9995da1748 (commit fe9995da1748+dirty, 2026-12-02 16:55:19 UTC, go1.26.8)"},
		{"a release built from its tag",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "phonehome", Version: "v1.2.0"}, Settings: vcs(rev, "2026-12-02T17:55:19+01:00", "false")}, "dev",
			"v1.2.0 (commit fe9995da1748, 2026-12-02 16:55:19 UTC, go1.26.8)"},
		{"go install module@version: no commit",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "phonehome", Version: "v1.2.0"}}, "dev",
			"v1.2.0 (go1.26.8)"},
		{"go run or go test",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "phonehome", Version: "(devel)"}}, "dev",
			"dev (go1.26.8, no commit recorded: built by go run or go test, or with -buildvcs=false)"},
		{"an older go: (devel) with a commit",
			&debug.BuildInfo{GoVersion: "go1.22.1", Main: debug.Module{Path: "phonehome", Version: "(devel)"}, Settings: vcs(rev, "2026-12-02T16:55:19Z", "false")}, "dev",
			"dev (commit fe9995da1748, 2026-12-02 16:55:19 UTC, go1.22.1)"},
		{"stamped with -ldflags",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "phonehome", Version: "(devel)"}, Settings: vcs(rev, "2026-12-02T16:55:19Z", "false")}, "1.2.0-debian1",
			"1.2.0-debian1 (commit fe9995da1748, 2026-12-02 16:55:19 UTC, go1.26.8)"},
		{"no build information", nil, "dev", "dev"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := describeBuild(c.bi, c.stamped); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	cmd, _, code := phonehome(t, "version")
	if code != 0 || !strings.HasPrefix(cmd, "phonehome dev (") {
		t.Fatalf("version: %d %q", code, cmd)
	}
	for _, args := range [][]string{{"--version"}, {"-v"}} {
		if out, errOut, code := phonehome(t, args...); code != 0 || out != cmd {
			t.Errorf("%v: exit %d, %q %s, want %q", args, code, out, errOut, cmd)
		}
	}
}

// TestVersionOfABuild builds phonehome as a user would and checks that its
// version names the commit it was built from.
func TestVersionOfABuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds phonehome")
	}
	head := func() string {
		out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
		if err != nil {
			t.Skipf("not in a git clone: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	before := head()
	bin := filepath.Join(t.TempDir(), "phonehome")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	after := head() // others may commit meanwhile
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	if !strings.HasPrefix(got, "phonehome v") || !strings.Contains(got, "(commit "+before) && !strings.Contains(got, "(commit "+after) {
		t.Errorf("version of a build: %q, want the module version and commit %s", got, after)
	}
	if flag, _ := exec.Command(bin, "--version").Output(); string(flag) != got {
		t.Errorf("--version %q differs from version %q", flag, got)
	}
}

func TestPhoneRegion(t *testing.T) {
	const refused = "is not a region the phone number library knows: "
	for _, c := range []struct {
		flag, want, err string
	}{
		{"", "", ""},
		{"in", "IN", ""},
		{"DE", "DE", ""},
		{"XK", "XK", ""}, // Kosovo: not ISO 3166-1, but the library knows its numbers
		{"XX", "", `--phone-region "XX" ` + refused + "use one of its "},
		{"uk", "", `--phone-region "uk" ` + refused + "the United Kingdom is GB; use one of its "},
		{"India", "", `--phone-region takes a two-letter country code such as IN or DE, not "India"`},
	} {
		got, err := phoneRegion(c.flag)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: %q %v, want %q", c.flag, got, err, c.want)
		case c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)):
			t.Errorf("%q: %v, want %s...", c.flag, err, c.err)
		case c.err != "" && strings.Contains(c.err, refused) && (!strings.Contains(err.Error(), " codes: AC AD AE ") || !strings.HasSuffix(err.Error(), " ZA ZM ZW")):
			t.Errorf("%q: the refusal must list the codes: %v", c.flag, err)
		}
	}
	_, errOut, code := phonehome(t, "analyze", "--example", "--phone-region", "XX")
	if code != 1 || !strings.HasPrefix(errOut, `phonehome: analyze: --phone-region "XX" `+refused) {
		t.Errorf("analyze --phone-region XX: %d %s", code, errOut)
	}
}

// TestReportAndSessionsUseRunsDefault: without --db, report and sessions
// read the database run writes by default, and never create one.
func TestReportAndSessionsUseRunsDefault(t *testing.T) {
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	db := filepath.Join(data, "phonehome", "phonehome.db")
	for _, cmd := range []string{"sessions", "report"} {
		_, errOut, code := phonehome(t, cmd)
		want := "phonehome: " + cmd + ": no database at " + db + ", where phonehome run stores its sessions: run it first, or name another database with --db FILE\n"
		if code != 1 || errOut != want {
			t.Errorf("%s before any session: %d\n%s\nwant\n%s", cmd, code, errOut, want)
		}
	}
	if _, err := os.Stat(db); err == nil {
		t.Fatal("a reading command created the database")
	}
	missing := filepath.Join(data, "phone.db")
	_, errOut, code := phonehome(t, "sessions", "--db", missing)
	if want := "phonehome: sessions: no database at " + missing + ": name the file that phonehome run or analyze --db wrote\n"; code != 1 || errOut != want {
		t.Errorf("sessions --db of a missing file: %d\n%s\nwant\n%s", code, errOut, want)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("sessions --db created the database it was to read")
	}
	if _, errOut, code := phonehome(t, "analyze", "--example", "--db", db, "--session", "example"); code != 0 {
		t.Fatal(errOut)
	}
	out, errOut, code := phonehome(t, "sessions")
	if code != 0 || !strings.Contains(out, "example") {
		t.Errorf("sessions: %d %s %s", code, out, errOut)
	}
	out, errOut, code = phonehome(t, "report")
	if code != 0 || !strings.HasPrefix(out, `session "example"`) {
		t.Errorf("report: %d %s", code, errOut)
	}
	for _, cmd := range []string{"sessions", "report"} {
		help, _, _ := phonehome(t, cmd, "--help")
		if !strings.Contains(help, "$XDG_DATA_HOME/phonehome") {
			t.Errorf("%s --help does not say which database it reads", cmd)
		}
	}
}
