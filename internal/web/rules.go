package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"phonehome/internal/policy"
)

// Policy is the rules in force as the switches change them: the switches,
// newest first, in front of the command line's rules (the policy file, the
// flags, the presets). Every change builds a new engine and puts it in
// force with set (the pipeline's SetPolicy), from the next decision on. The
// last switch turned on wins over older ones and over the command line: an
// allow for a host a preset blocks lets it through.
type Policy struct {
	mu   sync.Mutex
	base []policy.Rule
	opts policy.Options
	set  func(policy.Policy)
	list []Switch // newest first
	next int64
}

// NewPolicy starts from the command line's policy (nil: no rules; an
// engine: its rules), built with opts; set puts a rule set in force.
func NewPolicy(base policy.Policy, opts policy.Options, set func(policy.Policy)) *Policy {
	p := &Policy{opts: opts, set: set}
	p.base = rulesOf(base)
	return p
}

func rulesOf(pol policy.Policy) []policy.Rule {
	if e, ok := pol.(*policy.Engine); ok && e != nil {
		return e.Rules()
	}
	return nil
}

// SetPolicy takes the command line's rules again (a policy file reloaded on
// SIGHUP) and puts them in force behind the switches.
func (p *Policy) SetPolicy(base policy.Policy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.base = rulesOf(base)
	p.apply()
}

// RuleSpec is a rule as the API takes it: an action (block, allow, redact,
// fake, passthrough) and the fields it matches on, all of which must match.
// redact and fake take the kinds to take out from Kind when the action
// names none.
type RuleSpec struct {
	Action   string `json:"action"`
	Host     string `json:"host,omitempty"`
	Owner    string `json:"owner,omitempty"`
	Category string `json:"category,omitempty"`
	Kind     string `json:"kind,omitempty"`
	Device   string `json:"device,omitempty"`
	Method   string `json:"method,omitempty"`
	Path     string `json:"path,omitempty"`
	Status   int    `json:"status,omitempty"`
}

// label is how verdicts name a switch's rule.
func (s RuleSpec) label() string {
	parts := []string{strings.ToLower(strings.TrimSpace(s.Action))}
	for _, f := range [][2]string{{"host", s.Host}, {"owner", s.Owner}, {"category", s.Category}, {"kind", s.Kind},
		{"device", s.Device}, {"method", s.Method}, {"path", s.Path}} {
		if f[1] != "" {
			parts = append(parts, f[0]+":"+f[1])
		}
	}
	return "ui: " + strings.Join(parts, " ")
}

// Switch is a rule added through the API.
type Switch struct {
	ID   int64    `json:"id"`
	Spec RuleSpec `json:"rule"`
	// Text is what verdicts of this rule name.
	Text string `json:"text"`
	// Stopped counts the flows it blocked or redacted since it was added.
	Stopped int `json:"stopped"`
	rule    policy.Rule
}

// parseSpec reads a rule with the policy file's reader (JSON is YAML), so
// a switch accepts exactly what a policy file accepts, minus list: files.
func parseSpec(s RuleSpec) (policy.Rule, error) {
	action := strings.ToLower(strings.TrimSpace(s.Action))
	if (action == "redact" || action == "fake") && s.Kind != "" {
		action += " " + s.Kind
	}
	item := map[string]any{"action": action, "name": s.label()}
	for k, v := range map[string]string{"host": s.Host, "owner": s.Owner, "category": s.Category, "kind": s.Kind,
		"device": s.Device, "method": s.Method, "path": s.Path} {
		if v = strings.TrimSpace(v); v != "" {
			item[k] = v
		}
	}
	if s.Status != 0 {
		item["status"] = s.Status
	}
	b, err := json.Marshal([]any{item})
	if err != nil {
		return policy.Rule{}, err
	}
	refuse := func(string) ([]byte, error) {
		return nil, errors.New("lists are not read through the web UI: name them in a policy file")
	}
	rules, err := policy.ParseFile("rule", b, refuse)
	if err != nil {
		return policy.Rule{}, err
	}
	if len(rules) != 1 {
		return policy.Rule{}, fmt.Errorf("give one rule")
	}
	return rules[0], nil
}

// add parses a rule and puts it in force.
func (w *Policy) add(s RuleSpec) (Switch, error) {
	r, err := parseSpec(s)
	if err != nil {
		return Switch{}, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	sw := Switch{ID: w.next, Spec: s, Text: r.Text, rule: r}
	w.list = append([]Switch{sw}, w.list...)
	w.apply()
	return sw, nil
}

// remove takes a switch's rule out of force; false when there was none.
func (w *Policy) remove(id int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, sw := range w.list {
		if sw.ID == id {
			w.list = append(w.list[:i:i], w.list[i+1:]...)
			w.apply()
			return true
		}
	}
	return false
}

// apply builds the engine of the switches and the base rules; w.mu is held.
func (w *Policy) apply() {
	rules := make([]policy.Rule, 0, len(w.list)+len(w.base))
	for _, sw := range w.list {
		rules = append(rules, sw.rule)
	}
	rules = append(rules, w.base...)
	if len(rules) == 0 {
		w.set(nil)
		return
	}
	w.set(policy.NewEngine(rules, w.opts))
}

// all lists the switches, newest first, and the command line's rules.
func (w *Policy) all() ([]Switch, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]Switch(nil), w.list...)
	base := make([]string, len(w.base))
	for i, r := range w.base {
		base[i] = r.Action.String() + " " + r.Text
	}
	return out, base
}
