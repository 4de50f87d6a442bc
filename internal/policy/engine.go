package policy

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	"phonehome/internal/detect/trackers"
	"phonehome/internal/flow"
)

// Rule is one line of a policy: what it matches and what it does. Every
// field that is set must match (and within a field, any one value); a rule
// with no field set matches everything. Rules are built by ParseRule,
// ParseFile and Preset, which check them.
type Rule struct {
	Action flow.Action
	// Text is the rule as the user wrote it: what a verdict names.
	Text string
	// Status answers a blocked HTTP request (0: the engine's default).
	Status int

	hosts    hostSet
	lists    []namedList
	owners   []string // lower case
	cats     []string // lower case
	kinds    []flow.Kind
	devices  []netip.Prefix
	names    []string // device names (WireGuard peers, spoof targets), lower case
	methods  []string // upper case
	paths    []string // path.Match patterns or prefixes ending in '*'
	fromList string   // the preset or list the rule came from

	// with ActionRedact: the kinds taken out, or faked
	redact []flow.Kind
	fake   bool
}

type namedList struct {
	name string
	kb   *trackers.KB
}

// helloDecidable reports whether the rule can be judged from a TLS hello:
// what it reads is the host, a list, the device, or (with the tracker
// knowledge at hand) the owner and category the host is known by.
func (r *Rule) helloDecidable(known bool) bool {
	if len(r.kinds) > 0 || r.Action == flow.ActionRedact || len(r.methods) > 0 || len(r.paths) > 0 {
		return false
	}
	return known || (len(r.owners) == 0 && len(r.cats) == 0)
}

// needsFindings reports whether the rule reads what detection attaches.
func (r *Rule) needsFindings(known bool) bool {
	return len(r.kinds) > 0 || r.Action == flow.ActionRedact || (!known && (len(r.owners) > 0 || len(r.cats) > 0))
}

// Options configure an Engine.
type Options struct {
	// Known is the tracker knowledge owner: and category: rules look hosts
	// up in, so that they decide at the hello and at DNS without detection.
	// Nil: they read the destination detection attached (the request then
	// waits for detection).
	Known *trackers.KB
	// Status answers blocked HTTP requests whose rule names none (0: 403).
	Status int
	// RedactFallback is what happens to a request a redact rule matched but
	// whose values cannot all be taken out (a layer that cannot be
	// re-encoded, a body not captured whole): ActionBlock (the default) or
	// ActionAllow, forwarded unchanged with a note. Never a half-redacted
	// request.
	RedactFallback flow.Action
}

// Engine is a Policy made of rules, evaluated in their declared order: the
// first that matches decides; none matching allows. An Engine does not change
// once built: a new rule set is a new Engine, put in force with the
// pipeline's SetPolicy.
type Engine struct {
	rules      []Rule
	opts       Options
	needs      bool
	helloRules bool // some rule other than allow can apply at the hello
}

var _ Policy = (*Engine)(nil)

// NewEngine returns the policy of the rules, in order.
func NewEngine(rules []Rule, opts Options) *Engine {
	e := &Engine{rules: append([]Rule(nil), rules...), opts: opts}
	for i := range e.rules {
		r := &e.rules[i]
		if r.needsFindings(opts.Known != nil) {
			e.needs = true
		}
		if r.Action != flow.ActionAllow {
			e.helloRules = true
		}
	}
	return e
}

// Rules returns the rules in force, in order.
func (e *Engine) Rules() []Rule { return append([]Rule(nil), e.rules...) }

// subject is what a rule is matched against.
type subject struct {
	host   string // lower case, no trailing dot
	client netip.Addr
	device string     // the device's name, lower case; "" when it has none
	f      *flow.Flow // nil at the hello
	dest   *flow.Destination
}

// Hello decides on a TLS connection from its server name and client: block
// and passthrough rules that read only the host, a list or the device apply
// here. A rule that needs the request to decide (a path, a kind) and could
// match this host stops the walk: the connection is intercepted and each
// request decided on its own.
func (e *Engine) Hello(h flow.Hello) flow.Verdict {
	if !e.helloRules {
		return flow.Verdict{}
	}
	host := normHost(h.SNI)
	if host == "" && h.Server.Addr.IsValid() {
		host = h.Server.Addr.String()
	}
	s := subject{host: host, client: h.Client.Addr, device: strings.ToLower(h.Device)}
	known := e.opts.Known != nil
	for i := range e.rules {
		r := &e.rules[i]
		if !r.helloDecidable(known) {
			if e.couldMatch(r, &s) {
				return flow.Verdict{}
			}
			continue
		}
		if v, ok := e.match(r, &s); ok {
			if v.Action == flow.ActionAllow || v.Action == flow.ActionBlock || v.Action == flow.ActionPassthrough {
				return v
			}
			return flow.Verdict{} // decided per request
		}
	}
	return flow.Verdict{}
}

// bodyNeeded is what RequestBody asks for when a rule reads the body's
// findings: all of it (the source caps it at its own body limit).
const bodyNeeded = 1 << 30

// RequestBody asks for the body when a rule that reads what it carries
// (kind:, redact, fake) could match the request; otherwise the request is
// decided on its head and the body streams.
func (e *Engine) RequestBody(f *flow.Flow) int {
	if !e.needs {
		return 0
	}
	s := subject{host: requestHost(f), client: f.Client.Addr, device: strings.ToLower(f.Device)}
	for i := range e.rules {
		r := &e.rules[i]
		if (len(r.kinds) > 0 || r.Action == flow.ActionRedact) && e.couldMatch(r, &s) {
			return bodyNeeded
		}
	}
	return 0
}

func requestHost(f *flow.Flow) string {
	h := normHost(f.Host)
	if h == "" && f.Request != nil {
		h = normHost(hostOfURL(f.Request.URL))
	}
	if h == "" && f.Server.Addr.IsValid() {
		h = f.Server.Addr.String()
	}
	return h
}

// NeedsFindings reports whether some rule reads what detection finds (kinds,
// or owner and category without the tracker knowledge at hand).
func (e *Engine) NeedsFindings() bool { return e.needs }

// Request decides on a request or a DNS lookup.
func (e *Engine) Request(f *flow.Flow) (flow.Verdict, *flow.Request) {
	s := subject{host: requestHost(f), client: f.Client.Addr, device: strings.ToLower(f.Device), f: f}
	for i := range e.rules {
		r := &e.rules[i]
		v, ok := e.match(r, &s)
		if !ok {
			continue
		}
		switch v.Action {
		case flow.ActionPassthrough:
			// too late to leave the connection encrypted: forwarded as is
			v.Action = flow.ActionAllow
		case flow.ActionRedact:
			if f.Request == nil {
				continue // a lookup has nothing to redact
			}
			out, red, err := Redact(f, r.redact, r.fake)
			if err != nil {
				fb := flow.Verdict{Action: flow.ActionBlock, Rule: v.Rule, List: v.List, Status: e.opts.Status}
				if e.opts.RedactFallback == flow.ActionAllow {
					fb = flow.Verdict{}
					f.Notef(flow.NotePolicy, "%s could not redact this request (%v): forwarded unchanged", r.Text, err)
				} else {
					f.Notef(flow.NotePolicy, "%s could not redact this request (%v): blocked instead", r.Text, err)
				}
				return fb, nil
			}
			if len(red) == 0 {
				continue // none of its kinds is here: the next rule decides
			}
			v.Redactions = red
			return v, out
		}
		return v, nil
	}
	return flow.Verdict{}, nil
}

// couldMatch reports whether the parts of r judged at the hello match s.
func (e *Engine) couldMatch(r *Rule, s *subject) bool {
	if !r.hosts.empty() && !r.hosts.match(s.host) {
		return false
	}
	if !r.deviceMatch(s) {
		return false
	}
	return true
}

// match reports whether r matches s and, if so, its verdict.
func (e *Engine) match(r *Rule, s *subject) (flow.Verdict, bool) {
	v := flow.Verdict{Action: r.Action, Rule: r.Text, List: r.fromList}
	if r.Action == flow.ActionBlock {
		v.Status = r.Status
		if v.Status == 0 {
			v.Status = e.opts.Status
		}
	}
	if !r.deviceMatch(s) {
		return v, false
	}
	if !r.hosts.empty() && !r.hosts.match(s.host) {
		return v, false
	}
	if len(r.lists) > 0 {
		hit := false
		for _, l := range r.lists {
			if _, ok := l.kb.Lookup(s.host); ok && s.host != "" {
				hit = true
				if v.List == "" {
					v.List = l.name
				}
				break
			}
		}
		if !hit {
			return v, false
		}
	}
	if len(r.owners) > 0 || len(r.cats) > 0 {
		d := e.dest(s)
		if len(r.owners) > 0 && !anyFold(r.owners, d.Owner) {
			return v, false
		}
		if len(r.cats) > 0 && !anyFold(r.cats, d.Category) {
			return v, false
		}
		if v.List == "" {
			v.List = d.List
		}
	}
	if len(r.methods) > 0 || len(r.paths) > 0 {
		if s.f == nil || s.f.Request == nil {
			return v, false
		}
		if len(r.methods) > 0 && !anyFold(r.methods, s.f.Request.Method) {
			return v, false
		}
		if len(r.paths) > 0 && !matchPath(r.paths, flow.URLPath(s.f.Request.URL)) {
			return v, false
		}
	}
	if len(r.kinds) > 0 {
		if s.f == nil || !carries(s.f, r.kinds) {
			return v, false
		}
	}
	if r.Action == flow.ActionRedact && (s.f == nil || !carries(s.f, r.redact)) {
		return v, false
	}
	return v, true
}

// dest is who receives what s is about: what detection found, else what the
// tracker knowledge says of the host.
func (e *Engine) dest(s *subject) *flow.Destination {
	if s.dest != nil {
		return s.dest
	}
	d := &flow.Destination{}
	if s.f != nil && (s.f.Dest.Owner != "" || s.f.Dest.Category != "") {
		*d = s.f.Dest
	} else if e.opts.Known != nil && s.host != "" {
		if en, ok := e.opts.Known.Lookup(s.host); ok {
			d.Owner, d.Category, d.List = en.Owner, en.Category, en.List
		}
	}
	s.dest = d
	return d
}

func carries(f *flow.Flow, kinds []flow.Kind) bool {
	for _, x := range f.Findings {
		for _, k := range kinds {
			if x.Kind == k {
				return true
			}
		}
	}
	return false
}

// deviceMatch reports whether r's device conditions, if any, match s: an
// address or network matches the client's address, a name the device's name.
func (r *Rule) deviceMatch(s *subject) bool {
	if len(r.devices) == 0 && len(r.names) == 0 {
		return true
	}
	if anyPrefix(r.devices, s.client) {
		return true
	}
	return s.device != "" && slices.Contains(r.names, s.device)
}

func anyPrefix(ps []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func anyFold(want []string, got string) bool {
	if got == "" {
		return false
	}
	for _, w := range want {
		if strings.EqualFold(w, got) {
			return true
		}
	}
	return false
}

func matchPath(pats []string, p string) bool {
	for _, pat := range pats {
		if strings.HasSuffix(pat, "*") && !strings.ContainsAny(pat[:len(pat)-1], "*?[") {
			if strings.HasPrefix(p, pat[:len(pat)-1]) {
				return true
			}
			continue
		}
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
	}
	return false
}

// normHost lower-cases a host and drops a trailing dot and a port.
func normHost(h string) string {
	if h == "" {
		return ""
	}
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

func hostOfURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	if i := strings.IndexAny(u, "/?#"); i >= 0 {
		u = u[:i]
	}
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		u = u[i+1:]
	}
	return u
}

// hostSet matches host names: exactly, by suffix (a domain and all its
// subdomains, through a map walked label by label, not a scan), or by glob.
type hostSet struct {
	exact  map[string]struct{}
	suffix map[string]struct{} // "example.com" matches it and *.example.com
	subs   map[string]struct{} // "*.example.com": subdomains only
	globs  []string
}

func (h *hostSet) empty() bool {
	return len(h.exact) == 0 && len(h.suffix) == 0 && len(h.subs) == 0 && len(h.globs) == 0
}

func (h *hostSet) add(kind hostKind, p string) {
	m := func(mp *map[string]struct{}) {
		if *mp == nil {
			*mp = map[string]struct{}{}
		}
		(*mp)[p] = struct{}{}
	}
	switch kind {
	case hostExact:
		m(&h.exact)
	case hostSuffix:
		m(&h.suffix)
	case hostSubs:
		m(&h.subs)
	case hostGlob:
		h.globs = append(h.globs, p)
	}
}

func (h *hostSet) match(host string) bool {
	if host == "" {
		return false
	}
	if _, ok := h.exact[host]; ok {
		return true
	}
	if len(h.suffix) > 0 || len(h.subs) > 0 {
		if _, ok := h.suffix[host]; ok {
			return true
		}
		for i := strings.IndexByte(host, '.'); i >= 0; {
			parent := host[i+1:]
			if _, ok := h.suffix[parent]; ok {
				return true
			}
			if _, ok := h.subs[parent]; ok {
				return true
			}
			j := strings.IndexByte(parent, '.')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	for _, g := range h.globs {
		if ok, _ := path.Match(g, host); ok {
			return true
		}
	}
	return false
}

type hostKind uint8

const (
	hostExact hostKind = iota
	hostSuffix
	hostSubs
	hostGlob
)

// Warnings names the rules that can never match: those after a rule that
// matches everything, and repeats of an earlier rule.
func (e *Engine) Warnings() []string {
	var out []string
	for i := range e.rules {
		r := &e.rules[i]
		for j := 0; j < i; j++ {
			p := &e.rules[j]
			if p.matchesAll() {
				out = append(out, fmt.Sprintf("rule %q can never match: %q before it matches everything", r.Text, p.Text))
				break
			}
			if p.Text == r.Text && p.fromList == r.fromList {
				out = append(out, fmt.Sprintf("rule %q is given twice: the second can never match", r.Text))
				break
			}
		}
	}
	return out
}

// matchesAll reports whether the rule has no field that could fail.
func (r *Rule) matchesAll() bool {
	return r.hosts.empty() && len(r.lists) == 0 && len(r.owners) == 0 && len(r.cats) == 0 && len(r.kinds) == 0 &&
		len(r.devices) == 0 && len(r.names) == 0 && len(r.methods) == 0 && len(r.paths) == 0 && r.Action != flow.ActionRedact
}
