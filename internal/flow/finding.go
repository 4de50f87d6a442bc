package flow

// Finding is one piece of data a flow carries that a person would care about:
// what it is (Kind), the value, where in the decoded request it sat (Path) and how
// it was recognised.
type Finding struct {
	Kind       string  // "imei", "android_id", "visited_url", ...
	Value      string  // full value; text output masks it
	Path       string  // decode path, e.g. "body › gzip › json:data › base64 › json:imei"
	Method     string  // "pattern", "key", "known", "inference"
	Confidence float64 // 0..1
	// Context marks a fingerprint finding (device model, app version, ...) in a
	// request that carries nothing identifying: kept on the flow, not reported.
	Context bool
}

// Destination is who receives a flow, as far as phonehome knows.
type Destination struct {
	Owner    string // the company
	Category string // advertising, analytics, telemetry, social, fingerprinting, content, cdn
	SDK      string
	List     string // the list that said so
	Site     string // registrable domain (eTLD+1)
	Party    string // "first", "third", or "" when the first party is unknown
}

// Action is what policy decided to do with a flow.
type Action uint8

const (
	// ActionAllow is the safe zero value: forward unchanged.
	ActionAllow Action = iota
	// ActionBlock refuses the request.
	ActionBlock
	// ActionRedact forwards a copy with matched values removed.
	ActionRedact
	// ActionPassthrough relays the connection without decrypting it.
	ActionPassthrough
)

var actionNames = [...]string{"allow", "block", "redact", "passthrough"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "allow"
}

// Verdict is a policy decision together with the rule and list that made it.
type Verdict struct {
	Action Action
	Rule   string
	List   string
}
