package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/store/record"
	"phonehome/internal/store/storetest"
)

// telemetry returns n bytes of JSON events, as trackers send them: keys
// repeat, identifiers and timestamps do not.
func telemetry(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	var b bytes.Buffer
	b.WriteByte('[')
	for b.Len() < n {
		fmt.Fprintf(&b, `{"event":"app_open","ts":%d,"aid":"%016x","model":"Redmi 4A","os":"Android 7.1.2","net":"wifi","seq":%d},`,
			1763452800000+r.IntN(100000), r.Uint64(), r.IntN(1000))
	}
	return b.Bytes()[:n]
}

// noise returns n bytes that do not compress, the same for the same seed.
func noise(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// bodyFlow is an HTTP flow carrying req and resp as its bodies.
func bodyFlow(seq int, req, resp []byte) *flow.Flow {
	return &flow.Flow{Source: "t", Seq: seq, Host: "t.example", Transport: flow.TransportHTTPS,
		Request:  &flow.Request{Method: "POST", URL: "https://t.example/e", Body: flow.Body{Data: req, Size: int64(len(req))}},
		Response: &flow.Response{Status: 200, Body: flow.Body{Data: resp, Size: int64(len(resp))}}}
}

// Bodies of every size and kind come back byte for byte, in full and lean
// reads; those worth it are stored compressed, the rest as they are.
func TestBodiesRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	sess, _ := st.CreateSession(ctx, "s", time.Now(), "test")
	cases := []struct {
		name string
		data []byte
		enc  int64 // how it is stored
	}{
		{"empty", []byte{}, record.EncIdentity},
		{"short", []byte("id=1"), record.EncIdentity},
		{"below the threshold", telemetry(record.CompressFrom-1, 1), record.EncIdentity},
		{"at the threshold", telemetry(record.CompressFrom, 2), record.EncZstd},
		{"a tracker's", telemetry(500, 3), record.EncIdentity},
		{"a tracker's batch", telemetry(3000, 3), record.EncZstd},
		{"entropy-coded", telemetry(record.EntropyFrom, 4), record.EncZstd},
		{"100 KiB", telemetry(100<<10, 5), record.EncZstd},
		{"incompressible", noise(100<<10, 6), record.EncIdentity},
		{"zeros", make([]byte, 1<<20), record.EncZstd},
	}
	w := st.Writer(ctx, sess)
	for i, c := range cases {
		if err := w.Add(bodyFlow(i, c.data, c.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rows, err := st.db.Query("SELECT seq, req_body_enc, resp_body_enc, length(req_body) FROM flows ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var seq, reqEnc, respEnc, n int64
		if err := rows.Scan(&seq, &reqEnc, &respEnc, &n); err != nil {
			t.Fatal(err)
		}
		c := cases[seq]
		if reqEnc != c.enc || respEnc != c.enc {
			t.Errorf("%s body (%d bytes) stored with encodings %d, %d; want %d", c.name, len(c.data), reqEnc, respEnc, c.enc)
		}
		if c.enc == record.EncZstd && n > int64(len(c.data)-len(c.data)/8) {
			t.Errorf("%s body: %d bytes stored for %d", c.name, n, len(c.data))
		}
	}
	rows.Close()
	for _, lean := range []bool{false, true} {
		n := 0
		err := st.FlowsWith(ctx, sess, ReadOptions{Lean: lean}, func(f *flow.Flow) error {
			c := cases[f.Seq]
			if lean {
				c = cases[n] // a lean read leaves out the sequence number
			}
			if !bytes.Equal(f.Request.Body.Data, c.data) {
				t.Errorf("lean %v: %s request body read back as %d bytes, want %d", lean, c.name, len(f.Request.Body.Data), len(c.data))
			}
			if !lean && !bytes.Equal(f.Response.Body.Data, c.data) {
				t.Errorf("%s response body read back as %d bytes, want %d", c.name, len(f.Response.Body.Data), len(c.data))
			}
			n++
			return nil
		})
		if err != nil || n != len(cases) {
			t.Fatalf("lean %v: %d flows, %v", lean, n, err)
		}
	}
}

// A body cut to MaxBody is compressed after the cut, and the cut recorded.
func TestBodyCutThenCompressed(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"), Options{MaxBody: 4000})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, _ := st.CreateSession(ctx, "s", time.Now(), "test")
	w := st.Writer(ctx, sess)
	data := telemetry(10000, 1)
	if err := w.Add(bodyFlow(1, data, nil)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	st.Flows(ctx, sess, func(f *flow.Flow) error {
		if b := f.Request.Body; !bytes.Equal(b.Data, data[:4000]) || !b.Truncated || b.Size != 10000 {
			t.Errorf("cut body read back as %d bytes, truncated %v, size %d", len(b.Data), b.Truncated, b.Size)
		}
		return nil
	})
}

// oldDatabase writes flows as phonehome did before bodies were compressed
// (schema version 4) and returns its path.
func oldDatabase(t *testing.T, dir string, flows []*flow.Flow) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(dir, "old.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.plain = true
	sess, _ := st.CreateSession(ctx, "old", time.Now(), "test")
	w := st.Writer(ctx, sess)
	for _, f := range flows {
		if err := w.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, q := range append(undoSensors(), "ALTER TABLE flows DROP COLUMN verdict", "ALTER TABLE flows DROP COLUMN req_body_enc", "ALTER TABLE flows DROP COLUMN resp_body_enc", "PRAGMA user_version = 4") {
		if _, err := st.db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// A database from before compression reads back the same, read-only as it
// is, and after its upgrade beside newly compressed flows.
func TestOlderDatabaseReadsTheSame(t *testing.T) {
	ctx := context.Background()
	big := telemetry(50000, 1)
	path := oldDatabase(t, t.TempDir(), []*flow.Flow{bodyFlow(1, big, big), bodyFlow(2, []byte("id=1"), nil)})
	check := func(st *Store, name string, want int) {
		t.Helper()
		sess, err := st.SessionByName(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, lean := range []bool{false, true} {
			var got []*flow.Flow
			if err := st.FlowsWith(ctx, sess, ReadOptions{Lean: lean}, func(f *flow.Flow) error { got = append(got, f); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != want || !bytes.Equal(got[0].Request.Body.Data, big) || string(got[1].Request.Body.Data) != "id=1" {
				t.Fatalf("%s (lean %v): %d flows, bodies not as written", name, lean, len(got))
			}
			if !lean && !bytes.Equal(got[0].Response.Body.Data, big) {
				t.Fatalf("%s: response body not as written", name)
			}
		}
	}
	ro, err := Open(ctx, path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	check(ro, "old", 2)
	ro.Close()

	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	check(st, "old", 2)
	sess, _ := st.CreateSession(ctx, "new", time.Now(), "test")
	w := st.Writer(ctx, sess)
	w.Add(bodyFlow(1, big, big))
	w.Add(bodyFlow(2, []byte("id=1"), nil))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	check(st, "new", 2)
	var enc int64
	if err := st.db.QueryRow("SELECT req_body_enc FROM flows WHERE session_id = ? AND seq = 1", sess.ID).Scan(&enc); err != nil || enc != record.EncZstd {
		t.Errorf("a new flow's body after the upgrade: encoding %d, %v", enc, err)
	}
}

// BenchmarkInsertBodies stores flows as they come, with bodies kept as
// captured (plain, as before compression) and compressed (zstd), in one run
// so that the two can be compared on a busy machine: ns/op is wall time,
// cpu-ns/op the writing thread's CPU time where the OS tells it (what other
// processes do on the machine does not count), db-B/flow the database file
// after a checkpoint.
func BenchmarkInsertBodies(b *testing.B) {
	tracker := func(body []byte) *flow.Flow {
		f := storetest.Sample()[0]
		x := f.Findings[0] // a finding by key, as BenchmarkInsertTracker's
		f.Findings = nil
		for i := 0; i < 13; i++ {
			x.Kind, x.Value, x.Path, x.Confidence = "device_model", fmt.Sprintf("value %d", i), fmt.Sprintf("body › json:events[%d].model", i), 0.85
			f.Findings = append(f.Findings, x)
		}
		if body != nil {
			f.Request.Body = flow.Body{Data: body, Size: int64(len(body))}
		}
		return f
	}
	inputs := []struct {
		name string
		f    *flow.Flow
	}{
		{"tracker", tracker(nil)},                    // BenchmarkInsertTracker's flow: a 10-byte body
		{"tracker-500B", tracker(telemetry(500, 1))}, // the example's telemetry bodies are 100-520 bytes
		{"tracker-1KiB", tracker(telemetry(1024, 2))},
		{"tracker-2KiB", tracker(telemetry(2048, 2))},
		{"100KiB", bodyFlow(1, []byte("id=1"), telemetry(100<<10, 3))},
		{"100KiB-noise", bodyFlow(1, []byte("id=1"), noise(100<<10, 4))},
	}
	for _, in := range inputs {
		for _, mode := range []string{"plain", "zstd"} {
			b.Run(in.name+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				path := filepath.Join(b.TempDir(), "s.db")
				st, err := Open(ctx, path, Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				st.plain = mode == "plain"
				sess, _ := st.CreateSession(ctx, "bench", time.Now(), "")
				w := st.Writer(ctx, sess)
				f := *in.f
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cpu0, cpuOK := threadCPU()
				b.ReportAllocs()
				for b.Loop() {
					f.Seq++
					if err := w.Add(&f); err != nil {
						b.Fatal(err)
					}
				}
				if cpu1, _ := threadCPU(); cpuOK {
					b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				st.checkpoints.Wait() // a copy beside the writer would make the next one return early
				var busy, frames, copied int
				if err := st.db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &copied); err != nil || busy != 0 {
					b.Fatalf("checkpoint: busy %d, %v", busy, err)
				}
				if fi, err := os.Stat(path); err == nil {
					b.ReportMetric(float64(fi.Size())/float64(b.N), "db-B/flow")
				}
			})
		}
	}
}
