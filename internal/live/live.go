// Package live provides the broker between the pipeline and whoever watches
// it as it runs: the terminal's live lines now, a web UI's Server-Sent-Events
// stream later. Every subscriber gets a bounded buffer of its own. One that
// falls behind is dropped and counted, never waited for: the publisher is the
// pipeline's analysis goroutine, and a stalled browser tab must not stall
// capture.
package live

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"phonehome/internal/flow"
)

// EventKind says what an Event reports, so that subscribers filter on the kind
// and never on the wording of the text.
type EventKind uint8

const (
	// EventUnknown is the zero value: an event nobody classified. It is still
	// delivered, so that a forgotten Kind loses nothing.
	EventUnknown EventKind = iota
	// EventFlow: a flow was analysed and stored; Event.Flow holds it.
	EventFlow
	// EventNotice: something the user must know now: the store is failing,
	// analysis is shedding work, a host was passed through.
	EventNotice
	// EventStats: the pipeline's periodic counters, as a line of text.
	EventStats
)

func (k EventKind) String() string {
	switch k {
	case EventFlow:
		return "flow"
	case EventNotice:
		return "notice"
	case EventStats:
		return "stats"
	}
	return "unknown"
}

// ParseEventKind is the inverse of String (an SSE client names the kinds it
// wants); unknown names give EventUnknown.
func ParseEventKind(s string) EventKind {
	for k := EventFlow; k <= EventStats; k++ {
		if k.String() == s {
			return k
		}
	}
	return EventUnknown
}

// Event is one thing the pipeline tells its watchers. It travels by value, so a
// subscriber may keep it as long as it likes.
//
// Flow is shared, not copied: the pipeline hands the same *flow.Flow to every
// subscriber once the store has written it, and nobody mutates it afterwards.
// Subscribers must treat it as read-only; one that wants to change it (to mask
// values for display, say) works on its own copy.
type Event struct {
	Kind EventKind
	// Time is when it happened; Publish stamps the broker's clock when it is zero.
	Time time.Time
	// Flow is set for EventFlow and nil otherwise.
	Flow *flow.Flow
	// Text is a line for a person: the notice, or the counters.
	Text string
}

// DefaultBuffer is the buffer a subscriber gets when it asks for none: a few
// seconds of a busy phone's flows, so a terminal redrawing or a browser
// catching its breath is not dropped.
const DefaultBuffer = 256

// Error is the type of the package's sentinel errors. They are constants, so
// errors.Is works without any package state.
type Error string

func (e Error) Error() string { return string(e) }

// ErrTooSlow is what a dropped subscriber's Err wraps (as a *TooSlowError,
// which carries the counts).
const ErrTooSlow Error = "live: subscriber too slow"

// TooSlowError says that a subscriber was dropped because its buffer was full
// when an event for it was published.
type TooSlowError struct {
	Name   string
	Buffer int
	// Delivered is how many events reached its buffer before the drop.
	Delivered uint64
	// Missed is how many events found its buffer full: the one that caused the
	// drop and any published concurrently before the drop took effect. What was
	// published after that is not counted here (Stats.Published is).
	Missed uint64
	// At is when it was dropped, by the broker's clock.
	At time.Time
}

func (e *TooSlowError) Error() string {
	return fmt.Sprintf("live: subscriber %q dropped for being too slow: its buffer of %d events was full, %d delivered, %d missed; subscribe again to resume",
		e.Name, e.Buffer, e.Delivered, e.Missed)
}

func (e *TooSlowError) Unwrap() error { return ErrTooSlow }

// Options configure a Broker.
type Options struct {
	// Now stamps events published without a time and records when a
	// subscriber was dropped. Nil means time.Now.
	Now func() time.Time
	// Logger gets one warning per dropped subscriber. Nil discards.
	Logger *slog.Logger
}

// Broker fans events out from the pipeline to bounded subscribers.
//
// Contract: Publish may be called from any number of goroutines and never waits
// for a subscriber; Subscribe, Subscription.Close, Stats and Close may be
// called from any goroutine at any time, also concurrently with Publish. The
// broker starts no goroutines, so it has no Run: New, use, Close. Use New; the
// zero Broker is not ready.
type Broker struct {
	now func() time.Time
	log *slog.Logger

	// subs is copy-on-write: a published slice is never changed, so Publish
	// walks it without a lock. Writers replace it under mu.
	subs   atomic.Pointer[[]*Subscription]
	mu     sync.Mutex // serialises writers of subs and closed; held only to copy a slice
	closed atomic.Bool

	published atomic.Uint64
	delivered atomic.Uint64
	missed    atomic.Uint64
	dropped   atomic.Uint64
}

// New returns a broker with no subscribers.
func New(opts Options) *Broker {
	b := &Broker{now: opts.Now, log: opts.Logger}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b
}

// Publish delivers ev to every subscriber whose filter takes it and whose
// buffer has room. A subscriber whose buffer is full is dropped on the spot:
// its channel closes (after what it had buffered) and its Err says why. Publish
// never blocks on a subscriber and allocates nothing; after Close it does
// nothing.
//
// Each subscriber sees one publisher's events in the order they were
// published; events of concurrent publishers interleave, not necessarily in the
// same order for every subscriber.
func (b *Broker) Publish(ev Event) {
	if b.closed.Load() {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = b.now()
	}
	b.published.Add(1)
	subs := b.subs.Load()
	if subs == nil {
		return
	}
	var n uint64
	stale := false
	for _, s := range *subs {
		if s.filter != nil && !s.filter(ev) {
			continue
		}
		switch s.offer(ev) {
		case offerSent:
			n++
		case offerGone:
			stale = true
		case offerDropped:
			b.missed.Add(1)
			b.dropped.Add(1)
			// At most once per subscriber, so a slow sink behind the logger costs
			// the publisher one line per drop, not one per event.
			b.log.Warn("live: subscriber dropped for being too slow", "subscriber", s.name, "buffer", cap(s.ch), "delivered", s.delivered.Load())
			stale = true
		case offerMissed:
			b.missed.Add(1)
			stale = true
		}
	}
	if n > 0 {
		b.delivered.Add(n)
	}
	if stale {
		b.prune()
	}
}

// Subscribe adds a subscriber with a buffer of buffer events (DefaultBuffer
// when buffer < 1). filter chooses the events it gets; nil means all. filter
// runs on the publisher's goroutine for every event, so it must be quick, must
// not block and must not call the broker.
//
// After Close, Subscribe returns a subscription that is already closed, with a
// nil Err, so a late web handler ends its stream like any other.
func (b *Broker) Subscribe(name string, buffer int, filter func(Event) bool) *Subscription {
	if buffer < 1 {
		buffer = DefaultBuffer
	}
	s := &Subscription{name: name, filter: filter, broker: b, ch: make(chan Event, buffer)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		s.shut(&ending{}) // no publisher has seen s, so this closes C now
		return s
	}
	b.rewriteLocked(s, nil)
	return s
}

// Close closes every subscription (their channels close as soon as no Publish
// is sending to them, and their Err stays nil),
// makes later Publish calls do nothing and later Subscribe calls return closed
// subscriptions. It is idempotent.
func (b *Broker) Close() {
	b.mu.Lock()
	if b.closed.Swap(true) {
		b.mu.Unlock()
		return
	}
	subs := b.subs.Swap(nil)
	b.mu.Unlock()
	if subs == nil {
		return
	}
	for _, s := range *subs {
		s.shut(&ending{})
	}
}

// Stats counts since New.
type Stats struct {
	// Published is how many events Publish accepted (before Close).
	Published uint64
	// Delivered is how many copies of them reached a subscriber's buffer.
	Delivered uint64
	// Missed is how many copies found a buffer full.
	Missed uint64
	// Dropped is how many subscribers were dropped for being too slow.
	Dropped uint64
	// Subscribers is how many are subscribed now.
	Subscribers int
	// PerSubscriber has one entry per current subscriber, oldest first.
	PerSubscriber []SubscriberStats
}

// SubscriberStats is one current subscriber's share.
type SubscriberStats struct {
	Name      string
	Buffer    int
	Queued    int // events in its buffer not yet received
	Delivered uint64
}

func (s Stats) String() string {
	return fmt.Sprintf("live: %d published, %d delivered, %d missed, %d subscribers, %d dropped as too slow",
		s.Published, s.Delivered, s.Missed, s.Subscribers, s.Dropped)
}

// Stats returns the counters now. It allocates, so it is for a status line or
// an API call, not for every event.
func (b *Broker) Stats() Stats {
	st := Stats{
		Published: b.published.Load(),
		Delivered: b.delivered.Load(),
		Missed:    b.missed.Load(),
		Dropped:   b.dropped.Load(),
	}
	if subs := b.subs.Load(); subs != nil {
		for _, s := range *subs {
			if s.end.Load() != nil {
				continue // dropped or closed, not yet pruned from the list
			}
			st.PerSubscriber = append(st.PerSubscriber, SubscriberStats{Name: s.name, Buffer: cap(s.ch), Queued: len(s.ch), Delivered: s.delivered.Load()})
		}
	}
	st.Subscribers = len(st.PerSubscriber)
	return st
}

// prune removes ended subscriptions from the list. The publisher only tries:
// if a writer holds mu it is rewriting the list anyway and leaves ended ones
// out, and a later Publish that still meets one tries again. So a drop never
// makes the publisher wait for Subscribe or Close.
func (b *Broker) prune() {
	if !b.mu.TryLock() {
		return
	}
	defer b.mu.Unlock()
	if !b.closed.Load() {
		b.rewriteLocked(nil, nil)
	}
}

// rewriteLocked publishes a new list: the current one without ended
// subscriptions and without remove, plus add.
func (b *Broker) rewriteLocked(add, remove *Subscription) {
	var old []*Subscription
	if p := b.subs.Load(); p != nil {
		old = *p
	}
	next := make([]*Subscription, 0, len(old)+1)
	for _, s := range old {
		if s != remove && s.end.Load() == nil {
			next = append(next, s)
		}
	}
	if add != nil {
		next = append(next, add)
	}
	if len(next) == 0 {
		b.subs.Store(nil)
		return
	}
	b.subs.Store(&next)
}

// Subscription is one subscriber's bounded stream of events.
//
// Contract: only the subscriber receives from C. C closes when the subscriber
// calls Close, when the broker closes, or when the broker drops it for being
// too slow; whatever was buffered before that is still received first. Err,
// read after C has closed, says which: nil for a close, a *TooSlowError
// (errors.Is ErrTooSlow) for a drop.
type Subscription struct {
	name   string
	filter func(Event) bool
	broker *Broker
	ch     chan Event

	// gate lets publishers send on ch while a closer waits for none of them:
	// its low bits count publishers inside offer, gateClosing says no new one
	// may send, gateClosed says ch has been closed. Whoever leaves the count at
	// zero with gateClosing set closes ch, so ch is closed exactly once and
	// never while a send is in flight.
	gate      atomic.Int64
	end       atomic.Pointer[ending] // first reason to close; set before gateClosing
	delivered atomic.Uint64
	missed    atomic.Uint64
}

const (
	gateClosing int64 = 1 << 62
	gateClosed  int64 = 1 << 61
	gateSenders int64 = gateClosed - 1
)

// ending is why a subscription ended; its zero value is an ordinary close.
type ending struct {
	slow bool
	at   time.Time
}

type offerResult uint8

const (
	offerSent    offerResult = iota
	offerGone                // ended before this event; not a miss
	offerMissed              // buffer full, but someone else ended it first
	offerDropped             // buffer full, and this call dropped it
)

// offer tries to put ev in the buffer without waiting. The counters are
// updated inside the gate, so they are final by the time ch closes.
func (s *Subscription) offer(ev Event) offerResult {
	if s.gate.Add(1)&gateClosing != 0 {
		s.leave()
		return offerGone
	}
	r := offerMissed
	select {
	case s.ch <- ev:
		s.delivered.Add(1)
		r = offerSent
	default:
		s.missed.Add(1)
		if s.shut(&ending{slow: true, at: s.broker.now()}) {
			r = offerDropped
		}
	}
	s.leave()
	return r
}

func (s *Subscription) leave() {
	if s.gate.Add(-1) == gateClosing {
		s.finish()
	}
}

func (s *Subscription) finish() {
	if s.gate.CompareAndSwap(gateClosing, gateClosing|gateClosed) {
		close(s.ch)
	}
}

// shut ends the subscription for reason e unless it has ended already, and
// reports whether this call was the one that ended it.
func (s *Subscription) shut(e *ending) bool {
	if !s.end.CompareAndSwap(nil, e) {
		return false
	}
	if s.gate.Or(gateClosing)&gateSenders == 0 {
		s.finish()
	}
	return true
}

// C is the stream; it is never nil, and it closes when the subscription ends.
func (s *Subscription) C() <-chan Event { return s.ch }

// Name is what the subscriber called itself, for logs and Stats.
func (s *Subscription) Name() string { return s.name }

// Close unsubscribes. It is idempotent and safe concurrently with Publish, and
// it never waits for one: a Publish that is sending to this subscription at
// that moment may still land its event, and it is then that Publish which
// closes C on its way out, an instant after Close returns.
func (s *Subscription) Close() {
	s.shut(&ending{})
	b := s.broker
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed.Load() {
		b.rewriteLocked(nil, s)
	}
}

// Err is nil while the subscription lives and after an ordinary close; after a
// drop it is a *TooSlowError wrapping ErrTooSlow. Its counts are final once C
// has closed.
func (s *Subscription) Err() error {
	e := s.end.Load()
	if e == nil || !e.slow {
		return nil
	}
	return &TooSlowError{Name: s.name, Buffer: cap(s.ch), Delivered: s.delivered.Load(), Missed: s.missed.Load(), At: e.at}
}
