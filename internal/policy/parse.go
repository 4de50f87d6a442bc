package policy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"phonehome/internal/detect"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/flow"
)

// RuleError is a rule phonehome cannot use: where it is, what is wrong and
// what to write instead.
type RuleError struct {
	File    string // the policy file, "" for a flag
	Line    int    // 1-based line in File, 0 for a flag
	Text    string // the rule or value as written
	Problem string
	Instead string // what to write instead
	Err     error  // the cause, when there is one (a list that cannot be read)
}

func (e *RuleError) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	}
	if e.Text != "" {
		fmt.Fprintf(&b, "%q: ", e.Text)
	}
	b.WriteString(e.Problem)
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.Instead != "" {
		b.WriteString("; write " + e.Instead)
	}
	return b.String()
}

func (e *RuleError) Unwrap() error { return e.Err }

// Loader reads the files list: rules name. Nil reads them from disk.
type Loader func(name string) ([]byte, error)

// ParseAction reads an action as a policy file writes it: allow, block,
// passthrough, "redact KIND..." or "fake KIND...". The rule gets the action
// (and the kinds to redact or fake).
func (r *Rule) parseAction(s string) error {
	f := strings.Fields(strings.ToLower(s))
	if len(f) == 0 {
		return &RuleError{Text: s, Problem: "no action", Instead: "allow, block, passthrough, redact KIND or fake KIND"}
	}
	switch f[0] {
	case "allow", "block", "passthrough":
		if len(f) > 1 {
			return &RuleError{Text: s, Problem: f[0] + " takes no kinds", Instead: f[0] + ", and kind: to match requests carrying a kind"}
		}
		r.Action = map[string]flow.Action{"allow": flow.ActionAllow, "block": flow.ActionBlock, "passthrough": flow.ActionPassthrough}[f[0]]
		return nil
	case "redact", "fake":
		if len(f) == 1 {
			return &RuleError{Text: s, Problem: f[0] + " needs the kinds of data to take out", Instead: f[0] + " imei android_id"}
		}
		kinds, err := parseKinds(f[1:])
		if err != nil {
			return err
		}
		r.Action, r.redact, r.fake = flow.ActionRedact, kinds, f[0] == "fake"
		return nil
	}
	return &RuleError{Text: s, Problem: "unknown action", Instead: "allow, block, passthrough, redact KIND or fake KIND"}
}

// ParseAction reads an action that takes no kinds: allow, block or
// passthrough.
func ParseAction(s string) (flow.Action, error) {
	var r Rule
	if err := r.parseAction(s); err != nil {
		return 0, err
	}
	if r.Action == flow.ActionRedact {
		return 0, &RuleError{Text: s, Problem: "redact and fake take kinds", Instead: "a policy file rule \"action: redact imei\", or --redact imei"}
	}
	return r.Action, nil
}

func parseKinds(names []string) ([]flow.Kind, error) {
	var kinds []flow.Kind
	for _, n := range names {
		for _, x := range strings.Split(n, ",") {
			if x == "" {
				continue
			}
			k := flow.Kind(strings.ToLower(strings.TrimSpace(x)))
			if !knownKind(k) {
				return nil, &RuleError{Text: x, Problem: "unknown kind of data",
					Instead: "a kind phonehome reports, such as imei, advertising_id, location"}
			}
			kinds = append(kinds, k)
		}
	}
	return kinds, nil
}

// RedactRule is the rule of --redact (fake false) or --fake: take the kinds
// out of every request that carries them, or replace them with fakes.
func RedactRule(kinds []string, fake bool) (Rule, error) {
	ks, err := parseKinds(kinds)
	if err != nil {
		return Rule{}, err
	}
	verb := "redact"
	if fake {
		verb = "fake"
	}
	return Rule{Action: flow.ActionRedact, Text: verb + " " + strings.Join(kinds, ","), redact: ks, fake: fake}, nil
}

// ParseRule reads one pattern of --block (or another action's flag): a host
// ("tracker.example" exactly, ".example.com" for it and its subdomains,
// "*.example.com" for its subdomains, a glob such as "ads?.example.*"),
// owner:NAME, category:NAME, list:FILE, kind:KIND, device:ADDR or CIDR,
// method:METHOD or path:PATTERN.
func ParseRule(action flow.Action, pattern string, load Loader) (Rule, error) {
	r := Rule{Action: action, Text: pattern}
	if err := r.addPattern(pattern, load); err != nil {
		return Rule{}, err
	}
	if err := r.check(); err != nil {
		return Rule{}, err
	}
	return r, nil
}

// addPattern adds one "field:value" (or a host) to r.
func (r *Rule) addPattern(p string, load Loader) error {
	p = strings.TrimSpace(p)
	field, value, ok := strings.Cut(p, ":")
	if ok {
		switch strings.ToLower(field) {
		case "host":
			return r.addHost(value)
		case "owner", "category", "list", "kind", "device", "method", "path":
			return r.add(strings.ToLower(field), value, load)
		}
		// "[::1]" or "host:port" are not patterns either
		if _, err := netip.ParseAddr(p); err != nil {
			return &RuleError{Text: p, Problem: "unknown field " + strconv.Quote(field),
				Instead: "a host pattern, or one of owner:, category:, list:, kind:, device:, method:, path:"}
		}
	}
	return r.addHost(p)
}

func (r *Rule) add(field, value string, load Loader) error {
	value = strings.TrimSpace(value)
	if value == "" {
		return &RuleError{Text: field + ":", Problem: "no " + field + " given", Instead: example[field]}
	}
	switch field {
	case "host":
		return r.addHost(value)
	case "owner":
		r.owners = append(r.owners, strings.ToLower(value))
	case "category":
		c := strings.ToLower(value)
		if !knownCategory[c] {
			return &RuleError{Text: "category:" + value, Problem: "unknown category",
				Instead: "one of advertising, analytics, telemetry, social, fingerprinting, content, cdn"}
		}
		r.cats = append(r.cats, c)
	case "list":
		kb, err := loadList(value, load)
		if err != nil {
			return err
		}
		r.lists = append(r.lists, namedList{name: filepath.Base(value), kb: kb})
	case "kind":
		k := flow.Kind(strings.ToLower(value))
		if !knownKind(k) {
			return &RuleError{Text: "kind:" + value, Problem: "unknown kind of data",
				Instead: "a kind phonehome reports, such as kind:imei, kind:advertising_id, kind:location"}
		}
		r.kinds = append(r.kinds, k)
	case "device":
		pf, err := netip.ParsePrefix(value)
		if err != nil {
			a, aerr := netip.ParseAddr(value)
			if aerr != nil {
				if !flow.ValidDeviceName(value) {
					return &RuleError{Text: "device:" + value, Problem: "not an address, a network or a device name",
						Instead: "device:192.168.1.23, device:192.168.1.0/24 or a device's name such as device:alice-phone"}
				}
				r.names = append(r.names, strings.ToLower(value))
				break
			}
			pf = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		r.devices = append(r.devices, pf.Masked())
	case "method":
		m := strings.ToUpper(value)
		for _, c := range m {
			if c < 'A' || c > 'Z' {
				return &RuleError{Text: "method:" + value, Problem: "not an HTTP method", Instead: "method:POST"}
			}
		}
		r.methods = append(r.methods, m)
	case "path":
		if !strings.HasPrefix(value, "/") {
			return &RuleError{Text: "path:" + value, Problem: "a path starts with /", Instead: "path:/" + strings.TrimLeft(value, "*") + " or path:/track/*"}
		}
		if _, err := path.Match(value, "/"); err != nil {
			return &RuleError{Text: "path:" + value, Problem: "bad pattern", Err: err, Instead: "path:/track/* (* is any text, ? one character)"}
		}
		r.paths = append(r.paths, value)
	}
	return nil
}

var example = map[string]string{
	"host": "tracker.example, .example.com or *.example.com", "owner": "owner:Xiaomi", "category": "category:advertising",
	"list": "list:easyprivacy.txt", "kind": "kind:imei", "device": "device:192.168.1.23", "method": "method:POST", "path": "path:/track/*",
}

var knownCategory = map[string]bool{"advertising": true, "analytics": true, "telemetry": true, "social": true,
	"fingerprinting": true, "content": true, "cdn": true}

func knownKind(k flow.Kind) bool {
	if k == detect.OpaquePayload {
		return true
	}
	for _, x := range pii.Kinds {
		if x == k {
			return true
		}
	}
	return false
}

func (r *Rule) addHost(p string) error {
	p = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(p), "."))
	bad := func(problem string) error {
		return &RuleError{Text: p, Problem: problem, Instead: example["host"]}
	}
	switch {
	case p == "" || p == "*" || p == "*." || p == ".":
		return bad("matches every host")
	case strings.ContainsAny(p, "/ \t"):
		return bad("not a host pattern")
	case strings.HasPrefix(p, "*.") && !strings.ContainsAny(p[2:], "*?["):
		r.hosts.add(hostSubs, p[2:])
	case strings.HasPrefix(p, ".") && !strings.ContainsAny(p[1:], "*?["):
		r.hosts.add(hostSuffix, p[1:])
	case strings.ContainsAny(p, "*?["):
		if _, err := path.Match(p, "x"); err != nil {
			return &RuleError{Text: p, Problem: "bad glob", Err: err, Instead: example["host"]}
		}
		r.hosts.add(hostGlob, p)
	default:
		r.hosts.add(hostExact, p)
	}
	return nil
}

// check refuses rules whose action cannot apply to what they match.
func (r *Rule) check() error {
	if r.Action == flow.ActionPassthrough && !r.helloDecidable(true) {
		return &RuleError{Text: r.Text, Problem: "passthrough is decided before anything is decrypted, so it cannot read a method, path or kind",
			Instead: "passthrough with host:, list:, owner:, category: or device: only"}
	}
	if r.Status != 0 && (r.Status < 200 || r.Status > 599) {
		return &RuleError{Text: strconv.Itoa(r.Status), Problem: "not an HTTP status", Instead: "a status such as 403 or 451"}
	}
	return nil
}

// loadList reads a tracker list in any format phonehome imports.
func loadList(name string, load Loader) (*trackers.KB, error) {
	if load == nil {
		load = os.ReadFile
	}
	b, err := load(name)
	if err != nil {
		return nil, &RuleError{Text: "list:" + name, Problem: "cannot read the list", Err: err,
			Instead: "the path of a hosts file, domain list, Adblock list or Disconnect/DuckDuckGo/Exodus JSON"}
	}
	kb := trackers.New()
	if _, err := kb.Load(bytes.NewReader(b), filepath.Base(name)); err != nil {
		return nil, &RuleError{Text: "list:" + name, Problem: "not a tracker list phonehome reads", Err: err,
			Instead: "a hosts file, domain list, Adblock list or Disconnect/DuckDuckGo/Exodus JSON"}
	}
	return kb, nil
}

// fileRule is one rule of a policy file.
type fileRule struct {
	Action   string    `yaml:"action"`
	Host     stringsYS `yaml:"host"`
	Owner    stringsYS `yaml:"owner"`
	Category stringsYS `yaml:"category"`
	List     stringsYS `yaml:"list"`
	Kind     stringsYS `yaml:"kind"`
	Device   stringsYS `yaml:"device"`
	Method   stringsYS `yaml:"method"`
	Path     stringsYS `yaml:"path"`
	Status   int       `yaml:"status"`
	Name     string    `yaml:"name"`
}

// stringsYS is a YAML field written as one string or a list of them.
type stringsYS []string

func (s *stringsYS) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = []string{n.Value}
		return nil
	case yaml.SequenceNode:
		var out []string
		if err := n.Decode(&out); err != nil {
			return err
		}
		*s = out
		return nil
	}
	return fmt.Errorf("line %d: write a value or a list of values", n.Line)
}

// ParseFile reads a policy file: a YAML list of rules, each an action
// (allow, block, passthrough, "redact KIND...", "fake KIND...") and the fields it matches on, all of which must
// match (a field given a list matches any of its values). The rules may sit
// under a top-level "rules:" key:
//
//	rules:
//	  - action: block
//	    host: ["*.doubleclick.net", ".app-measurement.com"]
//	  - action: block
//	    owner: Xiaomi
//	    device: 192.168.1.23
//	    status: 451
//	  - action: passthrough
//	    host: .bank.example
//	  - action: fake imei advertising_id
//	    category: analytics
//
// Relative list: paths are read from the file's directory. A rule phonehome
// cannot use is a *RuleError naming the file and line.
func ParseFile(name string, b []byte, load Loader) ([]Rule, error) {
	if load == nil {
		load = os.ReadFile
	}
	dir := filepath.Dir(name)
	rel := func(p string) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return load(p)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, &RuleError{File: name, Line: yamlLine(err), Problem: "not YAML", Err: err,
			Instead: "a list of rules such as \"- action: block\\n  host: .tracker.example\""}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.MappingNode {
		var seq *yaml.Node
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "rules" {
				seq = root.Content[i+1]
			} else {
				return nil, &RuleError{File: name, Line: root.Content[i].Line, Text: root.Content[i].Value,
					Problem: "unknown key", Instead: "rules: followed by a list of rules"}
			}
		}
		if seq == nil {
			return nil, nil
		}
		root = seq
	}
	if root.Kind != yaml.SequenceNode {
		return nil, &RuleError{File: name, Line: root.Line, Problem: "not a list of rules",
			Instead: "one rule per item: \"- action: block\\n  host: .tracker.example\""}
	}
	var rules []Rule
	for _, n := range root.Content {
		r, err := fileRuleOf(n, rel)
		if err != nil {
			var re *RuleError
			if errors.As(err, &re) {
				re.File = name
				if re.Line == 0 {
					re.Line = n.Line
				}
				return nil, re
			}
			return nil, &RuleError{File: name, Line: n.Line, Problem: "bad rule", Err: err}
		}
		r.Text = fmt.Sprintf("%s:%d", filepath.Base(name), n.Line)
		var x fileRule
		_ = n.Decode(&x)
		if x.Name != "" {
			r.Text = x.Name
		}
		rules = append(rules, r)
	}
	return rules, nil
}

var fileFields = map[string]bool{"action": true, "host": true, "owner": true, "category": true, "list": true,
	"kind": true, "device": true, "method": true, "path": true, "status": true, "name": true}

func fileRuleOf(n *yaml.Node, load Loader) (Rule, error) {
	if n.Kind != yaml.MappingNode {
		return Rule{}, &RuleError{Line: n.Line, Problem: "a rule is a set of fields", Instead: "\"- action: block\" and the fields it matches on"}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !fileFields[k.Value] {
			return Rule{}, &RuleError{Line: k.Line, Text: k.Value, Problem: "unknown field",
				Instead: "one of action, host, owner, category, list, kind, device, method, path, status, name"}
		}
	}
	var x fileRule
	if err := n.Decode(&x); err != nil {
		return Rule{}, &RuleError{Line: n.Line, Problem: "bad rule", Err: err}
	}
	if x.Action == "" {
		return Rule{}, &RuleError{Line: n.Line, Problem: "no action", Instead: "action: allow, block or passthrough"}
	}
	r := Rule{Status: x.Status}
	if err := r.parseAction(x.Action); err != nil {
		var re *RuleError
		if errors.As(err, &re) {
			re.Line = fieldLine(n, "action")
		}
		return Rule{}, err
	}
	a := r.Action
	for _, f := range []struct {
		name string
		vals []string
	}{{"host", x.Host}, {"owner", x.Owner}, {"category", x.Category}, {"list", x.List}, {"kind", x.Kind},
		{"device", x.Device}, {"method", x.Method}, {"path", x.Path}} {
		for _, v := range f.vals {
			if err := r.add(f.name, v, load); err != nil {
				var re *RuleError
				if errors.As(err, &re) {
					re.Line = fieldLine(n, f.name)
				}
				return Rule{}, err
			}
		}
	}
	if x.Status != 0 && a != flow.ActionBlock {
		return Rule{}, &RuleError{Line: fieldLine(n, "status"), Problem: "status applies to block only", Instead: "action: block, or no status"}
	}
	if err := r.check(); err != nil {
		var re *RuleError
		if errors.As(err, &re) {
			re.Line = n.Line
		}
		return Rule{}, err
	}
	return r, nil
}

func fieldLine(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

// yamlLine finds the line a YAML error names ("yaml: line 3: ...").
func yamlLine(err error) int {
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		j := i + 5
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(s[i+5 : j])
		return n
	}
	return 0
}
