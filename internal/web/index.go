package web

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"phonehome/internal/detect"
	"phonehome/internal/flow"
	"phonehome/internal/report"
)

// Row is a flow as the lists show it: what fits on one line. The API's
// /api/flows and the live stream send rows; /api/flows/{id} sends the flow.
type Row struct {
	ID        int64       `json:"id"`
	Time      time.Time   `json:"time"`
	Device    string      `json:"device"`
	Client    string      `json:"client"`
	Method    string      `json:"method,omitempty"`
	Host      string      `json:"host"`
	URL       string      `json:"url,omitempty"`
	Status    int         `json:"status,omitempty"`
	Transport string      `json:"transport"`
	Cleartext bool        `json:"cleartext"`
	Owner     string      `json:"owner,omitempty"`
	Category  string      `json:"category,omitempty"`
	Party     string      `json:"party"`
	App       string      `json:"app,omitempty"`
	Kinds     []flow.Kind `json:"kinds,omitempty"`
	Verdict   string      `json:"verdict"`
	Rule      string      `json:"rule,omitempty"`
	BytesUp   int64       `json:"bytes_up"`
	BytesDown int64       `json:"bytes_down"`
}

// rowURL bounds the URL a row keeps (the list shows less; the flow's page
// shows it whole): a session's rows stay in memory.
const rowURL = 512

// partyOf names the party as the report does: the owner, else the site.
func partyOf(f *flow.Flow) string {
	switch {
	case f.Dest.Owner != "":
		return f.Dest.Owner
	case f.Dest.Site != "":
		return f.Dest.Site
	}
	return f.HostOrAddr()
}

// rowOf summarises f. The URL and host are copied: they may be slices of a
// larger buffer (the request's head) that a row must not keep alive; the
// other strings are short or shared with the tracker knowledge.
func rowOf(f *flow.Flow) Row {
	r := Row{ID: f.ID, Time: f.Start, Device: f.DeviceName(), Client: f.Client.String(), Host: strings.Clone(f.HostOrAddr()),
		Transport: f.Transport.String(), Owner: f.Dest.Owner, Category: f.Dest.Category, Party: partyOf(f), App: f.App,
		Verdict: f.Verdict.Action.String(), Rule: f.Verdict.Rule, BytesUp: f.BytesUp, BytesDown: f.BytesDown}
	if q := f.Request; q != nil {
		r.Method, r.URL = q.Method, strings.Clone(clip(q.URL, rowURL))
	}
	if f.DNS != nil && r.URL == "" {
		r.URL = "dns " + f.DNS.Type + " " + f.DNS.Name
	}
	if s := f.Response; s != nil {
		r.Status = s.Status
	}
	for _, x := range detect.Reported(f) {
		if !slices.Contains(r.Kinds, x.Kind) {
			r.Kinds = append(r.Kinds, x.Kind)
		}
	}
	r.Cleartext = f.Transport.Cleartext() && len(r.Kinds) > 0
	return r
}

// Query chooses flows of a session, newest first. Empty fields match all.
type Query struct {
	Session int64
	Device  string
	Party   string // owner or site, as rows name it
	Kind    flow.Kind
	Host    string // a part of the host
	Verdict string // allow, block, redact, passthrough
	// Before is a cursor: only flows older than the flow with this id (0: from
	// the newest). Page.Next is the cursor of the next page.
	Before int64
	// From and To bound the flows' start (zero: unbounded; To is exclusive).
	From, To time.Time
	Limit    int // default 100, at most 1000
}

func (q *Query) match(r *Row) bool {
	switch {
	case q.Device != "" && r.Device != q.Device,
		q.Party != "" && r.Party != q.Party,
		q.Verdict != "" && r.Verdict != q.Verdict,
		q.Host != "" && !strings.Contains(r.Host, q.Host),
		q.Kind != "" && !slices.Contains(r.Kinds, q.Kind),
		!q.From.IsZero() && r.Time.Before(q.From),
		!q.To.IsZero() && !r.Time.Before(q.To):
		return false
	}
	return true
}

// Page is one page of a query's rows, newest first.
type Page struct {
	Flows []Row `json:"flows"`
	// Next is the Before of the next page; 0 when this is the last.
	Next int64 `json:"next,omitempty"`
}

// keptBytes bounds the flows an index keeps whole (for their own page) in
// bytes of bodies: the newest are kept, older ones are read from the store
// by their id. Small: whatever is kept the garbage collector lets the heap
// grow to twice, beside the capture's own memory.
const keptBytes = 8 << 20

// keptFlows bounds them in number: a flow whole is several times its
// bodies (headers, findings, the strings of both).
const keptFlows = 1024

// index is one session's flows as the pages read them: a row per flow in
// the order they completed, the report's summary of them, and the newest
// flows whole. Pages read it under a read lock; the live feed appends.
type index struct {
	mu sync.RWMutex
	// maxRows, when not 0, bounds the rows (the live session's: a run of
	// days must not grow without end): past it the oldest tenth is dropped,
	// and the lists show the newest maxRows flows. The summary (Parties,
	// Identifiers) still counts every flow.
	maxRows int
	rows    []Row
	pos     map[int64]int // flow id → position in rows
	kept    map[int64]*flow.Flow
	keptIDs []int64 // oldest first
	keptSz  int64
	summary *report.Summary
	doc     *report.Doc // summary.Doc() as of docN rows
	docN    int
	docAt   time.Time
	stopped map[string]int // rule → flows it blocked or redacted
	nextTmp int64          // ids for flows the store could not number
	// sumCh, while a stored session is first read, takes its flows to the
	// summary on a goroutine of its own: reading and the summary each take
	// about half of the time, and the rows are served before the summary is
	// done. sumDone closes when the summary holds every flow added.
	sumCh   chan *flow.Flow
	sumDone chan struct{}
}

func newIndex() *index {
	done := make(chan struct{})
	close(done)
	return &index{pos: map[int64]int{}, kept: map[int64]*flow.Flow{}, summary: report.NewSummary(), stopped: map[string]int{}, sumDone: done}
}

// summarizeApart makes add hand flows to the summary on another goroutine,
// until endSummary. The goroutine that adds is the one that calls both.
func (x *index) summarizeApart() {
	ch, done := make(chan *flow.Flow, 1024), make(chan struct{})
	x.sumCh, x.sumDone = ch, done
	go func() {
		defer close(done)
		batch := make([]*flow.Flow, 0, 64)
		for f := range ch {
			batch = append(batch[:0], f)
			for len(batch) < cap(batch) && len(ch) > 0 {
				batch = append(batch, <-ch)
			}
			x.mu.Lock()
			for _, f := range batch {
				x.summary.Add(f)
			}
			x.mu.Unlock()
		}
	}()
}

// endSummary says no more flows come; the summary finishes on its own.
func (x *index) endSummary() {
	if x.sumCh != nil {
		close(x.sumCh)
		x.sumCh = nil
	}
}

// add takes a completed flow; keep says whether to hold it whole. f must not
// change afterwards.
func (x *index) add(f *flow.Flow, keep bool) Row {
	r, added := x.addRow(f, keep)
	if added && x.sumCh != nil {
		x.sumCh <- f
	}
	return r
}

func (x *index) addRow(f *flow.Flow, keep bool) (Row, bool) {
	r := rowOf(f)
	x.mu.Lock()
	defer x.mu.Unlock()
	if r.ID == 0 {
		x.nextTmp--
		r.ID = x.nextTmp // a flow the store failed to number is still shown
	}
	if _, dup := x.pos[r.ID]; dup {
		return r, false
	}
	x.pos[r.ID] = len(x.rows)
	x.rows = append(x.rows, r)
	if x.maxRows > 0 && len(x.rows) > x.maxRows {
		x.dropOldestLocked(x.maxRows / 10)
	}
	if x.sumCh == nil {
		x.summary.Add(f)
	}
	if a := f.Verdict.Action; a == flow.ActionBlock || a == flow.ActionRedact {
		x.stopped[f.Verdict.Rule]++
	}
	if keep {
		x.keepLocked(r.ID, f)
	}
	return r, true
}

// keep holds a stored flow whole (read after the index was built), if the
// index has it; the newest are kept as the budget allows.
func (x *index) keep(f *flow.Flow) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.pos[f.ID]; ok {
		x.keepLocked(f.ID, f)
	}
}

func (x *index) keepLocked(id int64, f *flow.Flow) {
	if _, ok := x.kept[id]; ok {
		return
	}
	x.kept[id] = f
	x.keptIDs = append(x.keptIDs, id)
	x.keptSz += flowSize(f)
	for (x.keptSz > keptBytes || len(x.keptIDs) > keptFlows) && len(x.keptIDs) > 1 {
		old := x.kept[x.keptIDs[0]]
		delete(x.kept, x.keptIDs[0])
		x.keptIDs = x.keptIDs[1:]
		x.keptSz -= flowSize(old)
	}
}

// dropOldestLocked forgets the oldest n rows (their flows stay in the store).
func (x *index) dropOldestLocked(n int) {
	for _, r := range x.rows[:n] {
		delete(x.pos, r.ID)
	}
	x.rows = slices.Clone(x.rows[n:]) // a new array: the old one's rows go
	for i, r := range x.rows {
		x.pos[r.ID] = i
	}
}

func flowSize(f *flow.Flow) int64 {
	n := int64(512)
	if f.Request != nil {
		n += int64(len(f.Request.Body.Data) + len(f.Request.URL))
	}
	if f.Response != nil {
		n += int64(len(f.Response.Body.Data))
	}
	return n
}

// page answers q from the rows, newest first.
func (x *index) page(q Query) Page {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	x.mu.RLock()
	defer x.mu.RUnlock()
	end := len(x.rows)
	p := Page{Flows: []Row{}}
	if q.Before != 0 {
		i, ok := x.pos[q.Before]
		if !ok {
			return p // a cursor of another session: nothing before it here
		}
		end = i
	}
	for i := end - 1; i >= 0; i-- {
		r := &x.rows[i]
		if !q.match(r) {
			continue
		}
		if len(p.Flows) == limit {
			p.Next = p.Flows[limit-1].ID
			break
		}
		p.Flows = append(p.Flows, *r)
	}
	return p
}

// flow returns a kept flow, or nil.
func (x *index) flow(id int64) *flow.Flow {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.kept[id]
}

// has reports whether the session has a flow of this id.
func (x *index) has(id int64) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.pos[id]
	return ok
}

// report returns the report's document of the flows so far. Building it
// walks the whole summary, so a live session's is rebuilt at most once a
// second however often pages ask.
func (x *index) report(now time.Time) *report.Doc {
	<-x.sumDone
	x.mu.RLock()
	doc, n, at := x.doc, x.docN, x.docAt
	fresh := doc != nil && (n == len(x.rows) || now.Sub(at) < time.Second)
	x.mu.RUnlock()
	if fresh {
		return doc
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.doc == nil || x.docN != len(x.rows) {
		x.doc, x.docN, x.docAt = x.summary.Doc(), len(x.rows), now
	}
	return x.doc
}

// stoppedParties is what the policy stopped, per party, copied out of the
// summary (which the feed goes on changing).
func (x *index) stoppedParties() []report.Stopped {
	<-x.sumDone
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []report.Stopped
	for _, st := range x.summary.Stopped() {
		c := *st
		c.Kinds, c.Rules, c.Answers = maps.Clone(st.Kinds), maps.Clone(st.Rules), maps.Clone(st.Answers)
		out = append(out, c)
	}
	return out
}

// stoppedBy counts the flows each rule stopped.
func (x *index) stoppedBy(rule string) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.stopped[rule]
}

// Device is one client as the Devices page lists it.
type Device struct {
	Name     string      `json:"name"`
	Client   string      `json:"client"`
	Flows    int         `json:"flows"`
	First    time.Time   `json:"first"`
	Last     time.Time   `json:"last"`
	Parties  []string    `json:"parties"`
	Kinds    []flow.Kind `json:"kinds"`
	Stopped  int         `json:"stopped"`
	Cleartxt int         `json:"cleartext"`
	How      string      `json:"captured_by,omitempty"`
}

// devices groups the rows by device, after the devices the capture was set
// up for (listed even before they send anything).
func (x *index) devices(known []KnownDevice) []Device {
	x.mu.RLock()
	defer x.mu.RUnlock()
	by := map[string]*Device{}
	var order []string
	for _, k := range known {
		by[k.Name] = &Device{Name: k.Name, Client: k.Addr, How: k.How}
		order = append(order, k.Name)
	}
	for i := range x.rows {
		r := &x.rows[i]
		d := by[r.Device]
		if d == nil {
			host, _, _ := strings.Cut(r.Client, ":")
			d = &Device{Name: r.Device, Client: host}
			by[r.Device] = d
			order = append(order, r.Device)
		}
		if d.Flows == 0 {
			d.First = r.Time
		}
		d.Flows++
		d.Last = r.Time
		if !slices.Contains(d.Parties, r.Party) && len(d.Parties) < 50 {
			d.Parties = append(d.Parties, r.Party)
		}
		for _, k := range r.Kinds {
			if !slices.Contains(d.Kinds, k) {
				d.Kinds = append(d.Kinds, k)
			}
		}
		if r.Verdict == "block" || r.Verdict == "redact" {
			d.Stopped++
		}
		if r.Cleartext {
			d.Cleartxt++
		}
	}
	out := make([]Device, 0, len(order))
	for _, n := range order {
		out = append(out, *by[n])
	}
	return out
}

// MarkerGroup is what followed a marker: its flows up to the next marker,
// counted per party.
type MarkerGroup struct {
	Marker  Marker         `json:"marker"`
	Flows   int            `json:"flows"`
	Parties []PartyCount   `json:"parties"`
	First   []Row          `json:"first"` // the first few flows after it
	Kinds   map[string]int `json:"kinds"`
}

// PartyCount is one party's share of a marker's flows.
type PartyCount struct {
	Party string      `json:"party"`
	Flows int         `json:"flows"`
	Kinds []flow.Kind `json:"kinds"`
}

// groups puts the flows after each marker (oldest marker first) together.
func (x *index) groups(ms []Marker) []MarkerGroup {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b Marker) int { return a.Time.Compare(b.Time) })
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]MarkerGroup, len(ms))
	for i, m := range ms {
		g := MarkerGroup{Marker: m, Kinds: map[string]int{}}
		var to time.Time
		if i+1 < len(ms) {
			to = ms[i+1].Time
		}
		by := map[string]int{}
		// rows are in completion order, which long requests break: every
		// row is looked at (a few milliseconds for 100,000)
		for j := range x.rows {
			r := &x.rows[j]
			if r.Time.Before(m.Time) || !to.IsZero() && !r.Time.Before(to) {
				continue
			}
			g.Flows++
			if len(g.First) < 20 {
				g.First = append(g.First, *r)
			}
			k, ok := by[r.Party]
			if !ok {
				k = len(g.Parties)
				by[r.Party] = k
				g.Parties = append(g.Parties, PartyCount{Party: r.Party})
			}
			g.Parties[k].Flows++
			for _, kind := range r.Kinds {
				g.Kinds[string(kind)]++
				if !slices.Contains(g.Parties[k].Kinds, kind) {
					g.Parties[k].Kinds = append(g.Parties[k].Kinds, kind)
				}
			}
		}
		slices.SortStableFunc(g.Parties, func(a, b PartyCount) int { return b.Flows - a.Flows })
		out[i] = g
	}
	return out
}

// count is how many flows the index holds.
func (x *index) count() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.rows)
}
