package pipeline

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"phonehome/internal/decode"
	"phonehome/internal/detect"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/flow"
	"phonehome/internal/live"
	"phonehome/internal/report"
	"phonehome/internal/store"
)

func engine() *detect.Engine {
	return detect.New(trackers.Builtin(), pii.New(""), decode.Limits{})
}

func openStore(t testing.TB) (*store.Store, store.Session) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"), store.Options{MaxBody: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sess, err := st.CreateSession(context.Background(), "test", time.Now(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return st, sess
}

// tracker is a small request carrying an IMEI, as an ad SDK sends it.
func tracker(i int) *flow.Flow {
	body := fmt.Sprintf("imei=356938035643809&android_id=3b6f1e0a9c2d4f81&seq=%d", i)
	return &flow.Flow{Start: time.Now(), Host: "api.ad.intl.xiaomi.com", Transport: flow.TransportHTTP,
		Request: &flow.Request{Method: "POST", URL: "http://api.ad.intl.xiaomi.com/track", Proto: "HTTP/1.1",
			Headers: flow.Headers{{Name: "Content-Type", Value: "application/x-www-form-urlencoded"}},
			Body:    flow.Body{Data: []byte(body), Size: int64(len(body))}},
		Response: &flow.Response{Status: 200, Proto: "HTTP/1.1"}}
}

// download is a bulk answer: a MiB of video.
func download(i int) *flow.Flow {
	data := make([]byte, 1<<20)
	return &flow.Flow{Start: time.Now(), Host: "video.example", Transport: flow.TransportHTTPS,
		Request: &flow.Request{Method: "GET", URL: fmt.Sprintf("https://video.example/seg%d.mp4", i), Proto: "HTTP/1.1"},
		Response: &flow.Response{Status: 200, Proto: "HTTP/1.1", Headers: flow.Headers{{Name: "Content-Type", Value: "video/mp4"}},
			Body: flow.Body{Data: data, Size: int64(len(data))}}}
}

// TestSheddingUnderLoad: analysis is held up while bulk downloads and tracker
// requests arrive. Every flow is stored, every tracker request is analysed
// with its IMEI found, the bulk bodies are what is shed (and noted), and what
// waits stays near its bound in bytes.
func TestSheddingUnderLoad(t *testing.T) {
	st, sess := openStore(t)
	gate := make(chan struct{})
	var once sync.Once
	hold := func(*flow.Flow) error { <-gate; return nil } // a stalled disk, say
	const budget = 8 << 20
	broker := live.New(live.Options{})
	defer broker.Close()
	sub := broker.Subscribe("test", 16, nil) // never read: dropped, never waited for
	p := New(Options{Engine: engine(), Summary: report.NewSummary(), Store: st.Writer(context.Background(), sess),
		Sinks: []Sink{hold}, Live: broker, Queue: true, RetryStore: true, MaxQueueBytes: budget})
	done := make(chan error)
	go func() { done <- p.Run(context.Background()) }()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				p.Done(download(g*100 + i))
				p.Done(tracker(g*100 + i))
			}
		}()
	}
	wg.Wait()
	if peak := p.Stats().PeakQueueBytes; peak > budget+2<<20 {
		t.Errorf("the queue held %d bytes at its peak; bound %d", peak, budget)
	}
	once.Do(func() { close(gate) })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := p.Stats()
	if s.Flows != 320 || s.Processed != 320 || s.Stored != 320 || s.Lost != 0 {
		t.Fatalf("stats: %+v", s)
	}
	if s.Shed == 0 {
		t.Errorf("nothing was shed although analysis was held up: %+v", s)
	}
	var trackers, withIMEI, bulkShed int
	err := st.Flows(context.Background(), sess, func(f *flow.Flow) error {
		switch f.Host {
		case "api.ad.intl.xiaomi.com":
			trackers++
			if f.Notes.Has(flow.NoteShed) {
				t.Errorf("a tracker request was not fully analysed: %v", f.Notes)
			}
			for _, x := range f.Findings {
				if x.Kind == "imei" && x.Value == "356938035643809" {
					withIMEI++
					break
				}
			}
		case "video.example":
			if f.Notes.Has(flow.NoteShed) {
				bulkShed++
				if len(f.Response.Body.Data) != 0 || f.Response.Body.Size != 1<<20 || !f.Response.Body.Truncated {
					t.Errorf("a shed body keeps its size and says it was cut: %+v", f.Response.Body)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if trackers != 160 || withIMEI != 160 || bulkShed == 0 {
		t.Errorf("stored %d tracker flows, %d with the IMEI found; %d downloads shed", trackers, withIMEI, bulkShed)
	}
	<-sub.C() // the subscriber that never read was dropped, not waited for
	for range sub.C() {
	}
	if !errors.Is(sub.Err(), live.ErrTooSlow) {
		t.Errorf("a subscriber that never reads is dropped: %v", sub.Err())
	}
}

// failing is the store's writer with faults injected: Add fails while down
// is set, as a full disk or a locked database makes it fail.
type failing struct {
	Writer
	mu   sync.Mutex
	down bool
}

var errDown = errors.New("database or disk is full")

func (w *failing) set(down bool) { w.mu.Lock(); w.down = down; w.mu.Unlock() }

func (w *failing) Add(f *flow.Flow) error {
	w.mu.Lock()
	down := w.down
	w.mu.Unlock()
	if down {
		return errDown
	}
	return w.Writer.Add(f)
}

func (w *failing) Flush() error {
	w.mu.Lock()
	down := w.down
	w.mu.Unlock()
	if down {
		return errDown // the batch stays open: the pipeline must roll it back
	}
	return w.Writer.Flush()
}

// TestStoreFailsAndRecovers: the store fails while traffic goes on; the
// person is told what is wrong and what to do, flows wait, and once the
// store works again every flow is stored exactly once.
func TestStoreFailsAndRecovers(t *testing.T) {
	st, sess := openStore(t)
	w := &failing{Writer: st.Writer(context.Background(), sess)}
	broker := live.New(live.Options{})
	defer broker.Close()
	notices := broker.Subscribe("notices", 64, func(e live.Event) bool { return e.Kind == live.EventNotice })
	p := New(Options{Engine: engine(), Store: w, Live: broker, Queue: true, RetryStore: true, FlushEvery: 20 * time.Millisecond,
		StoreAdvice: func(err error) string {
			if errors.Is(err, errDown) {
				return "free some space"
			}
			return ""
		}})
	done := make(chan error)
	go func() { done <- p.Run(context.Background()) }()
	for i := 0; i < 50; i++ {
		p.Done(tracker(i))
	}
	time.Sleep(50 * time.Millisecond)
	w.set(true)
	// more than the store commits on its own (2,000 flows): the retry must
	// still store each once
	for i := 50; i < 2550; i++ {
		p.Done(tracker(i))
		if i%100 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	var text string
	select {
	case ev := <-notices.C():
		text = ev.Text
	case <-time.After(5 * time.Second):
		t.Fatal("no notice while the store fails")
	}
	if !strings.Contains(text, "database or disk is full") || !strings.Contains(text, "free some space") {
		t.Errorf("the notice must say what is wrong and what to do: %q", text)
	}
	if p.Stats().Waiting == 0 {
		t.Errorf("flows must wait while the store fails: %+v", p.Stats())
	}
	w.set(false)
	for i := 2550; i < 2600; i++ {
		p.Done(tracker(i))
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	seqs := map[int]int{}
	st.Flows(context.Background(), sess, func(f *flow.Flow) error { seqs[f.Seq]++; return nil })
	if len(seqs) != 2600 {
		t.Errorf("%d distinct flows stored, want 2600", len(seqs))
	}
	for seq, n := range seqs {
		if n != 1 {
			t.Errorf("flow %d stored %d times", seq, n)
		}
	}
	if s := p.Stats(); s.Stored != 2600 || s.Lost != 0 || s.StoreErrors == 0 {
		t.Errorf("stats: %+v", s)
	}
}

// TestStoreNeverRecovers: a store that stays down loses what it must, says
// so, and Close returns an error naming the cause; memory stays bounded.
func TestStoreNeverRecovers(t *testing.T) {
	st, sess := openStore(t)
	w := &failing{Writer: st.Writer(context.Background(), sess), down: true}
	p := New(Options{Store: w, Queue: true, RetryStore: true, MaxRetryBytes: 1 << 20})
	go p.Run(context.Background())
	for i := 0; i < 20; i++ {
		p.Done(download(i))
	}
	err := p.Close()
	if err == nil || !errors.Is(err, errDown) {
		t.Fatalf("Close must say the flows could not be stored and why: %v", err)
	}
	if s := p.Stats(); s.Lost != 20 {
		t.Errorf("stats: %+v", s)
	}
}

// TestDoneAfterClose: a source that hands a flow over after the pipeline
// closed is counted, not a crash.
func TestDoneAfterClose(t *testing.T) {
	p := New(Options{Queue: true})
	go p.Run(context.Background())
	p.Done(tracker(0))
	p.Close()
	p.Done(tracker(1))
	if s := p.Stats(); s.Late != 1 || s.Processed != 1 {
		t.Errorf("stats: %+v", s)
	}
	if err := p.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// badPolicy answers what cannot apply.
type badPolicy struct{ v flow.Verdict }

func (b badPolicy) Hello(flow.Hello) flow.Verdict                    { return b.v }
func (badPolicy) RequestBody(*flow.Flow) int                         { return -5 }
func (badPolicy) NeedsFindings() bool                                { return true }
func (b badPolicy) Request(*flow.Flow) (flow.Verdict, *flow.Request) { return b.v, nil }

// TestVerdictsChecked: an action that cannot apply at a stage, or a
// redaction with nothing to send, is Allow plus a typed note; a policy that
// reads findings gets them before it decides, and detection does not run
// again afterwards.
func TestVerdictsChecked(t *testing.T) {
	var seen []*flow.Flow
	p := New(Options{Engine: engine(), Sinks: []Sink{func(f *flow.Flow) error { seen = append(seen, f); return nil }}})
	ctx := context.Background()
	p.SetPolicy(badPolicy{flow.Verdict{Action: flow.ActionPassthrough}})
	f := tracker(0)
	if v, out := p.Request(ctx, f); v.Action != flow.ActionAllow || out != nil || !f.Notes.Has(flow.NotePolicy) {
		t.Errorf("passthrough at Request: %v %v %v", v, out, f.Notes)
	}
	if len(f.Findings) == 0 || !f.Inspected {
		t.Errorf("a policy that reads findings gets them before deciding")
	}
	n := len(f.Findings)
	p.Done(f)
	if len(seen) != 1 || len(seen[0].Findings) != n {
		t.Errorf("detection ran twice: %d findings, then %d", n, len(seen[0].Findings))
	}
	p.SetPolicy(badPolicy{flow.Verdict{Action: flow.ActionRedact}})
	f = tracker(1)
	if v, _ := p.Request(ctx, f); v.Action != flow.ActionAllow || !f.Notes.Has(flow.NotePolicy) {
		t.Errorf("redact with nothing to send: %v %v", v, f.Notes)
	}
	if v := p.Hello(ctx, flow.Hello{SNI: "x"}); v.Action != flow.ActionAllow {
		t.Errorf("redact at Hello: %v", v)
	}
	if n := p.RequestBody(f); n != 0 {
		t.Errorf("a negative body size: %d", n)
	}
	p.SetPolicy(badPolicy{flow.Verdict{Action: flow.ActionBlock, Rule: "ads"}})
	f = tracker(2)
	if v, _ := p.Request(ctx, f); v.Action != flow.ActionBlock || f.Verdict.Rule != "ads" || !f.Notes.Has(flow.NoteBlocked) {
		t.Errorf("block: %v %v", v, f.Notes)
	}
	if p.Stats().Blocked != 1 {
		t.Errorf("blocked count: %+v", p.Stats())
	}
}

// TestNoGoroutineLeft: Run returns after Close, leaving nothing behind.
func TestNoGoroutineLeft(t *testing.T) {
	base := runtime.NumGoroutine()
	for i := 0; i < 10; i++ {
		p := New(Options{Queue: true})
		done := make(chan struct{})
		go func() { p.Run(context.Background()); close(done) }()
		p.Done(tracker(i))
		p.Close()
		<-done
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("goroutines: %d, before %d", n, base)
	}
}

// BenchmarkQueued is the cost of a tracker request through the queued
// pipeline with detection and storage, as `phonehome run` does it.
func BenchmarkQueued(b *testing.B) {
	st, sess := openStore(b)
	p := New(Options{Engine: engine(), Summary: report.NewSummary(), Store: st.Writer(context.Background(), sess), Queue: true, RetryStore: true})
	done := make(chan error)
	go func() { done <- p.Run(context.Background()) }()
	flows := make([]*flow.Flow, b.N)
	for i := range flows {
		flows[i] = tracker(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, f := range flows {
		p.Done(f)
	}
	p.Close()
	<-done
	b.StopTimer()
	if s := p.Stats(); s.Stored != int64(b.N) {
		b.Fatalf("stored %d of %d", s.Stored, b.N)
	}
}
