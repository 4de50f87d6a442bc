// Package pipeline is the one place every capture source hands its flows to.
// It decides before anything is forwarded (the Hello and Request verdicts of
// the policy in force), and once a flow is done it runs the stages in the
// order declared here, and nowhere else:
//
//	Done → admit (shed under load) → inspect (decode once, detect, aggregate)
//	     → store → sinks (JSON lines, flow lines, evidence) → live
//
// For a live source the stages run behind a queue bounded in bytes, on a
// goroutine of their own, so that capture never waits for analysis; when
// analysis falls behind, the pipeline sheds work in a declared order and
// never a flow. For a file the stages run on the reader's goroutine: a file
// can wait.
package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"phonehome/internal/capture"
	"phonehome/internal/detect"
	"phonehome/internal/flow"
	"phonehome/internal/live"
	"phonehome/internal/policy"
	"phonehome/internal/report"
)

// Writer is where flows are stored (the store's session writer). Flows are
// added in batches, each committed by Flush. The pipeline keeps every flow
// until a Flush that covers it succeeds; after a failed Add or Flush it calls
// Rollback, so that nothing of the failed batch is stored, and sends the
// flows again once the store works.
type Writer interface {
	Add(*flow.Flow) error
	Flush() error
	Idle() error     // a quiet moment: flush, and let the store tidy up
	Rollback() error // drop what was added since the last successful Flush
	Close() error
}

// Sink receives every flow after it is stored. An error stops the pipeline:
// no later flow reaches any sink (a file being written went bad).
type Sink func(*flow.Flow) error

// Options configure a pipeline. Every field is optional.
type Options struct {
	// Engine decodes and detects; nil leaves flows as they come (--no-detect,
	// or a stored session whose findings are already there).
	Engine *detect.Engine
	// Summary aggregates what is learned across flows; nil: nothing.
	Summary *report.Summary
	// Store keeps every flow; nil: nothing is stored.
	Store Writer
	// Sinks run after the store, in order.
	Sinks []Sink
	// Live receives each flow once it is stored, and notices; nil: none.
	Live *live.Broker
	// Policy decides at Hello and Request; nil: everything is allowed.
	Policy policy.Policy

	// Source names the flows of live sources that do not name themselves
	// ("proxy"); Done also numbers them in the order they finish.
	Source string
	// Queue makes Done hand the flow to the pipeline's own goroutine (Run)
	// and return at once: for live capture. Without it the stages run in Done.
	Queue bool
	// MaxQueueBytes bounds what waits for analysis (default 64 MiB), counted
	// as the bytes of the bodies and headers the flows hold.
	MaxQueueBytes int64
	// MaxRetryBytes bounds the flows kept while the store fails (default 64 MiB).
	MaxRetryBytes int64
	// RetryStore keeps flows the store refused and sends them again (live
	// capture); without it a store error stops the pipeline (a file).
	RetryStore bool
	// StoreAdvice says what to do about a store error ("free some disk
	// space"); nil or "": a general hint.
	StoreAdvice func(error) string
	// FlushEvery is how often stored flows are committed (default 1 s): a
	// crash loses at most this much.
	FlushEvery time.Duration

	Logger *slog.Logger
	Now    func() time.Time
}

// NoticeCode says what a notice (a live.EventNotice) is about.
type NoticeCode uint8

const (
	// NoticeStoreFailing: flows cannot be stored; they wait and are retried.
	NoticeStoreFailing NoticeCode = iota + 1
	// NoticeStoreRecovered: the store works again; what waited is stored.
	NoticeStoreRecovered
	// NoticeShedding: analysis fell behind and part of it is being skipped.
	NoticeShedding
	// NoticeLost: flows could not be kept at all (the store failed for too long).
	NoticeLost
)

var noticeNames = [...]string{"", "store_failing", "store_recovered", "shedding", "lost"}

func (c NoticeCode) String() string {
	if int(c) < len(noticeNames) {
		return noticeNames[c]
	}
	return ""
}

// Stats are the pipeline's counters.
type Stats struct {
	Flows          int64 // handed to Done
	Processed      int64 // through every stage
	Stored         int64 // committed to the store
	Shed           int64 // flows of which part of the analysis was skipped
	ShedBytes      int64 // body bytes not analysed or kept because analysis was behind
	QueueBytes     int64 // waiting now
	PeakQueueBytes int64
	StoreErrors    int64 // failed attempts to store
	Waiting        int64 // flows waiting for the store to work again
	Lost           int64 // flows that could not be stored in the end
	Late           int64 // handed over after Close: not processed
	Blocked        int64 // requests and connections refused by the policy
}

// Pipeline is the Handler of every capture source.
type Pipeline struct {
	opts   Options
	policy atomic.Pointer[policyBox]
	stats  struct {
		flows, processed, stored, shed, shedBytes, storeErrors, lost, late, blocked atomic.Int64
		peak                                                                        atomic.Int64
	}

	mu      sync.Mutex
	queue   []*flow.Flow // waiting for the stages, oldest first
	qbytes  int64
	closed  bool
	wake    chan struct{}
	drained chan struct{} // closed when Run has processed the last flow

	// touched only by the goroutine running the stages
	err       error        // a sink or (without RetryStore) store error: stops everything
	pending   int          // added to the store, not yet committed
	unflushed []*flow.Flow // those flows, with RetryStore
	waiting   []*flow.Flow // refused by the store, to be sent again
	wbytes    int64
	failing   error // the store's last error while it fails
	lastFlush time.Time
	waitingN  atomic.Int64
	// shedNotice is set by Done when it sheds; Run turns it into one notice
	// per episode
	shedNotice atomic.Bool
}

type policyBox struct{ p policy.Policy }

var _ capture.Handler = (*Pipeline)(nil)

// New returns a pipeline. A queued one processes nothing until Run.
func New(opts Options) *Pipeline {
	if opts.MaxQueueBytes <= 0 {
		opts.MaxQueueBytes = 64 << 20
	}
	if opts.MaxRetryBytes <= 0 {
		opts.MaxRetryBytes = 64 << 20
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{opts: opts, wake: make(chan struct{}, 1), drained: make(chan struct{})}
	p.SetPolicy(opts.Policy)
	return p
}

// SetPolicy puts a policy in force, from the next decision on; nil allows
// everything. Safe while flows pass.
func (p *Pipeline) SetPolicy(pol policy.Policy) {
	if pol == nil {
		pol = policy.AllowAll{}
	}
	p.policy.Store(&policyBox{pol})
}

func (p *Pipeline) pol() policy.Policy { return p.policy.Load().p }

// Hello asks the policy about a TLS connection before anything is minted.
func (p *Pipeline) Hello(_ context.Context, h flow.Hello) flow.Verdict {
	v := p.pol().Hello(h)
	if !v.Action.ValidAt(flow.StageHello) {
		return flow.Verdict{}
	}
	if v.Action == flow.ActionBlock {
		p.stats.blocked.Add(1)
	}
	return v
}

// RequestBody says how much of a request's body the policy needs to decide.
func (p *Pipeline) RequestBody(f *flow.Flow) int { return max(p.pol().RequestBody(f), 0) }

// Request asks the policy about a request before it goes upstream. When the
// policy reads findings, detection runs here, on the request's path, and not
// again later.
func (p *Pipeline) Request(_ context.Context, f *flow.Flow) (flow.Verdict, *flow.Request) {
	pol := p.pol()
	if pol.NeedsFindings() && p.opts.Engine != nil && !f.Inspected {
		p.opts.Engine.Inspect(f)
		f.Inspected = true
	}
	v, out := pol.Request(f)
	switch {
	case !v.Action.ValidAt(flow.StageRequest):
		f.Notef(flow.NotePolicy, "the policy answered %s to a request, which cannot apply there: allowed", v.Action)
		v, out = flow.Verdict{}, nil
	case v.Action == flow.ActionRedact && out == nil:
		f.Note(flow.NotePolicy, "the policy asked to redact but gave nothing to send: allowed unchanged")
		v = flow.Verdict{}
	case v.Action != flow.ActionRedact:
		out = nil
	}
	f.Verdict = v
	switch v.Action {
	case flow.ActionBlock:
		p.stats.blocked.Add(1)
		f.Note(flow.NoteBlocked, "blocked by "+v.String())
	case flow.ActionRedact:
		f.Note(flow.NoteRedacted, "forwarded redacted by "+v.String())
	}
	return v, out
}

// Done takes a finished flow. With a queue it returns at once; without, the
// stages run now.
func (p *Pipeline) Done(f *flow.Flow) {
	n := p.stats.flows.Add(1)
	if f.Source == "" && p.opts.Source != "" {
		f.Source = p.opts.Source
	}
	if f.Seq == 0 && p.opts.Queue {
		f.Seq = int(n)
	}
	if !p.opts.Queue {
		p.process(f)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.stats.late.Add(1)
		return
	}
	p.admit(f)
	p.queue = append(p.queue, f)
	p.qbytes += cost(f)
	if p.qbytes > p.stats.peak.Load() {
		p.stats.peak.Store(p.qbytes)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// The order in which work is shed as the queue fills, fractions of
// MaxQueueBytes: bulk response bodies (media, binary, large) first, then every
// response body (the answers are not analysed), then request bodies beyond
// a prefix. The flow itself, its head and what was found in it are never shed.
const (
	shedBulkAt     = 0.25
	shedResponseAt = 0.50
	shedRequestAt  = 0.90
	// requestKept is what is kept of a request body past shedRequestAt:
	// enough for the fields trackers send.
	requestKept = 16 << 10
	// bulkBody is the size beyond which a response body is bulk, whatever its type.
	bulkBody = 256 << 10
)

// admit sheds what the queue's fill calls for; p.mu is held.
func (p *Pipeline) admit(f *flow.Flow) {
	fill := float64(p.qbytes) / float64(p.opts.MaxQueueBytes)
	if fill < shedBulkAt {
		return
	}
	var shed int64
	if r := f.Response; r != nil && len(r.Body.Data) > 0 {
		bulk := flow.BulkType(r.Headers.Get("Content-Type")) || len(r.Body.Data) > bulkBody
		if bulk || fill >= shedResponseAt {
			shed += int64(len(r.Body.Data))
			r.Body.Data = nil
			r.Body.Truncated = r.Body.Size > 0
			f.Note(flow.NoteShed, "response body not kept or analysed: analysis was behind")
		}
	}
	if r := f.Request; r != nil && fill >= shedRequestAt && len(r.Body.Data) > requestKept {
		shed += int64(len(r.Body.Data) - requestKept)
		r.Body.Data = r.Body.Data[:requestKept:requestKept]
		r.Body.Truncated = true
		f.Notef(flow.NoteShed, "request body analysed and kept up to %d bytes only: analysis was behind", requestKept)
	}
	if shed > 0 {
		p.stats.shed.Add(1)
		p.stats.shedBytes.Add(shed)
		p.shedNotice.Store(true)
	}
}

// cost is what a flow takes in memory while it waits, roughly.
func cost(f *flow.Flow) int64 {
	n := int64(512)
	if r := f.Request; r != nil {
		n += int64(len(r.Body.Data) + len(r.URL))
		for _, h := range r.Headers {
			n += int64(len(h.Name) + len(h.Value) + 32)
		}
	}
	if r := f.Response; r != nil {
		n += int64(len(r.Body.Data))
		for _, h := range r.Headers {
			n += int64(len(h.Name) + len(h.Value) + 32)
		}
	}
	return n
}

// Run processes queued flows until Close has been called and the queue is
// empty, or ctx ends (then what is still queued is left).
func (p *Pipeline) Run(ctx context.Context) error {
	defer close(p.drained)
	tick := time.NewTicker(p.opts.FlushEvery)
	defer tick.Stop()
	busy := false     // flows came since the last tick
	shedding := false // a shedding notice was given and the queue has not emptied since
	for {
		p.mu.Lock()
		batch := p.queue
		p.queue = nil
		closed := p.closed
		p.mu.Unlock()
		for i, f := range batch {
			p.process(f)
			batch[i] = nil
			p.mu.Lock()
			p.qbytes -= cost(f)
			p.mu.Unlock()
		}
		if p.shedNotice.Swap(false) && !shedding {
			shedding = true
			p.notice(NoticeShedding, "analysis is behind the traffic: bulk response bodies are not kept or analysed until it catches up (every request is still analysed and stored)")
		}
		if len(batch) == 0 {
			shedding = false
		}
		if len(batch) > 0 {
			busy = true
			p.maybeFlush(false)
			// let the next flows gather, a moment: a wake-up per flow would
			// compete with forwarding for the CPU
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
			continue
		}
		if closed {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.wake:
		case <-tick.C:
			p.maybeFlush(!busy)
			busy = false
		}
	}
}

// process runs the stages on one flow, in their order.
func (p *Pipeline) process(f *flow.Flow) {
	if p.err != nil {
		return
	}
	p.inspect(f)
	if p.opts.Store != nil {
		p.store(f)
	}
	for _, s := range p.opts.Sinks {
		if err := s(f); err != nil {
			p.err = err
			return
		}
	}
	if p.opts.Live != nil {
		p.opts.Live.Publish(live.Event{Kind: live.EventFlow, Time: p.opts.Now(), Flow: f})
	}
	p.stats.processed.Add(1)
}

// inspect decodes the request once; detection and the summary read what it
// found.
func (p *Pipeline) inspect(f *flow.Flow) {
	e, sum := p.opts.Engine, p.opts.Summary
	switch {
	case e != nil && !f.Inspected && sum != nil:
		e.InspectWith(f, sum.AddDecoded)
		f.Inspected = true
	case e != nil && !f.Inspected:
		e.Inspect(f)
		f.Inspected = true
	case sum != nil:
		// detected before (a verdict needed it, or a stored session): the
		// summary decodes what it learns from
		sum.Add(f)
	}
}

// store adds f to the store; a failure keeps it (and everything not yet
// committed) to be sent again.
func (p *Pipeline) store(f *flow.Flow) {
	if p.failing != nil {
		p.wait(f)
		return
	}
	if err := p.opts.Store.Add(f); err != nil {
		p.storeFailed(err, f)
		return
	}
	p.pending++
	if p.opts.RetryStore {
		// kept until committed: a file reader may reuse a flow's buffers once
		// Done returns, so only live flows are kept
		p.unflushed = append(p.unflushed, f)
	}
	if p.pending >= flushBatch {
		p.maybeFlush(false)
	}
}

// flushBatch is the most flows added before a commit (the store would commit
// on its own at 2,000).
const flushBatch = 1000

// maybeFlush commits what was added when it is time (or now, when idle), and
// retries a failing store.
func (p *Pipeline) maybeFlush(idle bool) {
	st := p.opts.Store
	if st == nil {
		return
	}
	if p.failing != nil {
		p.retry()
		return
	}
	now := p.opts.Now()
	if !idle && p.pending < flushBatch && now.Sub(p.lastFlush) < p.opts.FlushEvery {
		return
	}
	p.lastFlush = now
	commit := st.Flush
	if idle {
		commit = st.Idle
	}
	if err := commit(); err != nil {
		p.storeFailed(err, nil)
		return
	}
	p.stats.stored.Add(int64(p.pending))
	p.pending = 0
	clear(p.unflushed)
	p.unflushed = p.unflushed[:0]
}

// storeFailed moves what was not committed to the flows waiting for the
// store, and says so once.
func (p *Pipeline) storeFailed(err error, f *flow.Flow) {
	p.stats.storeErrors.Add(1)
	if !p.opts.RetryStore {
		if p.err == nil {
			p.err = err
		}
		return
	}
	p.opts.Store.Rollback()
	first := p.failing == nil
	p.failing = err
	again := append(p.unflushed, p.waiting...)
	p.unflushed, p.waiting, p.wbytes, p.pending = nil, nil, 0, 0
	for _, x := range again {
		p.wait(x)
	}
	if f != nil {
		p.wait(f)
	}
	if first {
		p.notice(NoticeStoreFailing, fmt.Sprintf("cannot store flows: %v. Capture goes on; flows wait in memory (up to %s) and are stored when this is fixed (%s)",
			err, report.Bytes(p.opts.MaxRetryBytes), p.advice(err)))
	}
}

// wait keeps f for the store; past the bound, bodies go first, then the
// oldest flows.
func (p *Pipeline) wait(f *flow.Flow) {
	p.waiting = append(p.waiting, f)
	p.wbytes += cost(f)
	for p.wbytes > p.opts.MaxRetryBytes && len(p.waiting) > 0 {
		// drop the bodies of the oldest flow that has any; a flow without
		// bodies that still does not fit is lost
		dropped := false
		for _, x := range p.waiting {
			if c := bodyBytes(x); c > 0 {
				p.wbytes -= c
				stripBodies(x)
				x.Note(flow.NoteShed, "bodies not kept: the store was failing and memory for waiting flows ran out")
				dropped = true
				break
			}
		}
		if !dropped {
			lost := p.waiting[0]
			p.waiting = p.waiting[1:]
			p.wbytes -= cost(lost)
			if p.stats.lost.Add(1) == 1 {
				p.notice(NoticeLost, "the store has failed for too long: flows are being lost (fix the store, or stop phonehome)")
			}
		}
	}
	p.waitingN.Store(int64(len(p.waiting)))
}

// retry sends the waiting flows again, if the store works now.
func (p *Pipeline) retry() {
	st := p.opts.Store
	total := len(p.waiting)
	// in batches, each committed before the next is sent: what a failure
	// rolls back is only the batch in hand, and nothing is stored twice
	for len(p.waiting) > 0 {
		n := min(len(p.waiting), flushBatch)
		batch := p.waiting[:n]
		var err error
		for _, f := range batch {
			if err = st.Add(f); err != nil {
				break
			}
		}
		if err == nil {
			err = st.Flush()
		}
		if err != nil {
			st.Rollback()
			p.failing = err
			p.stats.storeErrors.Add(1)
			p.waitingN.Store(int64(len(p.waiting)))
			return // the rest is sent again next time
		}
		for _, f := range batch {
			p.wbytes -= cost(f)
		}
		p.stats.stored.Add(int64(n))
		clear(batch)
		p.waiting = p.waiting[n:]
	}
	p.waiting, p.wbytes, p.failing = nil, 0, nil
	p.waitingN.Store(0)
	p.lastFlush = p.opts.Now()
	p.notice(NoticeStoreRecovered, fmt.Sprintf("the store works again: %d waiting flows stored", total))
}

func bodyBytes(f *flow.Flow) int64 {
	var n int64
	if f.Request != nil {
		n += int64(len(f.Request.Body.Data))
	}
	if f.Response != nil {
		n += int64(len(f.Response.Body.Data))
	}
	return n
}

func stripBodies(f *flow.Flow) {
	if r := f.Request; r != nil && len(r.Body.Data) > 0 {
		r.Body.Data, r.Body.Truncated = nil, true
	}
	if r := f.Response; r != nil && len(r.Body.Data) > 0 {
		r.Body.Data, r.Body.Truncated = nil, true
	}
}

func (p *Pipeline) notice(code NoticeCode, text string) {
	p.opts.Logger.Warn(text, "notice", code.String())
	if p.opts.Live != nil {
		p.opts.Live.Publish(live.Event{Kind: live.EventNotice, Time: p.opts.Now(), Text: text})
	}
}

// advice says what to do about a store error.
func (p *Pipeline) advice(err error) string {
	if p.opts.StoreAdvice != nil {
		if a := p.opts.StoreAdvice(err); a != "" {
			return a
		}
	}
	return "check the database file and the disk it is on"
}

// Close stops taking flows, lets Run finish what is queued, commits, retries
// a failing store one last time and closes it. It returns the error that
// stopped the pipeline, if any, or what could not be stored.
func (p *Pipeline) Close() error {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	if already {
		return p.err
	}
	if p.opts.Queue {
		select {
		case p.wake <- struct{}{}:
		default:
		}
		<-p.drained
	}
	if st := p.opts.Store; st != nil {
		if p.failing != nil {
			p.retry()
		} else if err := st.Flush(); err != nil {
			p.storeFailed(err, nil)
			if p.opts.RetryStore {
				p.retry()
			}
		} else {
			p.stats.stored.Add(int64(p.pending))
			p.pending, p.unflushed = 0, nil
		}
		if p.failing != nil {
			p.stats.lost.Add(int64(len(p.waiting)))
			if p.err == nil {
				p.err = fmt.Errorf("%d flows could not be stored: %w", len(p.waiting), p.failing)
			}
		}
		if err := st.Close(); err != nil && p.err == nil {
			p.err = err
		}
	}
	return p.err
}

// Err is the error that stopped the pipeline, if any. Read it after Close
// (or, without a queue, from the goroutine calling Done).
func (p *Pipeline) Err() error { return p.err }

// Stats returns the counters. Safe at any time.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	q := p.qbytes
	p.mu.Unlock()
	return Stats{
		Flows: p.stats.flows.Load(), Processed: p.stats.processed.Load(), Stored: p.stats.stored.Load(),
		Shed: p.stats.shed.Load(), ShedBytes: p.stats.shedBytes.Load(), QueueBytes: q,
		PeakQueueBytes: p.stats.peak.Load(), StoreErrors: p.stats.storeErrors.Load(),
		Waiting: p.waitingN.Load(), Lost: p.stats.lost.Load(), Late: p.stats.late.Load(), Blocked: p.stats.blocked.Load(),
	}
}
