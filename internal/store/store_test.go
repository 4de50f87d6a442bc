package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"phonehome/internal/flow"
	"phonehome/internal/store/pgtest"
	"phonehome/internal/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// engine opens stores of one engine for the shared suite; every store of a
// test names the same database.
type engine struct {
	name string
	dsn  func(t *testing.T) string
}

func engines() []engine {
	return []engine{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "s.db") }},
		{"postgres", func(t *testing.T) string { return pgtest.URL(t) }},
	}
}

// eachEngine runs the test against both engines, with a fresh database each.
func eachEngine(t *testing.T, test func(t *testing.T, dsn string)) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) { test(t, e.dsn(t)) })
	}
}

func open(t *testing.T, dsn string, opts Options) *Store {
	t.Helper()
	st, err := Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func write(t *testing.T, st *Store, sess Session, flows []*flow.Flow) {
	t.Helper()
	w := st.Writer(context.Background(), sess)
	for _, f := range flows {
		if err := w.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, st *Store, sess Session, lean bool) []*flow.Flow {
	t.Helper()
	var out []*flow.Flow
	if err := st.FlowsWith(context.Background(), sess, ReadOptions{Lean: lean}, func(f *flow.Flow) error { out = append(out, f); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every field of a flow comes back as it was written, from either engine;
// a lean read leaves out what it says.
func TestSuiteRoundTrip(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		st := open(t, dsn, Options{Sensor: "office-ap"})
		sess, err := st.CreateSession(ctx, "before", time.Unix(1700000000, 0), "a.pcap")
		if err != nil {
			t.Fatal(err)
		}
		in := storetest.Sample()
		write(t, st, sess, in)
		out := readAll(t, st, sess, false)
		if len(out) != len(in) {
			t.Fatalf("%d flows read back, want %d", len(out), len(in))
		}
		want := storetest.Sample()
		storetest.Normal(want, out)
		for i := range want {
			if !reflect.DeepEqual(want[i], out[i]) {
				t.Errorf("flow %d:\n got %+v\nwant %+v", i, out[i], want[i])
			}
		}
		lean := readAll(t, st, sess, true)
		if len(lean) != 3 || lean[0].Device != "anna-phone" || lean[0].Response.Body.Data != nil || lean[0].Response.Headers != nil ||
			string(lean[0].Request.Body.Data) != "0123456789" || len(lean[0].Findings) != 2 || !reflect.DeepEqual(lean[0].Verdict, want[0].Verdict) || lean[1].DNS.Name != want[1].DNS.Name {
			t.Errorf("lean read: %+v", lean[0])
		}
		got, err := st.SessionByName(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "before" || got.Sensor != "office-ap" || got.Flows != 3 || !got.Started.Equal(time.Unix(1700000000, 0)) ||
			!reflect.DeepEqual(got.Devices, []string{"", "anna-phone", "fd00::23"}) {
			t.Errorf("session read back as %+v", got)
		}
		if _, err := st.SessionByName(ctx, "after"); !errors.Is(err, ErrNoSession) {
			t.Errorf("missing session: %v", err)
		}
		if _, err := st.CreateSession(ctx, "before", time.Now(), ""); !errors.Is(err, ErrSessionExists) {
			t.Errorf("a second session of the same name: %v", err)
		}
		if err := st.DeleteSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		if all, err := st.Sessions(ctx); err != nil || len(all) != 0 {
			t.Errorf("after delete: %v %v", all, err)
		}
	})
}

// A rolled back batch leaves nothing; the same flows sent again are stored
// once, in order; a batch past the writer's size commits on its own.
func TestSuiteRollbackAndResend(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		st := open(t, dsn, Options{})
		sess, _ := st.CreateSession(ctx, "s", time.Now(), "test")
		w := st.Writer(ctx, sess)
		flows := make([]*flow.Flow, 5000)
		for i := range flows {
			flows[i] = &flow.Flow{Seq: i + 1, Host: "h.example", Transport: flow.TransportHTTPS, Device: fmt.Sprint("dev", i%3)}
		}
		for _, f := range flows[:10] {
			if err := w.Add(f); err != nil {
				t.Fatal(err)
			}
		}
		if w.Pending() != 10 {
			t.Errorf("%d pending, want 10", w.Pending())
		}
		if err := w.Rollback(); err != nil {
			t.Fatal(err)
		}
		for _, f := range flows {
			if err := w.Add(f); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		out := readAll(t, st, sess, true)
		if len(out) != len(flows) {
			t.Fatalf("%d flows stored, want %d", len(out), len(flows))
		}
		for i, f := range out {
			if f.Host != "h.example" || f.ID != flows[i].ID || (i > 0 && f.ID <= out[i-1].ID) {
				t.Fatalf("flow %d read back as %+v", i, f)
			}
		}
		got, _ := st.SessionByName(ctx, "s")
		if !reflect.DeepEqual(got.Devices, []string{"dev0", "dev1", "dev2"}) {
			t.Errorf("devices %v", got.Devices)
		}
	})
}

// Strings no text column can hold (invalid UTF-8, NUL) do not fail a batch.
func TestSuiteHostileStrings(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		st := open(t, dsn, Options{})
		sess, _ := st.CreateSession(ctx, "s\xff\x00", time.Now(), "t")
		bad := "a\x00b\xff\xfe"
		write(t, st, sess, []*flow.Flow{{Host: bad, App: bad, Device: bad, Source: bad, Transport: flow.TransportHTTP,
			Request:  &flow.Request{Method: bad, URL: "http://x/" + bad, Proto: bad, Headers: flow.Headers{{Name: bad, Value: bad}}},
			Response: &flow.Response{Status: 200, Reason: bad}}})
		if out := readAll(t, st, sess, false); len(out) != 1 || out[0].Request == nil || out[0].Response.Status != 200 {
			t.Errorf("read back %+v", out)
		}
	})
}

// A read-only store writes nothing and says so.
func TestSuiteReadOnly(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		st := open(t, dsn, Options{})
		sess, _ := st.CreateSession(ctx, "s", time.Now(), "test")
		write(t, st, sess, storetest.Sample())
		st.Close()
		ro := open(t, dsn, Options{ReadOnly: true})
		if n := len(readAll(t, ro, sess, true)); n != 3 {
			t.Errorf("%d flows read, want 3", n)
		}
		if _, err := ro.CreateSession(ctx, "t", time.Now(), ""); !errors.Is(err, ErrReadOnly) {
			t.Errorf("create session read-only: %v", err)
		}
		if err := ro.Writer(ctx, sess).Add(storetest.Sample()[0]); !errors.Is(err, ErrReadOnly) {
			t.Errorf("add read-only: %v", err)
		}
	})
}

// Two sensors write to one database at once, each its own session; both
// read back whole, each session with its sensor.
func TestSuiteTwoSensors(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		const n = 6000
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, sensor := range []string{"office-ap", "field-laptop"} {
			st := open(t, dsn, Options{Sensor: sensor, LockTimeout: 30 * time.Second})
			sess, err := st.CreateSession(ctx, sensor+" run", time.Now(), "proxy")
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := st.Writer(ctx, sess)
				for j := 0; j < n && errs[i] == nil; j++ {
					errs[i] = w.Add(&flow.Flow{Seq: j + 1, Host: sensor + ".example", Transport: flow.TransportHTTPS,
						Client:  flow.Endpoint{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i), byte(j % 4)})},
						Request: &flow.Request{Method: "GET", URL: "https://" + sensor + ".example/"}})
					if errs[i] == nil && j%500 == 499 {
						errs[i] = w.Flush()
					}
				}
				if err := w.Close(); errs[i] == nil {
					errs[i] = err
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		st := open(t, dsn, Options{ReadOnly: true})
		all, err := st.Sessions(ctx)
		if err != nil || len(all) != 2 {
			t.Fatalf("%d sessions, %v", len(all), err)
		}
		for _, s := range all {
			flows := readAll(t, st, s, true)
			if s.Flows != n || len(flows) != n || flows[0].Host != s.Sensor+".example" || len(s.Devices) != 4 {
				t.Errorf("session %+v: %d flows read", s, len(flows))
			}
			for j, f := range flows {
				if f.Host != s.Sensor+".example" || f.Request.URL != "https://"+s.Sensor+".example/" {
					t.Fatalf("session %s flow %d is %+v", s.Name, j, f)
				}
			}
		}
	})
}

// A database of a newer schema is refused, saying to upgrade.
func TestSuiteNewerSchemaRefused(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		st := open(t, dsn, Options{})
		st.Close()
		if IsURL(dsn) {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			_, err = conn.Exec(ctx, "UPDATE phonehome_schema SET version = 99")
			conn.Close(ctx)
			if err != nil {
				t.Fatal(err)
			}
		} else {
			db, err := sql.Open("sqlite", dsn)
			if err != nil {
				t.Fatal(err)
			}
			_, err = db.Exec("PRAGMA user_version = 99")
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, ro := range []bool{false, true} {
			_, err := Open(ctx, dsn, Options{ReadOnly: ro})
			if err == nil || !contains(err.Error(), "newer than this phonehome knows", "upgrade phonehome") {
				t.Errorf("read-only %v: %v", ro, err)
			}
		}
	})
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// Opening PostgreSQL says what is wrong and what to do: a server that does
// not answer (ErrUnavailable), a database that does not exist, a URL that
// does not parse, a database without phonehome's schema read read-only.
func TestPostgresOpenErrors(t *testing.T) {
	dsn := pgtest.URL(t)
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	missing := dsn[:strings.LastIndexByte(dsn[:strings.IndexByte(dsn, '?')], '/')] + "/no_such_db?sslmode=disable"
	for _, c := range []struct {
		name, dsn string
		ro        bool
		is        error
		says      []string
	}{
		{"no server", "postgres://ph@" + closed + "/x?sslmode=disable&connect_timeout=5", false, ErrUnavailable, []string{"database server unavailable", "start the PostgreSQL server at 127.0.0.1"}},
		{"no database", missing, false, nil, []string{"does not exist", "createdb"}},
		{"bad URL", "postgres://ph@127.0.0.1:99999999/x", false, nil, []string{"does not parse", "postgres://USER:PASSWORD@HOST:PORT/DATABASE"}},
		{"no schema, read-only", dsn, true, nil, []string{"holds no phonehome sessions"}},
		{"password hidden", "postgres://ph:secret@" + closed + "/x?sslmode=disable", false, ErrUnavailable, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := Open(ctx, c.dsn, Options{ReadOnly: c.ro})
			if err == nil {
				st.Close()
				t.Fatal("opened")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("%v: not %v", err, c.is)
			}
			if !contains(err.Error(), c.says...) || strings.Contains(err.Error(), "secret") {
				t.Errorf("message %q must say %q (and no password)", err, c.says)
			}
		})
	}
}

// Sessions and flows are chosen by sensor, device and time, across
// sessions; a copy between the engines, either way, is whole, idempotent,
// redone when an earlier one was cut short, and refused over a different
// session of the same name.
func TestSuiteSelectAndCopy(t *testing.T) {
	ctx := context.Background()
	sqlitePath := filepath.Join(t.TempDir(), "field.db")
	pg := pgtest.URL(t)
	for _, dir := range []struct{ name, src, dst string }{{"sqlite to postgres", sqlitePath, pg}, {"postgres to sqlite", pg, filepath.Join(t.TempDir(), "back.db")}} {
		t.Run(dir.name, func(t *testing.T) {
			src := open(t, dir.src, Options{Sensor: "field-laptop"})
			if dir.src == sqlitePath {
				t0 := time.Date(2026, 5, 3, 10, 0, 0, 0, time.UTC)
				for i, name := range []string{"april", "may"} {
					sess, err := src.NewSession(ctx, Session{Name: name, Started: t0.AddDate(0, i-1, 0), Source: "proxy", Sensor: "field-laptop"})
					if err != nil {
						t.Fatal(err)
					}
					flows := storetest.Sample()
					for _, f := range flows {
						f.Start = t0.AddDate(0, i-1, 0)
					}
					write(t, src, sess, flows)
					if _, err := src.AddMarker(ctx, Marker{Session: sess.ID, Time: t0.AddDate(0, i-1, 0), Label: "opened " + name}); err != nil {
						t.Fatal(err)
					}
				}
			}
			all, err := src.Select(ctx, nil, Filter{Device: "anna-phone", Since: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)})
			if err != nil || len(all) != 2 {
				t.Fatalf("select by device: %v %v", all, err)
			}
			var got []string
			if err := src.FlowsOf(ctx, all, Filter{Device: "anna-phone", Since: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}, ReadOptions{Lean: true}, func(f *flow.Flow) error {
				got = append(got, f.Host)
				return nil
			}); err != nil || !reflect.DeepEqual(got, []string{"api.ad.intl.xiaomi.com"}) {
				t.Errorf("flows of the device in May: %v %v", got, err)
			}
			if _, err := src.Select(ctx, nil, Filter{Sensor: "office-ap"}); !errors.Is(err, ErrNoSession) || !strings.Contains(err.Error(), "sensor office-ap") {
				t.Errorf("select by another sensor: %v", err)
			}
			dst := open(t, dir.dst, Options{Sensor: "other"})
			// an earlier copy cut short: the same session, part of its flows
			part, err := dst.NewSession(ctx, Session{Name: "may", Started: all[1].Started, Source: all[1].Source, Sensor: all[1].Sensor})
			if err != nil {
				t.Fatal(err)
			}
			write(t, dst, part, storetest.Sample()[:1])
			var did []Copied
			for range 2 {
				if err := Copy(ctx, src, dst, all, func(c Copied) { did = append(did, c) }); err != nil {
					t.Fatal(err)
				}
			}
			if len(did) != 4 || did[0].Already || did[1].Already || !did[2].Already || !did[3].Already || did[1].Flows != 3 {
				t.Errorf("copies: %+v", did)
			}
			for _, s := range all {
				d, err := dst.SessionByName(ctx, s.Name)
				if err != nil || d.Flows != s.Flows || d.Sensor != "field-laptop" || !d.Started.Equal(s.Started) || !reflect.DeepEqual(d.Devices, s.Devices) {
					t.Errorf("copy of %+v is %+v (%v)", s, d, err)
				}
				if ms, err := dst.Markers(ctx, d); err != nil || len(ms) != 1 || ms[0].Label != "opened "+s.Name {
					t.Errorf("markers of the copy of %s: %v %+v", s.Name, err, ms)
				}
				a, b := readAll(t, src, s, false), readAll(t, dst, d, false)
				for i := range a {
					a[i].ID, b[i].ID = 0, 0
				}
				if !reflect.DeepEqual(a, b) {
					t.Errorf("flows of %q differ after the copy", s.Name)
				}
			}
			other, err := dst.NewSession(ctx, Session{Name: "june", Started: time.Now(), Sensor: "other"})
			if err != nil {
				t.Fatal(err)
			}
			june, _ := src.NewSession(ctx, Session{Name: "june", Started: time.Now().Add(time.Hour), Sensor: "field-laptop"})
			if err := Copy(ctx, src, dst, []Session{june}, nil); !errors.Is(err, ErrSessionExists) || !strings.Contains(err.Error(), "rename one of them") {
				t.Errorf("copy over a different session: %v", err)
			}
			dst.DeleteSession(ctx, other)
			src.DeleteSession(ctx, june)
		})
	}
}

// Sensors starting together on a new database migrate it once: every open
// succeeds, and each sees the schema whole.
func TestPostgresConcurrentFirstOpen(t *testing.T) {
	dsn := pgtest.URL(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := Open(ctx, dsn, Options{Sensor: fmt.Sprint("sensor", i)})
			if err == nil {
				_, err = st.CreateSession(ctx, fmt.Sprint("s", i), time.Now(), "proxy")
				st.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("sensor %d: %v", i, err)
		}
	}
	st := open(t, dsn, Options{ReadOnly: true})
	if all, err := st.Sessions(ctx); err != nil || len(all) != 4 {
		t.Errorf("%d sessions, %v", len(all), err)
	}
}

// Markers are kept with their session, in time order, and go with it; one
// flow is read by its id; a read-only store refuses a marker.
func TestSuiteMarkersAndFlowByID(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		st := open(t, dsn, Options{})
		sess, err := st.CreateSession(ctx, "m", time.Unix(1700000000, 0), "test")
		if err != nil {
			t.Fatal(err)
		}
		in := storetest.Sample()
		write(t, st, sess, in)
		at := time.Unix(1700000100, 0).UTC()
		for i, label := range []string{"opened Contacts", "opened Camera"} {
			m, err := st.AddMarker(ctx, Marker{Session: sess.ID, Time: at.Add(time.Duration(-i) * time.Minute), Label: label, Note: "bad \x00 utf-8 \xff kept readable"})
			if err != nil || m.ID == 0 {
				t.Fatalf("add marker: %v %+v", err, m)
			}
		}
		ms, err := st.Markers(ctx, sess)
		if err != nil || len(ms) != 2 || ms[0].Label != "opened Camera" || !ms[1].Time.Equal(at) || ms[0].Session != sess.ID {
			t.Fatalf("markers: %v %+v", err, ms)
		}
		f, err := st.Flow(ctx, sess, in[1].ID)
		if err != nil || f.ID != in[1].ID || f.Host != in[1].Host {
			t.Errorf("flow by id %d: %v %+v", in[1].ID, err, f)
		}
		if _, err := st.Flow(ctx, sess, in[2].ID+1000); !errors.Is(err, ErrNoFlow) {
			t.Errorf("a missing id: %v", err)
		}
		if _, err := st.Flow(ctx, sess, 0); !errors.Is(err, ErrNoFlow) {
			t.Errorf("id 0: %v", err)
		}
		st.Close()
		ro := open(t, dsn, Options{ReadOnly: true})
		if _, err := ro.AddMarker(ctx, Marker{Session: sess.ID, Time: at, Label: "x"}); !errors.Is(err, ErrReadOnly) {
			t.Errorf("marker read-only: %v", err)
		}
		if ms, err := ro.Markers(ctx, sess); err != nil || len(ms) != 2 {
			t.Errorf("markers read-only: %v %d", err, len(ms))
		}
		ro.Close()
		rw := open(t, dsn, Options{})
		if err := rw.DeleteSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		if ms, err := rw.Markers(ctx, sess); err != nil || len(ms) != 0 {
			t.Errorf("markers after the session was deleted: %v %d", err, len(ms))
		}
	})
}
