// Package policy decides what happens to what a device sends: forward it,
// refuse it, or forward a copy with values removed. A Policy answers at the
// two points where a capture source stops to ask (a TLS hello, a request),
// without I/O, so it is tested without sockets. The pipeline holds the
// policy in force and swaps it at run time without a restart.
package policy

import (
	"phonehome/internal/flow"
)

// Policy decides. Its methods are called on the connection's goroutine
// between the device and the server: they do no I/O and return quickly. They
// may be called concurrently.
type Policy interface {
	// Hello decides on a TLS connection before anything is minted: Allow
	// intercepts, ActionPassthrough relays it untouched, ActionBlock closes it.
	Hello(h flow.Hello) flow.Verdict
	// RequestBody says how many bytes of the body of the request f (its head
	// only) the policy needs to see to decide; 0 decides on the head.
	RequestBody(f *flow.Flow) int
	// NeedsFindings reports whether Request reads f.Findings: the pipeline then
	// runs detection before asking, on the request's path.
	NeedsFindings() bool
	// Request decides on a request. For ActionRedact it returns the copy to
	// forward; it never changes f.Request.
	Request(f *flow.Flow) (flow.Verdict, *flow.Request)
}

// AllowAll is the policy that forwards everything unchanged: phonehome
// observes first.
type AllowAll struct{}

func (AllowAll) Hello(flow.Hello) flow.Verdict { return flow.Verdict{} }

func (AllowAll) RequestBody(*flow.Flow) int { return 0 }

func (AllowAll) NeedsFindings() bool { return false }

func (AllowAll) Request(*flow.Flow) (flow.Verdict, *flow.Request) { return flow.Verdict{}, nil }

// CopyRequest returns a deep copy of r: what a policy changes to redact.
func CopyRequest(r *flow.Request) *flow.Request {
	if r == nil {
		return nil
	}
	out := *r
	out.Headers = append(flow.Headers(nil), r.Headers...)
	out.Trailers = append(flow.Headers(nil), r.Trailers...)
	out.Body.Data = append([]byte(nil), r.Body.Data...)
	return &out
}
