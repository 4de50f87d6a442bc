package flow

// Finding is one piece of data a flow carries that a person would care about:
// what it is (Kind), the value, where in the decoded request it sat (Path) and how
// it was recognised.
type Finding struct {
	Kind       Kind
	Value      string // full value; text output masks it
	Path       string // decode path, e.g. "body › gzip › json:data › base64 › json:imei"
	Method     Method
	Confidence float64 // 0..1
	// Context marks a fingerprint finding (device model, app version, ...) in a
	// request that carries nothing identifying: kept on the flow, not reported.
	Context bool
}

// Kind is what a piece of data is, by the name machine-readable output uses
// ("imei", "android_id", "visited_url"). The kinds are declared where they are
// recognised (package pii; the opaque payload in package detect), so that flow
// needs none of them; "" is no kind.
type Kind string

// Method is how a finding was made. It is written as its name, the form
// JSON output and the store have always used.
type Method uint8

const (
	// MethodUnknown is the zero value: nobody said (a finding made by hand).
	// It is written as "".
	MethodUnknown Method = iota
	// MethodPattern: the value's shape, validated (Luhn, a parsed phone number).
	MethodPattern
	// MethodKey: the name of the field that holds it.
	MethodKey
	// MethodKnown: one of the values the person told phonehome, in some form.
	MethodKnown
	// MethodInference: what surrounds it (a list of package names, a payload
	// nobody can decode).
	MethodInference
	// MethodEndpoint: what is known of the endpoint: a table of which field
	// of which tracker's request carries which kind (TrackHAR's adapters).
	MethodEndpoint
	// MethodRecurrence: an identifier's shape, and the same value came back
	// unchanged in other requests of the device.
	MethodRecurrence
)

var methodNames = [...]string{"", "pattern", "key", "known", "inference", "endpoint", "recurrence"}

func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return ""
}

// ParseMethod is the inverse of String; unknown names give MethodUnknown.
func ParseMethod(s string) Method {
	for i, n := range methodNames {
		if n == s {
			return Method(i)
		}
	}
	return MethodUnknown
}

func (m Method) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func (m *Method) UnmarshalText(b []byte) error { *m = ParseMethod(string(b)); return nil }

// Destination is who receives a flow, as far as phonehome knows.
type Destination struct {
	Owner    string // the company
	Category string // advertising, analytics, telemetry, social, fingerprinting, content, cdn
	SDK      string
	List     string // the list that said so
	Site     string // registrable domain (eTLD+1)
	Party    Party
}

// Party says whether a destination belongs to whoever sent the request.
type Party string

const (
	// PartyUnknown: the first party (the app, the page) is not known.
	PartyUnknown Party = ""
	// PartyFirst: the app's or the page's own company.
	PartyFirst Party = "first"
	// PartyThird: someone else.
	PartyThird Party = "third"
)

// Action is what policy decided to do with a flow.
type Action uint8

const (
	// ActionAllow is the safe zero value, on purpose: phonehome observes
	// first, so a verdict nobody set forwards the flow unchanged.
	ActionAllow Action = iota
	// ActionBlock refuses: the connection is closed, the request answered by
	// phonehome (Verdict.Status), the lookup answered with no address.
	ActionBlock
	// ActionRedact forwards a copy of the request with values removed. Valid
	// only at Request.
	ActionRedact
	// ActionPassthrough relays a TLS connection without decrypting it. Valid
	// only at Hello.
	ActionPassthrough
)

var actionNames = [...]string{"allow", "block", "redact", "passthrough"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "allow"
}

// Stage names the points where a verdict is asked for.
type Stage uint8

const (
	// StageHello: a TLS ClientHello was read; no certificate is minted yet.
	StageHello Stage = iota
	// StageRequest: a request (or DNS query) was read; nothing went upstream yet.
	StageRequest
)

func (s Stage) String() string {
	if s == StageHello {
		return "hello"
	}
	return "request"
}

// ValidAt reports whether the action can apply at the stage.
func (a Action) ValidAt(s Stage) bool {
	switch a {
	case ActionAllow, ActionBlock:
		return true
	case ActionPassthrough:
		return s == StageHello
	case ActionRedact:
		return s == StageRequest
	}
	return false
}

// Redaction is one value taken out of a forwarded request.
type Redaction struct {
	Kind Kind   // the kind of data ("imei", "advertising_id", ...)
	Path string // where it sat, as findings name it
}

// Verdict is a policy decision together with the rule and list that made it.
// The zero value allows.
type Verdict struct {
	Action     Action
	Rule       string      // the rule that decided, as the user wrote it
	List       string      // the list the rule came from
	Status     int         // with ActionBlock on an HTTP request: the status to answer (0: 403)
	Redactions []Redaction // with ActionRedact: what the forwarded copy lacks
}

func (v Verdict) String() string {
	s := v.Action.String()
	if v.Rule != "" {
		s += " (" + v.Rule
		if v.List != "" {
			s += " from " + v.List
		}
		s += ")"
	}
	return s
}
