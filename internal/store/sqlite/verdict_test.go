package sqlite

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"phonehome/internal/flow"
)

// TestVerdictRoundTrip: what the policy decided is stored and read back, by
// full and lean reads; an allowed flow stores none; a database from before
// verdicts reads with none.
func TestVerdictRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := st.CreateSession(ctx, "v", time.Unix(1700000000, 0), "proxy")
	w := st.Writer(ctx, sess)
	block := flow.Verdict{Action: flow.ActionBlock, Rule: "owner:Xiaomi", List: "phonehome", Status: 451}
	redact := flow.Verdict{Action: flow.ActionRedact, Rule: "redact imei", Redactions: []flow.Redaction{{Kind: "imei", Path: "query:imei"}}}
	in := []flow.Verdict{block, {}, redact}
	for i, v := range in {
		f := &flow.Flow{Seq: i + 1, Host: "h.example", Transport: flow.TransportHTTPS, Verdict: v,
			Request: &flow.Request{Method: "GET", URL: "https://h.example/"}}
		if err := w.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, lean := range []bool{false, true} {
		var got []flow.Verdict
		if err := st.FlowsWith(ctx, sess, ReadOptions{Lean: lean}, func(f *flow.Flow) error { got = append(got, f.Verdict); return nil }); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, in) {
			t.Errorf("lean %v: %+v, want %+v", lean, got, in)
		}
	}
	var null int
	st.db.QueryRow("SELECT count(*) FROM flows WHERE verdict IS NULL").Scan(&null)
	if null != 1 {
		t.Errorf("%d flows without a verdict column, want the allowed one", null)
	}
	// as a database of schema version 5 was
	for _, q := range append(undoSensors(), "ALTER TABLE flows DROP COLUMN verdict", "PRAGMA user_version = 5") {
		if _, err := st.db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	st.Close()
	ro, err := Open(ctx, path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := ro.Flows(ctx, sess, func(f *flow.Flow) error {
		if f.Verdict.Action != flow.ActionAllow {
			t.Errorf("an old flow has a verdict: %v", f.Verdict)
		}
		n++
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("old database: %d flows, %v", n, err)
	}
	ro.Close()
	up, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	up.Close()
}
