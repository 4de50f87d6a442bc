package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"phonehome/internal/example/exampleflows"
	"phonehome/internal/flow"
	"phonehome/internal/live"
	"phonehome/internal/policy"
)

// benchFlows is the example phone's flows, detected as a capture would be,
// copied to n flows over 8 devices and a day, each URL made unique (as
// bench/genstore makes the report benchmark's session).
func benchFlows(tb testing.TB, n int) []*flow.Flow {
	base, err := exampleflows.Detected()
	if err != nil {
		tb.Fatal(err)
	}
	day := base[0].Start
	out := make([]*flow.Flow, n)
	for i := range out {
		f := *base[i%len(base)]
		f.ID = int64(i + 1)
		shift := time.Duration(i) * (24 * time.Hour / time.Duration(n))
		f.Start, f.End = day.Add(shift), day.Add(shift+f.End.Sub(f.Start))
		f.Client.Addr = netip.AddrFrom4([4]byte{192, 168, 1, byte(20 + i%8)})
		if f.Request != nil {
			r := *f.Request
			r.URL += fmt.Sprintf("#%d", i)
			f.Request = &r
		}
		out[i] = &f
	}
	return out
}

var (
	benchOnce sync.Once
	benchUI   *Server
	benchLast int64
	benchKind flow.Kind
	benchOf   []*flow.Flow
)

// bigSession is a live UI holding a session of 100,000 flows and ten markers.
func bigSession(b *testing.B) *Server {
	benchOnce.Do(func() {
		benchOf = benchFlows(b, 100_000)
		br := live.New(live.Options{})
		s, err := New(Options{Addr: "127.0.0.1:0", Live: br, LiveSession: Session{ID: 1, Name: "bench"}, Policy: NewPolicy(nil, policy.Options{}, func(policy.Policy) {})})
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range benchOf {
			s.live.add(f, true)
		}
		for i := range 10 {
			s.markers = append(s.markers, Marker{ID: int64(i + 1), Session: 1, Time: benchOf[i*10_000].Start, Label: fmt.Sprintf("marker %d", i)})
		}
		benchLast = benchOf[len(benchOf)-1].ID
		for _, f := range benchOf {
			if len(f.Findings) > 0 {
				benchKind = f.Findings[0].Kind
				break
			}
		}
		benchUI = s
	})
	if benchUI == nil {
		b.Fatal("no session")
	}
	return benchUI
}

// BenchmarkFirstPage serves the first page of every view of a 100,000-flow
// session, as a browser asks for it (the report's document once built; see
// BenchmarkReportOf100k for building it). The goal is under 300 ms each;
// /static/app.css is the reference: what any request costs.
func BenchmarkFirstPage(b *testing.B) {
	s := bigSession(b)
	s.live.report(time.Now()) // built when the session was first shown
	views := []string{"/static/app.css", "/", "/api/flows", "/api/flows?kind=" + string(benchKind), "/api/flows?device=192.168.1.27&party=nobody",
		"/parties", "/api/report", "/devices", "/ids", "/markers", "/api/markers", "/sessions", "/api/sessions",
		fmt.Sprintf("/flows/%d", benchLast), fmt.Sprintf("/api/flows/%d", benchLast), "/setup"}
	for _, v := range views {
		b.Run(v, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("GET", v, nil)
				req.Host = "127.0.0.1"
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", v, rec.Code, rec.Body.String())
				}
			}
		})
	}
}

// BenchmarkReportOf100k builds the report's document of 100,000 flows: what
// the Parties and Identifiers pages wait for the first time (and a live
// session at most once a second).
func BenchmarkReportOf100k(b *testing.B) {
	s := bigSession(b)
	for b.Loop() {
		s.live.mu.Lock()
		s.live.doc = nil
		s.live.mu.Unlock()
		s.live.report(time.Now())
	}
}

// BenchmarkIndexAdd is what the live index costs per flow (a row, the
// report's summary, the flow kept): the UI's share of each flow the proxy
// completes, on the UI's own goroutine.
func BenchmarkIndexAdd(b *testing.B) {
	fs := benchFlows(b, 20_000)
	x := newIndex()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f := *fs[i%len(fs)]
		f.ID = int64(i + 1)
		x.add(&f, true)
		i++
	}
}

// BenchmarkPublishWithStreams is the proxy's side of the live stream: what
// publishing one flow costs with no web subscriber and with the UI's index
// and four browser tabs subscribed (the tabs' streams are written by their
// own goroutines; the publisher only queues).
func BenchmarkPublishWithStreams(b *testing.B) {
	fs := benchFlows(b, 1000)
	for _, tabs := range []int{-1, 4} {
		name := "no UI"
		if tabs >= 0 {
			name = fmt.Sprintf("UI and %d tabs", tabs)
		}
		b.Run(name, func(b *testing.B) {
			br := live.New(live.Options{})
			defer br.Close()
			var wg sync.WaitGroup
			if tabs >= 0 {
				s, err := New(Options{Addr: "127.0.0.1:0", Live: br, LiveSession: Session{ID: 1}})
				if err != nil {
					b.Fatal(err)
				}
				go s.Run(b.Context())
				defer s.Close()
				for range tabs {
					sub := br.Subscribe("tab", sseBuffer, nil)
					wg.Add(1)
					go func() { // a tab: rows encoded as the SSE handler does
						defer wg.Done()
						var buf []byte
						for ev := range sub.C() {
							buf = appendLive(buf[:0], ev)
						}
					}()
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				br.Publish(live.Event{Kind: live.EventFlow, Flow: fs[i%len(fs)]})
				i++
			}
			b.StopTimer()
			br.Close()
			wg.Wait()
		})
	}
}
