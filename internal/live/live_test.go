package live

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"phonehome/internal/flow"
)

// epoch is the tests' clock: it never moves, so stamped times are checkable.
func epoch() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

// checkGoroutines fails the test if goroutines it started outlive it. The
// broker starts none, so any left over is a subscriber or publisher that never
// saw its channel close.
func checkGoroutines(t *testing.T) {
	t.Helper()
	baseline := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > baseline {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines: %d, baseline %d\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
		}
	})
}

// drain receives until C closes or nothing more is buffered.
func drain(s *Subscription) []Event {
	var got []Event
	for {
		select {
		case ev, ok := <-s.C():
			if !ok {
				return got
			}
			got = append(got, ev)
		default:
			return got
		}
	}
}

// waitClosed receives until C closes, and says how many events it held.
func waitClosed(s *Subscription, limit time.Duration) (int, bool) {
	timeout := time.After(limit)
	n := 0
	for {
		select {
		case _, ok := <-s.C():
			if !ok {
				return n, true
			}
			n++
		case <-timeout:
			return n, false
		}
	}
}

func closed(s *Subscription) bool {
	select {
	case _, ok := <-s.C():
		return !ok
	default:
		return false
	}
}

func TestFanOutInOrder(t *testing.T) {
	checkGoroutines(t)
	b := New(Options{Now: epoch})
	defer b.Close()
	subs := []*Subscription{b.Subscribe("a", 100, nil), b.Subscribe("b", 100, nil), b.Subscribe("c", 100, nil)}
	f := &flow.Flow{Host: "graph.example"}
	given := epoch().Add(-time.Hour)
	for i := range 50 {
		ev := Event{Kind: EventNotice, Text: strconv.Itoa(i)}
		if i == 0 {
			ev = Event{Kind: EventFlow, Flow: f, Time: given}
		}
		b.Publish(ev)
	}
	for _, s := range subs {
		got := drain(s)
		if len(got) != 50 {
			t.Fatalf("%s: got %d events, want 50", s.Name(), len(got))
		}
		if got[0].Flow != f || !got[0].Time.Equal(given) {
			t.Errorf("%s: the flow event must arrive as published, the same *flow.Flow and its own time: %+v", s.Name(), got[0])
		}
		for i, ev := range got[1:] {
			if ev.Text != strconv.Itoa(i+1) || !ev.Time.Equal(epoch()) {
				t.Fatalf("%s: event %d is %q at %v; want %d in order, stamped by the broker's clock", s.Name(), i+1, ev.Text, ev.Time, i+1)
			}
		}
		if s.Err() != nil {
			t.Errorf("%s: %v", s.Name(), s.Err())
		}
	}
	st := b.Stats()
	if st.Published != 50 || st.Delivered != 150 || st.Subscribers != 3 || st.Dropped != 0 || len(st.PerSubscriber) != 3 {
		t.Errorf("stats: %+v", st)
	}
	if ps := st.PerSubscriber[1]; ps.Name != "b" || ps.Buffer != 100 || ps.Delivered != 50 || ps.Queued != 0 {
		t.Errorf("per subscriber: %+v", ps)
	}
}

func TestFilter(t *testing.T) {
	checkGoroutines(t)
	b := New(Options{Now: epoch})
	defer b.Close()
	notices := b.Subscribe("notices", 10, func(ev Event) bool { return ev.Kind == EventNotice })
	all := b.Subscribe("all", 10, nil)
	for _, k := range []EventKind{EventFlow, EventNotice, EventStats, EventNotice, EventUnknown} {
		b.Publish(Event{Kind: k, Text: k.String()})
	}
	got := drain(notices)
	if len(got) != 2 || got[0].Kind != EventNotice || got[1].Kind != EventNotice {
		t.Errorf("the filter must pass only notices: %+v", got)
	}
	if n := len(drain(all)); n != 5 {
		t.Errorf("a nil filter takes everything, also an unknown kind: got %d", n)
	}
	if st := b.Stats(); st.Delivered != 7 || st.PerSubscriber[0].Delivered != 2 {
		t.Errorf("filtered events are not delivered and not missed: %+v", st)
	}
}

// TestSlowSubscriberDropped is the rule of the package: a subscriber that never
// reads is dropped once its buffer is full, the fast one receives everything,
// and the publisher finishes while the slow one is not even looking.
func TestSlowSubscriberDropped(t *testing.T) {
	checkGoroutines(t)
	const n = 100_000
	var logged bytes.Buffer
	b := New(Options{Now: epoch, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	slow := b.Subscribe("slow", 16, nil)
	fast := b.Subscribe("fast", n, nil)

	release := make(chan struct{})
	slowGot := make(chan []Event, 1)
	go func() {
		<-release // asleep until the publisher is done: it cannot be waiting for us
		var got []Event
		for ev := range slow.C() {
			got = append(got, ev)
		}
		slowGot <- got
	}()
	fastErr := make(chan error, 1)
	go func() {
		i := 0
		for ev := range fast.C() {
			if ev.Text != strconv.Itoa(i) {
				fastErr <- fmt.Errorf("event %d is %q", i, ev.Text)
				for range fast.C() {
				}
				return
			}
			i++
		}
		if i != n {
			fastErr <- fmt.Errorf("got %d events, want %d", i, n)
			return
		}
		fastErr <- fast.Err()
	}()

	published := make(chan struct{})
	go func() {
		for i := range n {
			b.Publish(Event{Kind: EventFlow, Text: strconv.Itoa(i)})
		}
		close(published)
	}()
	select {
	case <-published:
	case <-time.After(30 * time.Second):
		t.Fatal("Publish waited for the slow subscriber")
	}
	logLines := logged.String() // the publisher is the only writer, and it is done
	close(release)

	got := <-slowGot
	if len(got) != 16 || got[0].Text != "0" || got[15].Text != "15" {
		t.Errorf("the slow subscriber keeps what it had buffered, then C closes: %d events", len(got))
	}
	err := slow.Err()
	var tooSlow *TooSlowError
	if !errors.Is(err, ErrTooSlow) || !errors.As(err, &tooSlow) {
		t.Fatalf("Err of a dropped subscriber: %v", err)
	}
	if tooSlow.Name != "slow" || tooSlow.Buffer != 16 || tooSlow.Delivered != 16 || tooSlow.Missed != 1 || !tooSlow.At.Equal(epoch()) {
		t.Errorf("the drop's counts: %+v", tooSlow)
	}
	if msg := err.Error(); msg != strings.ToLower(msg[:1])+msg[1:] || !strings.Contains(msg, "1 missed") {
		t.Errorf("error text: %s", msg)
	}
	if strings.Count(logLines, "too slow") != 1 || !strings.Contains(logLines, "subscriber=slow") {
		t.Errorf("one warning per drop, naming the subscriber: %q", logLines)
	}

	st := b.Stats()
	if st.Published != n || st.Delivered != n+16 || st.Missed != 1 || st.Dropped != 1 || st.Subscribers != 1 || st.PerSubscriber[0].Name != "fast" {
		t.Errorf("stats: %+v", st)
	}
	b.Close()
	if err := <-fastErr; err != nil {
		t.Errorf("fast subscriber: %v", err)
	}
}

func TestDropIsFinal(t *testing.T) {
	checkGoroutines(t)
	b := New(Options{Now: epoch})
	defer b.Close()
	s := b.Subscribe("tui", 2, nil)
	for i := range 5 {
		b.Publish(Event{Kind: EventNotice, Text: strconv.Itoa(i)})
	}
	var tooSlow *TooSlowError
	if !errors.As(s.Err(), &tooSlow) || tooSlow.Delivered != 2 || tooSlow.Missed != 1 {
		t.Fatalf("events after the drop are not counted against it: %v", s.Err())
	}
	if got := drain(s); len(got) != 2 || !closed(s) {
		t.Errorf("buffered events survive the drop, then C is closed: %+v", got)
	}
	s.Close()
	if !errors.Is(s.Err(), ErrTooSlow) {
		t.Errorf("closing after a drop keeps the reason: %v", s.Err())
	}
	if st := b.Stats(); st.Dropped != 1 || st.Missed != 1 || st.Subscribers != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestSubscriptionClose(t *testing.T) {
	checkGoroutines(t)
	b := New(Options{Now: epoch})
	defer b.Close()
	keep := b.Subscribe("keep", 4, nil)
	gone := b.Subscribe("gone", 4, nil)
	b.Publish(Event{Kind: EventNotice})
	gone.Close()
	gone.Close()
	b.Publish(Event{Kind: EventNotice})
	if got := drain(gone); len(got) != 1 || !closed(gone) || gone.Err() != nil {
		t.Errorf("a closed subscription keeps what was buffered, then C closes with a nil Err: %d %v", len(got), gone.Err())
	}
	if got := drain(keep); len(got) != 2 {
		t.Errorf("the other subscriber is untouched: %d", len(got))
	}
	if st := b.Stats(); st.Subscribers != 1 || st.Dropped != 0 || st.Missed != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestDefaultBuffer(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	if s := b.Subscribe("web", 0, nil); cap(s.C()) != DefaultBuffer {
		t.Errorf("buffer 0 gives %d, want DefaultBuffer", cap(s.C()))
	}
	b.Publish(Event{Kind: EventStats})
	if st := b.Stats(); st.PerSubscriber[0].Queued != 1 {
		t.Errorf("queued: %+v", st)
	}
}

func TestSubscribeAfterClose(t *testing.T) {
	checkGoroutines(t)
	b := New(Options{Now: epoch})
	before := b.Subscribe("before", 4, nil)
	b.Close()
	b.Close()
	if !closed(before) || before.Err() != nil {
		t.Errorf("Close closes every subscription with a nil Err: %v", before.Err())
	}
	late := b.Subscribe("late", 4, nil)
	if !closed(late) || late.Err() != nil || late.Name() != "late" {
		t.Errorf("Subscribe after Close returns a closed subscription: %v", late.Err())
	}
	late.Close()
	before.Close()
	b.Publish(Event{Kind: EventNotice})
	if st := b.Stats(); st.Published != 0 || st.Subscribers != 0 {
		t.Errorf("Publish after Close does nothing: %+v", st)
	}
}

// TestCloseDuringPublish closes subscriptions and then the broker while several
// publishers run and subscribers come and go. Under -race it is the test that a
// channel is never closed under a send.
func TestCloseDuringPublish(t *testing.T) {
	checkGoroutines(t)
	b := New(Options{Now: epoch})

	var readers sync.WaitGroup
	for i := range 8 {
		s := b.Subscribe("reader"+strconv.Itoa(i), 64, nil)
		readers.Go(func() {
			for range s.C() {
			}
			if err := s.Err(); err != nil && !errors.Is(err, ErrTooSlow) {
				t.Errorf("%s: %v", s.Name(), err)
			}
		})
	}
	stop := make(chan struct{})
	var publishers sync.WaitGroup
	for range 4 {
		publishers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				b.Publish(Event{Kind: EventNotice})
			}
		})
	}
	var churn sync.WaitGroup
	for range 2 {
		churn.Go(func() {
			for range 200 {
				s := b.Subscribe("churn", 2, nil)
				var both sync.WaitGroup
				both.Go(s.Close) // two closers at once, with publishers sending
				s.Close()
				both.Wait()
				// A Publish still sending to s closes C on its way out, so C
				// may close a moment after Close returns, never later.
				got, ok := waitClosed(s, 10*time.Second)
				if !ok || got > 2 {
					t.Errorf("a closed subscription's channel closes: closed %v, %d buffered", ok, got)
					return
				}
			}
		})
	}
	churn.Wait()
	b.Close()
	done := make(chan struct{})
	go func() { readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close left a subscriber's channel open")
	}
	close(stop)
	publishers.Wait()

	after := b.Stats()
	b.Publish(Event{Kind: EventNotice})
	if st := b.Stats(); st.Published != after.Published || st.Subscribers != 0 {
		t.Errorf("Publish after Close counted: %+v then %+v", after, st)
	}
	if after.Published == 0 {
		t.Error("the publishers never ran")
	}
}

func TestEventKind(t *testing.T) {
	for _, k := range []EventKind{EventUnknown, EventFlow, EventNotice, EventStats} {
		if ParseEventKind(k.String()) != k {
			t.Errorf("%d: %q does not parse back", k, k)
		}
	}
	if EventKind(200).String() != "unknown" || ParseEventKind("verdict") != EventUnknown {
		t.Error("unknown kinds")
	}
	var zero Event
	if zero.Kind != EventUnknown {
		t.Error("the zero Event's kind is EventUnknown")
	}
}

func BenchmarkPublish(b *testing.B) {
	ev := Event{Kind: EventFlow, Time: epoch(), Flow: &flow.Flow{Host: "graph.example"}}
	for _, n := range []int{0, 1, 8} {
		b.Run("subscribers="+strconv.Itoa(n), func(b *testing.B) {
			benchPublish(b, ev, n, nil)
		})
	}
	// Subscribers that filter the event out cost their filter call only.
	b.Run("subscribers=8/filtered", func(b *testing.B) {
		benchPublish(b, ev, 8, func(ev Event) bool { return ev.Kind == EventNotice })
	})
}

// benchPublish measures Publish alone: the buffers are emptied with the timer
// stopped, so the receivers' work is not counted and nobody is dropped.
func benchPublish(b *testing.B, ev Event, n int, filter func(Event) bool) {
	const batch = 4096
	br := New(Options{Now: epoch})
	defer br.Close()
	subs := make([]*Subscription, n)
	for i := range subs {
		subs[i] = br.Subscribe("bench", batch, filter)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		br.Publish(ev)
		if n > 0 && i%batch == batch-1 { // stopping the timer costs a stop of the world
			b.StopTimer()
			for _, s := range subs {
				drain(s)
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	if st := br.Stats(); st.Dropped != 0 {
		b.Fatalf("a subscriber was dropped: %+v", st)
	}
}

// BenchmarkPublishParallel is several publishers at once into eight
// subscribers that filter everything out, so that the shared counters and the
// subscriber list are what is measured.
func BenchmarkPublishParallel(b *testing.B) {
	br := New(Options{Now: epoch})
	defer br.Close()
	for range 8 {
		br.Subscribe("bench", 1, func(Event) bool { return false })
	}
	ev := Event{Kind: EventFlow, Time: epoch()}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			br.Publish(ev)
		}
	})
}
