// Package detect says what a flow carries and who receives it: it decodes the
// request (package decode), finds personal data in it (package pii), names the
// destination (package trackers) and the app that sent it, and attaches the
// results to the flow. It works on one flow at a time, so the offline reader and
// the live proxy share it.
//
// Contract: Inspect reads the observed request and only writes the flow's
// Findings, Dest, App and Notes. It is safe for concurrent use.
package detect

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"phonehome/internal/decode"
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
}

type findingKey struct {
	kind        flow.Kind
	value, path string
}

// Engine inspects flows.
type Engine struct {
	kb      *trackers.KB
	pii     *pii.Detector
	limits  decode.Limits
	workers sync.Pool // of *worker: their memory is reused across flows
}

// New returns an engine with a knowledge base, a detector and decoding limits.
func New(kb *trackers.KB, d *pii.Detector, lim decode.Limits) *Engine {
	return &Engine{kb: kb, pii: d, limits: lim}
}

// Inspect attaches destination, app and findings to f.
func (e *Engine) Inspect(f *flow.Flow) {
	host := f.HostOrAddr()
	if entry, ok := e.kb.Lookup(host); ok {
		f.Dest = flow.Destination{Owner: entry.Owner, Category: entry.Category, SDK: entry.SDK, List: entry.List}
	}
	f.Dest.Site = trackers.Site(host)
	r := f.Request
	if r == nil {
		return
	}
	req := decode.FromFlow(r)
	wk, _ := e.workers.Get().(*worker)
	if wk == nil {
		wk = &worker{seen: map[findingKey]struct{}{}}
	}
	defer e.workers.Put(wk)
	res := wk.dec.Decode(req, e.limits) // valid until dec is used again: hits copy what they keep
	for _, l := range res.Limits {
		f.Note(flow.NoteDecodeLimit, "decode: "+l)
	}
	wk.hits = e.pii.ScanAppend(wk.hits, res.Values)
	hits := wk.hits

	f.App = r.Headers.Get("X-Requested-With")
	for _, h := range hits {
		if h.Kind == pii.SenderApp && f.App == "" {
			f.App = h.Value
		}
	}
	f.Dest.Party = e.party(f)

	identifying := false
	for _, h := range hits {
		if !pii.Fingerprint(h.Kind) {
			identifying = true
			break
		}
	}
	f.Findings = slices.Grow(f.Findings, len(hits))
	clear(wk.seen)
	for _, h := range hits {
		k := findingKey{h.Kind, h.Value, h.Path}
		if _, dup := wk.seen[k]; dup {
			continue
		}
		wk.seen[k] = struct{}{}
		f.Findings = append(f.Findings, flow.Finding{Kind: h.Kind, Value: h.Value, Path: h.Path, Method: h.Method,
			Confidence: h.Confidence, Context: !identifying && pii.Fingerprint(h.Kind)})
	}
	for _, o := range res.Opaque {
		f.Findings = append(f.Findings, flow.Finding{Kind: OpaquePayload, Value: fmt.Sprintf("%d bytes, %.1f bits/byte", o.Size, o.Entropy),
			Path: o.Path, Method: flow.MethodInference, Confidence: 0.6})
	}
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
