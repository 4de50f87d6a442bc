package har

import (
	"errors"
	"mime/multipart"
	"os"
	"strings"
	"testing"
	"time"

	"phonehome/internal/flow"
)

func read(t *testing.T, name string) ([]*flow.Flow, error) {
	t.Helper()
	fh, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var flows []*flow.Flow
	err = Read(fh, name, Options{}, func(f *flow.Flow) { flows = append(flows, f) })
	return flows, err
}

func TestProducers(t *testing.T) {
	cases := []struct {
		file  string
		check func(t *testing.T, fs []*flow.Flow)
	}{
		{"chrome.har", func(t *testing.T, fs []*flow.Flow) {
			ga := fs[0]
			if ga.Transport != flow.TransportHTTPS || ga.Host != "www.google-analytics.com" || ga.Server.Port != 443 {
				t.Errorf("GA flow: %+v", ga)
			}
			if ga.Server.Addr.String() != "2a00:1450:4001:82b::200e" {
				t.Errorf("bracketed server address: %v", ga.Server.Addr)
			}
			if ga.Request.Proto != "HTTP/2.0" || ga.Request.Headers.Get(":authority") != "" || ga.Request.Headers.Get("user-agent") == "" {
				t.Errorf("proto %q headers %v", ga.Request.Proto, ga.Request.Headers)
			}
			if string(ga.Request.Body.Data) != "en=scroll&epn.percent_scrolled=90" || ga.Response.Status != 204 || ga.BytesDown != 83 {
				t.Errorf("body %q status %d down %d", ga.Request.Body.Data, ga.Response.Status, ga.BytesDown)
			}
			if ga.End.Sub(ga.Start).Milliseconds() != 48 {
				t.Errorf("duration %v", ga.End.Sub(ga.Start))
			}
			gif := fs[1]
			if len(gif.Response.Body.Data) != 43 || string(gif.Response.Body.Data[:6]) != "GIF89a" {
				t.Errorf("base64 content not decoded: %q", gif.Response.Body.Data)
			}
			if gif.Request.Proto != "HTTP/3.0" || gif.Start.UTC().Hour() != 7 {
				t.Errorf("proto %q, time zone offsets must be honoured: %v", gif.Request.Proto, gif.Start)
			}
		}},
		{"firefox.har", func(t *testing.T, fs []*flow.Flow) {
			f := fs[0]
			if f.Transport != flow.TransportHTTP || f.Server.Port != 80 || !strings.Contains(string(f.Request.Body.Data), `"gaid"`) {
				t.Errorf("flow %+v", f)
			}
			if f.BytesUp != 203+92 || f.BytesDown != 120+11 {
				t.Errorf("sizes %d %d", f.BytesUp, f.BytesDown)
			}
		}},
		{"charles-nulls.har", func(t *testing.T, fs []*flow.Flow) {
			if len(fs) != 2 || fs[0].Response == nil || fs[0].Response.Status != 200 || fs[0].Request.Headers == nil {
				t.Errorf("null fields must read as empty: %+v", fs[0])
			}
			if fs[1].Response != nil || fs[1].Request.Method != "CONNECT" {
				t.Errorf("status 0 means no response: %+v", fs[1].Response)
			}
		}},
		{"fiddler-params.har", func(t *testing.T, fs []*flow.Flow) {
			if got := string(fs[0].Request.Body.Data); got != "sender=com.miui.systemAdSolution&ts=1731916380000" {
				t.Errorf("form rebuilt from params: %q", got)
			}
			if b := fs[1].Request.Body.Data; len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
				t.Errorf("base64 postData must be decoded to gzip bytes: % x", b)
			}
			r := multipart.NewReader(strings.NewReader(string(fs[2].Request.Body.Data)), "----XyZ")
			p, err := r.NextPart()
			if err != nil || p.FormName() != "imei" {
				t.Fatalf("multipart rebuilt from params: %v", err)
			}
			p, err = r.NextPart()
			if err != nil || p.FileName() != "crash.txt" {
				t.Errorf("file part: %v", err)
			}
			if fs[0].Start.Nanosecond() != 123456700 {
				t.Errorf("seven fractional digits: %v", fs[0].Start)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			fs, err := read(t, c.file)
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range fs {
				if f.Seq != i+1 || f.Source != c.file {
					t.Errorf("seq/source %d %q", f.Seq, f.Source)
				}
			}
			c.check(t, fs)
		})
	}
}

func TestBrokenEntry(t *testing.T) {
	fs, err := read(t, "broken-entry.har")
	var he *Error
	if !errors.As(err, &he) || he.Entry != 3 || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("want an error at entry 3 saying truncated, got %v", err)
	}
	if len(fs) != 2 {
		t.Errorf("the two entries before the damage must be emitted, got %d", len(fs))
	}
}

func TestNotHAR(t *testing.T) {
	for _, in := range []string{`{"foo": 1}`, `[1,2]`, `{"log": {"entries": {"a":1}}}`, `{"log":{"entries":[{"request":{"url":"/relative"}}]}}`} {
		err := Read(strings.NewReader(in), "x.har", Options{}, func(*flow.Flow) {})
		if err == nil {
			t.Errorf("%s: want an error", in)
		}
	}
}

func TestMaxBody(t *testing.T) {
	in := `{"log":{"entries":[{"request":{"method":"POST","url":"http://a.example/","postData":{"text":"0123456789"}},"response":{"status":200}}]}}`
	var got *flow.Flow
	if err := Read(strings.NewReader(in), "x.har", Options{MaxBody: 4}, func(f *flow.Flow) { got = f }); err != nil {
		t.Fatal(err)
	}
	if b := got.Request.Body; string(b.Data) != "0123" || !b.Truncated || b.Size != 10 {
		t.Errorf("body %+v", b)
	}
}

func FuzzHAR(f *testing.F) {
	for _, name := range []string{"chrome.har", "firefox.har", "charles-nulls.har", "fiddler-params.har", "broken-entry.har"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"log":null}`))
	f.Add([]byte(`{"log":{"entries":[{"startedDateTime":1,"time":"x","request":{"url":"http://[::1]:99999/"}}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Read(strings.NewReader(string(data)), "fuzz.har", Options{MaxBody: 64}, func(fl *flow.Flow) {
			if fl.Request == nil {
				t.Fatal("flow without request")
			}
		})
	})
}

func BenchmarkRead(b *testing.B) {
	data, err := os.ReadFile("../../example/data/xiaomi-proxy.har")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := Read(strings.NewReader(string(data)), "bench.har", Options{}, func(*flow.Flow) { n++ }); err != nil || n != 6 {
			b.Fatal(err, n)
		}
	}
}

// TestWriteRoundTrip writes flows as HAR and reads them back.
func TestWriteRoundTrip(t *testing.T) {
	in, err := read(t, "fiddler-params.har")
	if err != nil {
		t.Fatal(err)
	}
	chrome, err := read(t, "chrome.har")
	if err != nil {
		t.Fatal(err)
	}
	in = append(in, chrome...)
	var buf strings.Builder
	if err := Write(&buf, "phonehome test", in); err != nil {
		t.Fatal(err)
	}
	var out []*flow.Flow
	if err := Read(strings.NewReader(buf.String()), "round.har", Options{}, func(f *flow.Flow) { out = append(out, f) }); err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d flows back, want %d", len(out), len(in))
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.Request.URL != b.Request.URL || a.Request.Method != b.Request.Method || string(a.Request.Body.Data) != string(b.Request.Body.Data) ||
			a.Response.Status != b.Response.Status || string(a.Response.Body.Data) != string(b.Response.Body.Data) ||
			!a.Start.Truncate(time.Millisecond).Equal(b.Start) || a.Server.Addr != b.Server.Addr || len(a.Request.Headers) != len(b.Request.Headers) {
			t.Errorf("entry %d changed:\n%+v\n%+v", i, a.Request, b.Request)
		}
	}
}
