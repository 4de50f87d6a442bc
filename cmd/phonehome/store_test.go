package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/store"
	"phonehome/internal/store/pgtest"
)

// A field laptop's SQLite sessions copied into PostgreSQL report exactly as
// the originals; copying again changes nothing; sessions and reports read
// from the server filter by sensor and device, and a report spans sessions.
func TestStoreCopySQLiteToPostgres(t *testing.T) {
	pg := pgtest.URL(t)
	db := filepath.Join(t.TempDir(), "laptop.db")
	for _, name := range []string{"before", "after"} {
		if _, errOut, code := phonehome(t, "analyze", "--example", "--db", db, "--session", name, "--sensor", "field-laptop"); code != 0 {
			t.Fatal(errOut)
		}
	}
	out, errOut, code := phonehome(t, "store", "copy", db, pg)
	if code != 0 || !strings.Contains(out, "2 sessions copied") || !strings.Contains(errOut, `session "before": 22 flows copied`) {
		t.Fatalf("store copy: %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = phonehome(t, "store", "copy", db, pg, "--session", "before")
	if code != 0 || !strings.Contains(out, "0 sessions copied") || !strings.Contains(errOut, `session "before": already in`) {
		t.Errorf("copying again must change nothing: %d\n%s\n%s", code, out, errOut)
	}
	for _, format := range []string{"text", "json", "html"} {
		want, errOut, code := phonehome(t, "report", "--db", db, "--session", "before", "--format", format)
		if code != 0 {
			t.Fatal(errOut)
		}
		got, errOut, code := phonehome(t, "report", "--db", pg, "--session", "before", "--format", format)
		if code != 0 {
			t.Fatal(errOut)
		}
		if got != want {
			t.Errorf("report --format %s of the copy differs from the original's:\n%s\n---\n%s", format, got, want)
		}
	}
	out, _, code = phonehome(t, "sessions", "--db", pg, "--sensor", "field-laptop", "--device", "192.168.1.23")
	if code != 0 || !strings.Contains(out, "field-laptop") || !strings.Contains(out, "192.168.1.23") || strings.Count(out, "\n") != 3 {
		t.Errorf("sessions of the sensor and device:\n%s", out)
	}
	out, _, _ = phonehome(t, "sessions", "--db", pg, "--sensor", "office-ap")
	if strings.Count(out, "\n") != 1 {
		t.Errorf("sessions of another sensor:\n%s", out)
	}
	// one report of both sessions: twice the flows of one; of the device,
	// only those it sent from its address (the HAR file's flows name none)
	span, errOut, code := phonehome(t, "report", "--db", pg, "--all")
	if code != 0 || !strings.HasPrefix(span, `session "before + after"`) || !strings.Contains(span, "44 flows from 1 device(s)") {
		t.Errorf("report across sessions: %d %s\n%s", code, errOut, span)
	}
	span, errOut, code = phonehome(t, "report", "--db", pg, "--device", "192.168.1.23")
	if code != 0 || !strings.Contains(span, "; device 192.168.1.23)") || !strings.Contains(span, "32 flows from 1 device(s)") {
		t.Errorf("report of a device across sessions: %d %s\n%s", code, errOut, span)
	}
	_, errOut, code = phonehome(t, "report", "--db", pg, "--device", "10.9.9.9")
	if code != 1 || !strings.Contains(errOut, "no such session of device 10.9.9.9") {
		t.Errorf("report of a device never seen: %d %s", code, errOut)
	}
	// diff of the two sessions as stored, of one device
	out, errOut, code = phonehome(t, "diff", "--db", pg, "--device", "192.168.1.23", "before", "after")
	if code != 0 || !strings.Contains(out, "; device 192.168.1.23)") {
		t.Errorf("diff of a device's flows: %d %s\n%s", code, errOut, out)
	}
	// and back again, into a new file, by the same command
	back := filepath.Join(t.TempDir(), "back.db")
	if _, errOut, code := phonehome(t, "store", "copy", pg, back, "--session", "after"); code != 0 {
		t.Fatal(errOut)
	}
	want, _, _ := phonehome(t, "report", "--db", db, "--session", "after")
	if got, _, _ := phonehome(t, "report", "--db", back, "--session", "after"); got != want {
		t.Errorf("report after a round trip through PostgreSQL differs:\n%s\n---\n%s", got, want)
	}
}

// Copying into a database that holds a different session of the same name
// fails and says what to do; PHONEHOME_DB names the database when --db does
// not.
func TestStoreCopyConflictAndEnv(t *testing.T) {
	pg := pgtest.URL(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	for _, db := range []string{a, b} {
		if _, errOut, code := phonehome(t, "analyze", "--example", "--db", db, "--session", "example"); code != 0 {
			t.Fatal(errOut)
		}
	}
	if _, errOut, code := phonehome(t, "store", "copy", a, pg); code != 0 {
		t.Fatal(errOut)
	}
	_, errOut, code := phonehome(t, "store", "copy", b, pg)
	if code != 1 || !strings.Contains(errOut, "already holds a different session of that name") || !strings.Contains(errOut, "rename one of them") {
		t.Errorf("conflicting copy: %d %s", code, errOut)
	}
	t.Setenv("PHONEHOME_DB", pg)
	out, errOut, code := phonehome(t, "sessions")
	if code != 0 || !strings.Contains(out, "example") {
		t.Errorf("sessions from $PHONEHOME_DB: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := phonehome(t, "store", "copy", "only-one"); code != 1 || !strings.Contains(errOut, "SRC DST") {
		t.Errorf("store copy with one argument: %d %s", code, errOut)
	}
}

// Two sensors run at once, each a proxy storing into the same PostgreSQL
// database under its own name; each session holds its own flows, and the
// server's password never shows in what run prints.
func TestTwoSensorsRunIntoPostgres(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	// the test server trusts any password: one is given to see it is hidden
	pg := strings.Replace(pgtest.URL(t), "postgres://ph@", "postgres://ph:secret@", 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer up.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sensors := []string{"office-ap", "field-laptop"}
	var wg sync.WaitGroup
	codes := make([]int, len(sensors))
	errs := make([]*syncBuffer, len(sensors))
	for i, sensor := range sensors {
		errs[i] = &syncBuffer{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = run(ctx, []string{"run", "--listen", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--db", pg, "--sensor", sensor, "--session", sensor + " run",
				"--ca-dir", filepath.Join(t.TempDir(), "ca")}, strings.NewReader(""), &syncBuffer{}, errs[i])
		}()
	}
	addrRE := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	for i, sensor := range sensors {
		var addr string
		for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if m := addrRE.FindStringSubmatch(errs[i].String()); m != nil {
				addr = m[1]
			}
		}
		if addr == "" {
			cancel()
			wg.Wait()
			t.Fatalf("%s did not start: %s", sensor, errs[i].String())
		}
		for j := 0; j < 3; j++ {
			if out, err := exec.Command("curl", "-sS", "--max-time", "10", "-x", "http://"+addr, up.URL+"/"+sensor).CombinedOutput(); err != nil || string(out) != "ok" {
				t.Fatalf("curl through %s: %v %s", sensor, err, out)
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	for i, code := range codes {
		if code != 0 || !strings.Contains(errs[i].String(), "session \""+sensors[i]+" run\" stored in postgres://ph:xxxxx@127.0.0.1") || strings.Contains(errs[i].String(), "secret") {
			t.Errorf("%s: exit %d: %s", sensors[i], code, errs[i].String())
		}
	}
	st, err := store.Open(context.Background(), pg, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, sensor := range sensors {
		sess, err := st.SessionByName(context.Background(), sensor+" run")
		if err != nil {
			t.Fatal(err)
		}
		var urls []string
		st.Flows(context.Background(), sess, func(f *flow.Flow) error { urls = append(urls, f.Request.URL); return nil })
		if sess.Sensor != sensor || len(urls) != 3 || !strings.HasSuffix(urls[0], "/"+sensor) || !sess.HasDevice("127.0.0.1") {
			t.Errorf("session of %s: %+v, %v", sensor, sess, urls)
		}
	}
}
