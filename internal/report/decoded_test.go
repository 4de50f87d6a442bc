package report

import (
	"bytes"
	"strings"
	"testing"

	"phonehome/internal/capture"
	"phonehome/internal/decode"
	"phonehome/internal/detect"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/example"
	"phonehome/internal/flow"
)

func newEngine() *detect.Engine {
	return detect.New(trackers.Builtin(), pii.New(""), decode.Limits{})
}

// readFiles reads captures into fresh flows, one at a time.
func readFiles(t testing.TB, files []example.File, each func(*flow.Flow)) {
	t.Helper()
	for _, ex := range files {
		if _, err := capture.Read(bytes.NewReader(ex.Data), ex.Name, capture.Options{}, each); err != nil {
			t.Fatal(err)
		}
	}
}

// rendered is every format of a summary's report.
func rendered(t *testing.T, s *Summary) map[string]string {
	t.Helper()
	out := map[string]string{}
	var b strings.Builder
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out["text"] = b.String()
	doc := s.Doc()
	for name, write := range map[string]func(*strings.Builder, *Doc) error{
		"markdown": func(b *strings.Builder, d *Doc) error { return WriteMarkdown(b, d) },
		"html":     func(b *strings.Builder, d *Doc) error { return WriteHTML(b, d) },
		"json":     func(b *strings.Builder, d *Doc) error { return WriteJSON(b, d) },
	} {
		var b strings.Builder
		if err := write(&b, doc); err != nil {
			t.Fatal(err)
		}
		out[name] = b.String()
	}
	return out
}

// TestAddDecodedMatchesAdd: the summary fed the tree detection decoded says
// exactly what the summary that decodes every request again says, on the
// example session and the day after, and decodes nothing itself.
func TestAddDecodedMatchesAdd(t *testing.T) {
	engine := newEngine()
	for name, files := range map[string][]example.File{"example": example.Files(), "after": example.After()} {
		t.Run(name, func(t *testing.T) {
			again, once := NewSummary(), NewSummary()
			requests := 0
			readFiles(t, files, func(f *flow.Flow) {
				engine.Inspect(f)
				again.Add(f)
				if f.Request != nil {
					requests++
				}
			})
			calls := 0
			readFiles(t, files, func(f *flow.Flow) {
				engine.InspectWith(f, func(f *flow.Flow, vals []decode.Value) {
					calls++
					once.AddDecoded(f, vals)
				})
			})
			if requests == 0 || calls != again.Flows() || once.Flows() != again.Flows() {
				t.Fatalf("%d requests; %d flows added, %d handed over, %d added decoded", requests, again.Flows(), calls, once.Flows())
			}
			if again.decodes != requests || once.decodes != 0 {
				t.Errorf("the summary decoded %d of %d requests with Add (want all) and %d with AddDecoded (want none)",
					again.decodes, requests, once.decodes)
			}
			t.Logf("%d flows, %d requests", again.Flows(), requests)
			want, got := rendered(t, again), rendered(t, once)
			for format := range want {
				if got[format] != want[format] {
					t.Errorf("%s report differs:\n--- Add\n%s\n--- AddDecoded\n%s", format, want[format], got[format])
				}
			}
		})
	}
}

// telemetryBatch is the example's gzip-compressed batch of events to
// data.mistat.intl.xiaomi.com, as captured.
func telemetryBatch(b *testing.B) *flow.Flow {
	var batch *flow.Flow
	readFiles(b, example.Files(), func(f *flow.Flow) {
		if f.Request != nil && strings.Contains(f.Request.URL, "mistats") {
			batch = f
		}
	})
	if batch == nil {
		b.Fatal("no telemetry batch in the example")
	}
	return batch
}

// BenchmarkInspectSummary is detection and the summary on the example's
// telemetry batch, as the pipeline runs them per flow: "Add" decodes the body
// a second time in the summary, "AddDecoded" reads detection's tree. "decode"
// and "inspect" are the parts, for scale. A new summary every 500 flows keeps
// every request learned (a busy endpoint is sampled past 1000).
func BenchmarkInspectSummary(b *testing.B) {
	batch := telemetryBatch(b)
	req := batch.Request
	flowOf := func() *flow.Flow {
		return &flow.Flow{Start: batch.Start, End: batch.End, Client: batch.Client, Server: batch.Server, Host: batch.Host,
			Transport: batch.Transport, Request: req, Response: batch.Response, BytesUp: batch.BytesUp, BytesDown: batch.BytesDown}
	}
	size := int64(len(req.Body.Data) + len(req.URL))
	b.Run("decode", func(b *testing.B) {
		var d decode.Decoder
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			d.Decode(decode.FromFlow(req), decode.Limits{})
		}
	})
	b.Run("inspect", func(b *testing.B) {
		e := newEngine()
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			e.Inspect(flowOf())
		}
	})
	b.Run("inspect+Add", func(b *testing.B) {
		e := newEngine()
		s := NewSummary()
		b.SetBytes(size)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i%500 == 0 {
				s = NewSummary()
			}
			f := flowOf()
			e.Inspect(f)
			s.Add(f)
		}
	})
	b.Run("inspect+AddDecoded", func(b *testing.B) {
		e := newEngine()
		s := NewSummary()
		b.SetBytes(size)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i%500 == 0 {
				s = NewSummary()
			}
			e.InspectWith(flowOf(), s.AddDecoded)
		}
	})
}
