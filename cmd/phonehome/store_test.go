package main

import (
	"path/filepath"
	"strings"
	"testing"

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
