// Package detect says what a flow carries and who receives it: it decodes the
// request (package decode), finds personal data in it (package pii), names the
// destination (package trackers) and the app that sent it, and attaches the
// results to the flow. It works on one flow at a time, so the offline reader and
// the live proxy share it.
//
// Contract: Inspect (and InspectWith) reads the observed request and only
// writes the flow's Findings, Dest, App and Notes. It is safe for concurrent
// use.
//
// The request is decoded once per call, into a decoder kept in a pool;
// InspectWith lends the decoded values to a later stage (the summary) for the
// length of a callback, so that it reads the same tree instead of decoding the
// body again, and no tree is allocated per flow.
package detect

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"phonehome/internal/decode"
	"phonehome/internal/detect/endpoints"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/flow"
)

// OpaquePayload is the kind of the finding that flags a payload phonehome could
// not decode and that looks encrypted: something is sent that nobody can check.
const OpaquePayload flow.Kind = "opaque_payload"

// worker is what one Inspect call uses, kept for the next.
type worker struct {
	dec  decode.Decoder
	hits []pii.Hit
	seen map[findingKey]struct{}
	// between Prepare and Finish: what the request decoded into, and whether
	// anything identifying was found in it
	res         decode.Result
	identifying bool
}

type findingKey struct {
	kind        flow.Kind
	value, path string
}

// Engine inspects flows.
type Engine struct {
	// Earlier, if set before the first flow, is told of a finding of an
	// earlier flow that only a later one revealed: the first request of a
	// value that came back (first is a copy without bodies, with the
	// earlier flow's Source and Seq). It is called on the goroutine that
	// inspects the later flow.
	Earlier func(first *flow.Flow, x flow.Finding)

	kb      *trackers.KB
	ep      *endpoints.Table // nil: no endpoint knowledge
	pii     *pii.Detector
	limits  decode.Limits
	workers sync.Pool // of *worker: their memory is reused across flows
	seen    recurrence
}

// New returns an engine with a knowledge base, a detector and decoding
// limits, and the endpoint table built into phonehome.
func New(kb *trackers.KB, d *pii.Detector, lim decode.Limits) *Engine {
	ep, err := endpoints.Builtin()
	if err != nil {
		ep = nil // the built-in table is tested to load; without it, detection still works
	}
	return &Engine{kb: kb, pii: d, limits: lim, ep: ep}
}

// Inspect attaches destination, app and findings to f.
func (e *Engine) Inspect(f *flow.Flow) { e.Finish(e.Prepare(f), nil) }

// InspectWith is Inspect that also hands the decoded request to use, on the
// caller's goroutine, once, after f's destination, app and findings are set:
// vals are the values decoded from f.Request (nil when f has no request).
// vals belongs to the engine's pooled decoder and is reused once use returns:
// use may keep the strings in it, never the slice, and changes nothing in it.
// A nil use is Inspect.
func (e *Engine) InspectWith(f *flow.Flow, use func(f *flow.Flow, vals []decode.Value)) {
	e.Finish(e.Prepare(f), use)
}

// Prepared is a flow decoded and searched, waiting for the part of detection
// that depends on the flows before it: what came back, what changed.
type Prepared struct {
	f  *flow.Flow
	wk *worker // nil when f has no request
}

// Flow is the flow being inspected.
func (p *Prepared) Flow() *flow.Flow { return p.f }

// Prepare is the first part of Inspect: destination, decoding, the
// recognisers and the endpoint table. It depends on no other flow, so several
// goroutines may prepare flows at once; each Prepared holds a decoder until
// Finish.
func (e *Engine) Prepare(f *flow.Flow) *Prepared {
	e.destination(f)
	if f.Request == nil {
		return &Prepared{f: f}
	}
	wk := e.worker()
	e.prepare(f, wk)
	return &Prepared{f: f, wk: wk}
}

// Finish is the rest of Inspect, as InspectWith's use is called: evidence
// across flows, then the findings. Flows must be finished in the order they
// are to be learned from (the order they were sent), each once.
func (e *Engine) Finish(p *Prepared, use func(f *flow.Flow, vals []decode.Value)) {
	if p.wk == nil {
		if use != nil {
			use(p.f, nil)
		}
		return
	}
	defer func() { // after use: nobody else has the decoder meanwhile
		p.wk.res = decode.Result{}
		e.workers.Put(p.wk)
	}()
	vals := e.finish(p.f, p.wk)
	if use != nil {
		use(p.f, vals)
	}
}

// worker takes a worker from the pool, or makes one.
func (e *Engine) worker() *worker {
	if wk, _ := e.workers.Get().(*worker); wk != nil {
		return wk
	}
	return &worker{seen: map[findingKey]struct{}{}}
}

// destination names who receives f, by its host.
func (e *Engine) destination(f *flow.Flow) {
	host := f.HostOrAddr()
	if entry, ok := e.kb.Lookup(host); ok {
		f.Dest = flow.Destination{Owner: entry.Owner, Category: entry.Category, SDK: entry.SDK, List: entry.List}
	}
	f.Dest.Site = trackers.Site(host)
}

// prepare decodes f.Request with wk's decoder, finds what the values and the
// endpoint table say, and attaches the app and the party.
func (e *Engine) prepare(f *flow.Flow, wk *worker) {
	r := f.Request
	res := wk.dec.Decode(decode.FromFlow(r), e.limits)
	wk.res = res
	for _, l := range res.Limits {
		f.Note(flow.NoteDecodeLimit, "decode: "+l)
	}
	wk.hits = e.pii.ScanAppend(wk.hits, res.Values)
	if m := e.ep.Lookup(r.URL); m != nil {
		wk.hits = endpointHits(m, res.Values, wk.hits)
	}
	hits := wk.hits

	onBehalf(f, hits)
	// The app: the header Android's WebView sets, else the app an SDK names
	// as its host, else the one a system service reports for.
	f.App = r.Headers.Get("X-Requested-With")
	for _, want := range []flow.Kind{pii.HostApp, pii.SenderApp} {
		for _, h := range hits {
			if h.Kind == want && f.App == "" {
				f.App = h.Value
			}
		}
	}
	f.Dest.Party = e.party(f)

	identifying := false
	for _, h := range hits {
		if !pii.Fingerprint(h.Kind) && h.Kind != pii.HostApp {
			identifying = true
			break
		}
	}
	wk.identifying = identifying
}

// finish adds the evidence across flows and attaches the findings. It
// returns the decoded values, valid until wk's decoder is used again (the
// findings copy what they keep).
func (e *Engine) finish(f *flow.Flow, wk *worker) []decode.Value {
	res, identifying := wk.res, wk.identifying
	hits := e.seen.comeBack(f, res.Values, wk.hits, e.Earlier)
	wk.hits = hits
	// What a device announces to the whole local network is not a tracker's
	// fingerprint: its name and model are told to everyone there.
	identifying = identifying || f.Transport == flow.TransportLAN
	if !identifying {
		for _, h := range hits {
			identifying = identifying || h.Method == flow.MethodRecurrence
		}
	}
	f.Findings = slices.Grow(f.Findings, len(hits))
	clear(wk.seen)
	for _, h := range hits {
		if h.Kind == pii.HostApp {
			continue // whose flow this is, not data about the person
		}
		if pii.Recurrent(h) && !e.seen.keep(e.fieldOf(f, h), h.Value) {
			continue // changes from one request to the next: a nonce or a per-request digest
		}
		k := findingKey{h.Kind, h.Value, h.Path}
		if _, dup := wk.seen[k]; dup {
			continue
		}
		wk.seen[k] = struct{}{}
		f.Findings = append(f.Findings, flow.Finding{Kind: h.Kind, Value: h.Value, Path: h.Path, Method: h.Method,
			Confidence: h.Confidence, Context: !identifying && pii.Fingerprint(h.Kind)})
	}
	// An unreadable payload is no claim that personal data was sent: it is a
	// note (the report says "an encrypted blob went to X"). The finding stays
	// on the flow as context only, so that a rule on kind:opaque_payload
	// still matches; nothing reports it as data.
	for _, o := range res.Opaque {
		if strings.HasPrefix(o.Path, "header:") {
			continue // a token or a key in a header is a credential, not a payload sent
		}
		f.Findings = append(f.Findings, flow.Finding{Kind: OpaquePayload, Value: fmt.Sprintf("%d bytes, %.1f bits/byte", o.Size, o.Entropy),
			Path: o.Path, Method: flow.MethodInference, Confidence: 0.6, Context: true})
	}
	if n, ok := opaqueNote(f); ok && !f.Notes.Has(flow.NoteOpaque) {
		f.Notes = append(f.Notes, n)
	}
	return res.Values
}

// endpointHits adds what the endpoint table knows of the request's fields:
// a field it names whose value nothing else recognised is reported as the
// kind the table says it carries. The table adds evidence, it does not
// overrule: where the field's name or the value's shape already said what a
// value is (often more precisely: TrackHAR calls an Android ID a
// developer-scoped ID), that stands. Halves of a pair (a latitude, a screen
// width) are reported together.
func endpointHits(m endpoints.Match, vals []decode.Value, hits []pii.Hit) []pii.Hit {
	var halves map[flow.Kind][]pii.Hit
	known := len(hits) // the hits before the table's: a field of theirs is decided
	for i := range vals {
		v := &vals[i]
		fd := m.Field(*v)
		if fd == nil || !fd.Accepts(v.Text) || !pii.Plausible(fd.Kind, v.Text, v.Numeric) || hitAt(hits[:known], v.Path) {
			continue
		}
		h := pii.Hit{Kind: fd.Kind, Value: strings.TrimSpace(v.Text), Path: v.Path, Method: flow.MethodEndpoint, Confidence: 0.85, Why: fd.Why()}
		switch fd.Kind {
		case pii.Location, pii.ScreenSize:
			if halves == nil {
				halves = map[flow.Kind][]pii.Hit{}
			}
			halves[fd.Kind] = append(halves[fd.Kind], h)
			continue
		}
		hits = append(hits, h)
	}
	for _, kind := range []flow.Kind{pii.Location, pii.ScreenSize} {
		if hs := halves[kind]; len(hs) == 2 {
			// latitude before longitude, width before height
			first, second := hs[0], hs[1]
			if strings.Contains(first.Why, "carries longitude") || strings.Contains(first.Why, "carries screenHeight") {
				first, second = second, first
			}
			sep := ","
			if kind == pii.ScreenSize {
				sep = "x"
			}
			first.Value += sep + second.Value
			hits = append(hits, first)
		}
	}
	return hits
}

// onBehalf finds the app a system service reports for. A request to the
// phone maker's own service (its owner is the manufacturer the request
// names), sent by no app (neither the User-Agent nor X-Requested-With names
// one), that describes an app in an object of its own ("appInfo":
// {"packageName": ...}) is the system's, about that app: the app it reports
// for is sender_app, not the flow's host app. An SDK inside an app names
// its host app too, but its request is sent to the SDK's owner, or by the app.
func onBehalf(f *flow.Flow, hits []pii.Hit) {
	owner := f.Dest.Owner
	if owner == "" || f.Request.Headers.Get("X-Requested-With") != "" {
		return
	}
	maker := false
	for i := range hits {
		h := &hits[i]
		if h.Kind == pii.SenderApp && strings.HasPrefix(h.Path, "header:User-Agent") {
			return // the User-Agent names the sending app
		}
		maker = maker || h.Kind == pii.Manufacturer && strings.EqualFold(h.Value, owner)
	}
	if !maker {
		return
	}
	for i := range hits {
		h := &hits[i]
		if h.Kind == pii.HostApp && strings.Contains(strings.ToLower(parentOf(h.Path)), "app") {
			h.Kind, h.Why = pii.SenderApp, "an app described in its own object of a request the phone maker's system sends to its own service: the app it reports for"
		}
	}
}

// parentOf is the name of the object around a decoded value's field:
// "appInfo" of "body › json:appInfo.packageName".
func parentOf(path string) string {
	if i := strings.LastIndex(path, " › "); i >= 0 {
		path = path[i+len(" › "):]
	}
	_, keys, ok := strings.Cut(path, ":")
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(keys, '.')
	if i < 0 {
		return ""
	}
	keys = keys[:i]
	if j := strings.LastIndexAny(keys, ".]"); j >= 0 {
		keys = keys[j+1:]
	}
	return keys
}

// hitAt reports whether a hit sits at path: a handful of hits per request,
// fewer compares than a map costs to build.
func hitAt(hits []pii.Hit, path string) bool {
	for i := range hits {
		if hits[i].Path == path {
			return true
		}
	}
	return false
}

// OpaqueNote is the note a flow with an unreadable payload carries, made
// from its opaque_payload finding, for a reader of a flow stored without its
// notes; ok is false when the flow has no such payload or the note already.
func OpaqueNote(f *flow.Flow) (flow.Note, bool) {
	if f.Notes.Has(flow.NoteOpaque) {
		return flow.Note{}, false
	}
	return opaqueNote(f)
}

func opaqueNote(f *flow.Flow) (flow.Note, bool) {
	var parts []string
	for _, x := range f.Findings {
		if x.Kind == OpaquePayload {
			parts = append(parts, x.Value+" at "+x.Path)
		}
	}
	if parts == nil {
		return flow.Note{}, false
	}
	return flow.Note{Code: flow.NoteOpaque, Text: strings.Join(parts, "; ")}, true
}

// party decides whether the destination belongs to whoever sent the request:
// the app (its package's domain or owner), or the page (Origin, Referer).
func (e *Engine) party(f *flow.Flow) flow.Party {
	if f.App != "" {
		parts := strings.Split(f.App, ".")
		if len(parts) >= 2 {
			appSite := trackers.Site(parts[1] + "." + parts[0])
			if appSite == f.Dest.Site {
				return flow.PartyFirst
			}
			owner := e.kb.PackageOwner(f.App)
			if owner == "" {
				if entry, ok := e.kb.Lookup(appSite); ok {
					owner = entry.Owner
				}
			}
			if owner != "" && f.Dest.Owner != "" {
				if owner == f.Dest.Owner {
					return flow.PartyFirst
				}
				return flow.PartyThird
			}
		}
	}
	for _, h := range []string{"Origin", "Referer"} {
		if v := f.Request.Headers.Get(h); v != "" {
			if u, err := url.Parse(v); err == nil && u.Host != "" {
				if trackers.Site(u.Hostname()) == f.Dest.Site {
					return flow.PartyFirst
				}
				return flow.PartyThird
			}
		}
	}
	return flow.PartyUnknown
}

// Reported returns the findings a person should see: all but context-only fingerprints.
func Reported(f *flow.Flow) []flow.Finding {
	var out []flow.Finding
	for _, x := range f.Findings {
		if !x.Context {
			out = append(out, x)
		}
	}
	return out
}
