package capture

import (
	"context"

	"phonehome/internal/flow"
)

// Handler receives what a capture source observes. A capture source observes;
// the Handler decides. Live sources (the proxies, the DNS resolver) call every
// method, on the goroutine of the connection or query they serve; file
// readers call only Done. The pipeline is the Handler of every source.
//
// What the flow holds, and who may touch it, at each call:
//
//   - Hello: no flow exists yet; h is a copy. Nothing has been minted (a
//     CONNECT to a host passed through by name has already reached the
//     server, so that a closed port gets its 502 before the 200). Allow =
//     intercept (decrypt), ActionPassthrough = relay
//     untouched, ActionBlock = close the connection. Any other action is
//     taken as Allow.
//   - RequestBody: f holds the request head (method, URL, headers; the body
//     is empty); nothing was sent upstream. It returns how many bytes of the
//     body Request must see: 0, the usual answer, means decide on the head
//     and let the body stream. The source buffers at most that many bytes (and
//     at most its own body limit), for at most a few seconds.
//   - Request: f holds the head and, when RequestBody asked, the first bytes of
//     the body; nothing was sent upstream. The handler may set f.Findings,
//     f.Dest, f.App, f.Verdict and add notes; it must not change f.Request.
//     For ActionRedact it returns the request to send instead (a copy); for
//     ActionBlock the source answers the device itself (Verdict.Status, 403
//     when 0) and never contacts the server. Any other action is Allow.
//   - Done: exactly once per flow, also after errors, blocks and flows that
//     never got to Request (a refused handshake, a tunnel). Ownership passes:
//     the source never reads or writes f, or the buffers its bodies point to,
//     again. Done never blocks a live source; a file reader may be held up
//     (reading a file can wait, a device cannot).
//
// Hello, RequestBody and Request do no I/O and return quickly: they sit on
// the path between the device and the server.
type Handler interface {
	Hello(ctx context.Context, h flow.Hello) flow.Verdict
	RequestBody(f *flow.Flow) int
	Request(ctx context.Context, f *flow.Flow) (flow.Verdict, *flow.Request)
	Done(f *flow.Flow)
}

// Observer is a Handler that allows everything and hands each finished flow
// to the function: for sources whose flows nobody decides on (tests, tools
// that only record).
type Observer func(*flow.Flow)

func (Observer) Hello(context.Context, flow.Hello) flow.Verdict { return flow.Verdict{} }

func (Observer) RequestBody(*flow.Flow) int { return 0 }

func (Observer) Request(context.Context, *flow.Flow) (flow.Verdict, *flow.Request) {
	return flow.Verdict{}, nil
}

func (o Observer) Done(f *flow.Flow) { o(f) }
