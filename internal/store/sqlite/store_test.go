package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/store/storetest"
)

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "phonehome.db")
	st, err := Open(ctx, path, Options{MaxBody: 4})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := st.CreateSession(ctx, "before", time.Unix(1700000000, 0), "a.pcap")
	if err != nil {
		t.Fatal(err)
	}
	w := st.Writer(ctx, sess)
	in := storetest.Sample()
	for _, f := range in {
		if err := w.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSession(ctx, "before", time.Now(), ""); !errors.Is(err, ErrSessionExists) {
		t.Errorf("duplicate session name: %v", err)
	}
	st.Close()

	// Reopen the file: the migrations must not run twice and the data must be there.
	st, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.SessionByName(ctx, "")
	if err != nil || got.Name != "before" || got.Flows != 3 {
		t.Fatalf("session %+v %v", got, err)
	}
	var out []*flow.Flow
	if err := st.Flows(ctx, got, func(f *flow.Flow) error { out = append(out, f); return nil }); err != nil {
		t.Fatal(err)
	}
	// The body was cut to MaxBody: that is recorded, not silent.
	want := in[0].Request.Body
	if b := out[0].Request.Body; string(b.Data) != "0123" || !b.Truncated || b.Size != want.Size {
		t.Errorf("stored body %+v", b)
	}
	in[0].Request.Body = flow.Body{Data: []byte("0123"), Size: 10, Truncated: true}
	storetest.Normal(in, out)
	for i := range in {
		if !reflect.DeepEqual(in[i], out[i]) {
			t.Errorf("flow %d:\n got %+v\nwant %+v", i, out[i], in[i])
		}
	}
	if _, err := st.SessionByName(ctx, "after"); !errors.Is(err, ErrNoSession) {
		t.Errorf("missing session: %v", err)
	}
}

func TestNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	if err := os.WriteFile(path, []byte("this is not sqlite, it is a text file of some length.................................................."), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), path, Options{}); err == nil {
		t.Error("a text file must not open as a store")
	}
}

func BenchmarkInsert(b *testing.B) {
	ctx := context.Background()
	st := tempStore(b)
	sess, _ := st.CreateSession(ctx, "bench", time.Now(), "")
	w := st.Writer(ctx, sess)
	f := storetest.Sample()[0]
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Add(f); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

func TestReadWithoutResponseContent(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	sess, err := st.CreateSession(ctx, "s", time.Now(), "test")
	if err != nil {
		t.Fatal(err)
	}
	w := st.Writer(ctx, sess)
	in := &flow.Flow{Host: "x.example", Transport: flow.TransportHTTPS,
		Request:  &flow.Request{Method: "POST", URL: "https://x.example/a", Headers: flow.Headers{{Name: "User-Agent", Value: "ua"}}, Body: flow.Body{Data: []byte("id=1"), Size: 4}},
		Response: &flow.Response{Status: 200, Headers: flow.Headers{{Name: "Server", Value: "s"}}, Body: flow.Body{Data: []byte("big"), Size: 3}},
		Findings: []flow.Finding{{Kind: "device_id", Value: "1", Path: "body › form:id"}}}
	if err := w.Add(in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var got *flow.Flow
	if err := st.FlowsWith(ctx, sess, ReadOptions{Lean: true}, func(f *flow.Flow) error { got = f; return nil }); err != nil {
		t.Fatal(err)
	}
	if got == nil || string(got.Request.Body.Data) != "id=1" || got.Request.Headers.Get("User-Agent") != "ua" || len(got.Findings) != 1 {
		t.Fatalf("request side must be whole: %+v", got)
	}
	if got.Response == nil || got.Response.Status != 200 || got.Response.Body.Size != 3 || got.Response.Body.Data != nil || len(got.Response.Headers) != 0 {
		t.Errorf("response: status and size kept, content left out: %+v", got.Response)
	}
}

// Two sessions written at the same time interleave their rows; each reads back
// with its own findings only.
func TestInterleavedSessionsKeepTheirFindings(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	var ws [2]*Writer
	var ss [2]Session
	for i := range ws {
		var err error
		if ss[i], err = st.CreateSession(ctx, []string{"a", "b"}[i], time.Now(), "test"); err != nil {
			t.Fatal(err)
		}
		ws[i] = st.Writer(ctx, ss[i])
	}
	for n := 0; n < 10; n++ {
		i := n % 2
		f := &flow.Flow{Host: ss[i].Name + ".example", Transport: flow.TransportHTTP, Request: &flow.Request{Method: "GET", URL: "http://x/"},
			Findings: []flow.Finding{{Kind: "device_id", Value: ss[i].Name, Path: "query:id"}, {Kind: "email", Value: ss[i].Name + "@x", Path: "query:e"}}}
		if n == 4 {
			f.Findings = nil
		}
		if err := ws[i].Add(f); err != nil {
			t.Fatal(err)
		}
		if err := ws[i].Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for i, sess := range ss {
		flows, findings := 0, 0
		err := st.Flows(ctx, sess, func(f *flow.Flow) error {
			flows++
			for _, x := range f.Findings {
				findings++
				if x.Kind == "device_id" && x.Value != sess.Name {
					t.Errorf("session %s: flow %d has a finding of the other session", sess.Name, f.ID)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{8, 10}[i]; flows != 5 || findings != want {
			t.Errorf("session %s: %d flows, %d findings; want 5 and %d", sess.Name, flows, findings, want)
		}
	}
}

// A database written before findings were packed per flow gets them packed
// when it is opened, and reads back the same.
func TestFindingsBackfilledOnUpgrade(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := st.CreateSession(ctx, "s", time.Now(), "test")
	w := st.Writer(ctx, sess)
	want := []flow.Finding{{Kind: "imei", Value: "356938035643809", Path: "query:imei", Method: flow.MethodPattern, Confidence: 0.95},
		{Kind: "device_model", Value: "Pixel\x00 7", Path: "header:User-Agent", Method: flow.MethodKey, Confidence: 0.6, Context: true}}
	w.Add(&flow.Flow{Host: "x", Transport: flow.TransportHTTP, Request: &flow.Request{Method: "GET", URL: "http://x/"}, Findings: want})
	w.Add(&flow.Flow{Host: "y", Transport: flow.TransportTLS})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// make it look like a version 2 database: findings in their own table
	for _, q := range append(undoSensors(),
		`CREATE TABLE findings (id INTEGER PRIMARY KEY, flow_id INTEGER NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
			kind TEXT NOT NULL, value TEXT NOT NULL, path TEXT NOT NULL, method TEXT NOT NULL, confidence REAL NOT NULL, context INTEGER NOT NULL DEFAULT 0)`,
		`INSERT INTO findings(flow_id, kind, value, path, method, confidence, context) SELECT id, 'imei', '356938035643809', 'query:imei', 'pattern', 0.95, 0 FROM flows WHERE host = 'x'`,
		`INSERT INTO findings(flow_id, kind, value, path, method, confidence, context) SELECT id, 'device_model', 'Pixel' || char(0) || ' 7', 'header:User-Agent', 'key', 0.6, 1 FROM flows WHERE host = 'x'`,
		"ALTER TABLE flows DROP COLUMN findings", "ALTER TABLE flows DROP COLUMN verdict", "ALTER TABLE flows DROP COLUMN req_body_enc", "ALTER TABLE flows DROP COLUMN resp_body_enc",
		"PRAGMA user_version = 2") {
		if _, err := st.db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	st.Close()
	st, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var got [][]flow.Finding
	if err := st.Flows(ctx, sess, func(f *flow.Flow) error { got = append(got, f.Findings); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0], want) || got[1] != nil {
		t.Errorf("after upgrade: %+v", got)
	}
}

// BenchmarkFlowsLean reads a session as a report does (b.N flows per op
// reported as ns/flow).
func BenchmarkFlowsLean(b *testing.B) {
	ctx := context.Background()
	st := tempStore(b)
	sess, _ := st.CreateSession(ctx, "b", time.Now(), "bench")
	w := st.Writer(ctx, sess)
	const n = 20000
	for i := 0; i < n; i++ {
		w.Add(&flow.Flow{Host: "t.example.com", Transport: flow.TransportHTTPS, Start: time.Unix(1763452800, int64(i)),
			Dest:     flow.Destination{Owner: "Example", Category: "analytics"},
			Request:  &flow.Request{Method: "POST", URL: "https://t.example.com/e", Headers: flow.Headers{{Name: "User-Agent", Value: "app/1.0"}, {Name: "Content-Type", Value: "application/json"}}, Body: flow.Body{Data: []byte(`{"aid":"3b6f1e0a9c2d4f81","ev":"open"}`), Size: 38}},
			Response: &flow.Response{Status: 200, Body: flow.Body{Data: make([]byte, 900), Size: 900}},
			Findings: []flow.Finding{{Kind: "android_id", Value: "3b6f1e0a9c2d4f81", Path: "body › json:aid", Method: flow.MethodKey, Confidence: 0.9}}})
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		count := 0
		if err := st.FlowsWith(ctx, sess, ReadOptions{Lean: true}, func(*flow.Flow) error { count++; return nil }); err != nil || count != n {
			b.Fatal(count, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/flow")
}

// BenchmarkInsertTracker stores a tracker request with 13 findings, as the
// example's telemetry carries.
func BenchmarkInsertTracker(b *testing.B) {
	ctx := context.Background()
	st := tempStore(b)
	sess, _ := st.CreateSession(ctx, "bench", time.Now(), "")
	w := st.Writer(ctx, sess)
	f := storetest.Sample()[0]
	f.Findings = nil
	for i := 0; i < 13; i++ {
		f.Findings = append(f.Findings, flow.Finding{Kind: "device_model", Value: fmt.Sprintf("value %d", i), Path: fmt.Sprintf("body › json:events[%d].model", i), Method: flow.MethodKey, Confidence: 0.85})
	}
	b.ReportAllocs()
	for b.Loop() {
		f.ID = 0
		if err := w.Add(f); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// A lean read of a large session goes in chunks on two connections; the
// flows still come in order, each once, and only the session's own.
func TestLeanReadInChunks(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	a, _ := st.CreateSession(ctx, "a", time.Now(), "test")
	b, _ := st.CreateSession(ctx, "b", time.Now(), "test")
	wa, wb := st.Writer(ctx, a), st.Writer(ctx, b)
	other := func(i int) bool { return i/500%3 == 2 } // blocks of 500 rows of session b between a's
	for i := 0; i < 12000; i++ {
		w := wa
		if other(i) {
			w = wb
		}
		if err := w.Add(&flow.Flow{Host: "x", Transport: flow.TransportTLS, Seq: i}); err != nil {
			t.Fatal(err)
		}
		if i%500 == 499 { // one writer at a time holds the database
			w.Flush()
		}
	}
	wa.Close()
	wb.Close()
	var last int64
	n := 0
	err := st.FlowsWith(ctx, a, ReadOptions{Lean: true}, func(f *flow.Flow) error {
		if f.ID <= last {
			t.Fatalf("flow %d after %d", f.ID, last)
		}
		if other(f.Seq) {
			t.Fatalf("flow %d of the other session", f.ID)
		}
		last = f.ID
		n++
		return nil
	})
	if err != nil || n != 8000 {
		t.Fatalf("%d flows, %v", n, err)
	}
}

// tempStore opens a store in a file of the test's temporary directory.
func tempStore(tb testing.TB) *Store {
	tb.Helper()
	st, err := Open(context.Background(), filepath.Join(tb.TempDir(), "s.db"), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// BenchmarkInsertProxied stores what the proxy records for one request of
// its benchmark: a GET and a 1 KiB answer, with the headers curl and a Go
// server send.
func BenchmarkInsertProxied(b *testing.B) {
	ctx := context.Background()
	st := tempStore(b)
	sess, _ := st.CreateSession(ctx, "bench", time.Now(), "")
	w := st.Writer(ctx, sess)
	body := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz"), 40)[:1024]
	t0 := time.Now()
	f := &flow.Flow{Source: "proxy", Start: t0, End: t0.Add(200 * time.Microsecond),
		Client: flow.Endpoint{Addr: netip.MustParseAddr("127.0.0.1"), Port: 40100}, Server: flow.Endpoint{Addr: netip.MustParseAddr("127.0.0.1"), Port: 18100},
		Host: "127.0.0.1", Transport: flow.TransportHTTP,
		Request: &flow.Request{Method: "GET", URL: "http://127.0.0.1:18100/", Proto: "HTTP/1.1",
			Headers: flow.Headers{{Name: "Host", Value: "127.0.0.1:18100"}, {Name: "User-Agent", Value: "Go-http-client/1.1"}, {Name: "Accept-Encoding", Value: "gzip"}}},
		Response: &flow.Response{Status: 200, Reason: "OK", Proto: "HTTP/1.1",
			Headers: flow.Headers{{Name: "Content-Type", Value: "application/octet-stream"}, {Name: "Date", Value: t0.UTC().Format(http.TimeFormat)}, {Name: "Content-Length", Value: "1024"}},
			Body:    flow.Body{Data: body, Size: 1024}},
		BytesDown: 1024, Dest: flow.Destination{Party: "first"}}
	b.ReportAllocs()
	for b.Loop() {
		f.Seq++
		if err := w.Add(f); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// Committed flows wait in the write-ahead log until the capture is idle (or
// the log passes checkpointAfter); Idle moves them into the database file.
func TestIdleCheckpoints(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, _ := st.CreateSession(ctx, "s", time.Now(), "test")
	w := st.Writer(ctx, sess)
	body := noise(4000, 1)     // stored as it is: it does not compress
	for i := 0; i < 500; i++ { // 2 MB: more than SQLite's own checkpoint would have let through
		if err := w.Add(&flow.Flow{Host: "x", Transport: flow.TransportHTTP, Request: &flow.Request{Method: "POST", URL: "http://x/", Body: flow.Body{Data: body, Size: 4000}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	if db, wal := size(path), size(path+"-wal"); db > 1<<20 || wal < 2_000_000 {
		t.Fatalf("after a commit: database %d bytes, log %d bytes; want the flows in the log", db, wal)
	}
	if err := w.Idle(); err != nil {
		t.Fatal(err)
	}
	st.checkpoints.Wait() // the copy runs beside the writer
	if db := size(path); db < 2_000_000 {
		t.Fatalf("after Idle the database file has %d bytes; want the 2 MB of flows in it", db)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Sessions(ctx); err != nil || len(got) != 1 || got[0].Flows != 500 {
		t.Fatalf("sessions after Idle: %+v, %v", got, err)
	}
}
