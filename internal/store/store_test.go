package store

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"phonehome/internal/flow"
)

func sample() []*flow.Flow {
	t0 := time.Date(2026, 11, 18, 7, 44, 2, 123456789, time.UTC)
	return []*flow.Flow{
		{
			Source: "a.pcap", Seq: 1, Start: t0, End: t0.Add(40 * time.Millisecond),
			Client:    flow.Endpoint{Addr: netip.MustParseAddr("192.168.1.23"), Port: 40100},
			Server:    flow.Endpoint{Addr: netip.MustParseAddr("161.117.97.142"), Port: 80},
			Host:      "api.ad.intl.xiaomi.com",
			Transport: flow.TransportHTTP,
			Request: &flow.Request{Method: "POST", URL: "http://api.ad.intl.xiaomi.com/x?imei=1", Proto: "HTTP/1.1",
				Headers: flow.Headers{{Name: "Host", Value: "api.ad.intl.xiaomi.com"}, {Name: "X-A", Value: "1"}, {Name: "X-A", Value: "2"}},
				Body:    flow.Body{Data: []byte("0123456789"), Size: 10}},
			Response: &flow.Response{Status: 200, Reason: "OK", Proto: "HTTP/1.1", Headers: flow.Headers{{Name: "Content-Type", Value: "application/json"}},
				Body: flow.Body{Data: []byte("{}"), Size: 5000, Incomplete: true}, Trailers: flow.Headers{{Name: "X-Sum", Value: "1"}}},
			BytesUp: 200, BytesDown: 5100, Notes: []string{"bytes missing"},
			Dest: flow.Destination{Owner: "Xiaomi", Category: "advertising", Site: "xiaomi.com", Party: "first"}, App: "com.miui.home",
			Findings: []flow.Finding{{Kind: "imei", Value: "356938035643809", Path: "query:imei", Method: "key", Confidence: 0.95},
				{Kind: "device_model", Value: "Redmi 4A", Path: "header:User-Agent", Method: "pattern", Confidence: 0.9, Context: true}},
		},
		{
			Source: "a.pcap", Seq: 2, Start: t0, End: t0,
			Client:    flow.Endpoint{Addr: netip.MustParseAddr("fd00::23"), Port: 5000},
			Server:    flow.Endpoint{Addr: netip.MustParseAddr("fd00::1"), Port: 53},
			Transport: flow.TransportDNS,
			DNS:       &flow.DNS{ID: 7, Name: "tracking.intl.miui.com", Type: "A", RCode: "SUCCESS", Answers: []string{"161.117.96.161"}, Answered: true},
		},
		{
			Source: "b.har", Seq: 1, Host: "tracking.intl.miui.com", Transport: flow.TransportTLS,
			TLS: &flow.TLSInfo{SNI: "tracking.intl.miui.com", ALPN: []string{"h2", "http/1.1"}, Version: "TLS 1.3"},
		},
	}
}

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
	in := sample()
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
	for i := range in {
		in[i].ID = out[i].ID
		if !in[i].Start.IsZero() {
			in[i].Start, in[i].End = in[i].Start.Local(), in[i].End.Local()
		}
		if in[i].Response != nil && in[i].Response.Body.Data == nil {
			in[i].Response.Body.Data = []byte{}
		}
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
	st, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	sess, _ := st.CreateSession(ctx, "bench", time.Now(), "")
	w := st.Writer(ctx, sess)
	f := sample()[0]
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
