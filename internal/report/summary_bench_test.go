package report

import (
	"testing"
	"time"

	"phonehome/internal/flow"
)

// BenchmarkSummaryCount is the summary's per-flow counting alone (no schema
// learning): who, what kinds, when, and the notes. Every fourth flow carries
// notes and every other one goes over plain HTTP, so the cost of collecting
// notes and the kinds over time shows against flows that have none.
func BenchmarkSummaryCount(b *testing.B) {
	at := time.Date(2026, 11, 18, 7, 0, 0, 0, time.UTC)
	flows := make([]*flow.Flow, 64)
	for i := range flows {
		f := &flow.Flow{Start: at.Add(time.Duration(i) * time.Second), Host: "t.tracker.example", Transport: flow.TransportHTTPS,
			Dest:    flow.Destination{Owner: "Tracker Inc", Category: "analytics", Party: "third"},
			Request: &flow.Request{Method: "POST", URL: "https://t.tracker.example/v1/batch"},
			Findings: []flow.Finding{{Kind: "install_id", Value: "6f3c2b9e-0d4a-4c8e-b1f7-2a9d5e8c7b13", Path: "body › json:install_id"},
				{Kind: "visited_url", Value: "https://news.example/a", Path: "body › json:events[0].url"},
				{Kind: "visited_url", Value: "https://news.example/b", Path: "body › json:events[1].url"},
				{Kind: "device_model", Value: "Pixel 7", Path: "header:User-Agent", Context: true}}}
		if i%2 == 1 {
			f.Transport = flow.TransportHTTP
		}
		if i%4 == 0 {
			f.Notes = flow.Notes{{Code: flow.NoteDecodeLimit, Text: "decode: nested deeper than 32 levels"},
				{Code: flow.NoteShed, Text: "response body not kept or analysed: analysis was behind"}}
		}
		flows[i] = f
	}
	b.ReportAllocs()
	s := NewSummary()
	s.NoSchema = true
	for i := 0; b.Loop(); i++ {
		if i%100_000 == 0 {
			s = NewSummary()
			s.NoSchema = true
		}
		s.Add(flows[i%len(flows)])
	}
}
