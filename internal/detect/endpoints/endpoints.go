// Package endpoints is what is known of trackers' endpoints: which field of
// which request carries which kind of personal data, and why it is known (a
// vendor's documentation, its SDK's source, observed values). It is data, not
// code: trackhar.json is TrackHAR's per-endpoint knowledge (tweaselORG/TrackHAR,
// CC0-1.0) transcribed by import-trackhar.mjs; own.json holds phonehome's own
// rows in the same form, each with its source.
//
// A field is named as TrackHAR names it, by the request part (query, body,
// header, cookie, path) and the keys through the decoded layers, with "*"
// for an array element ("1.*.16": field 16 of each element of protobuf
// field 1). A decoded value's path is turned into the same form, so one map
// lookup per value says whether the table knows its field.
package endpoints

import (
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"phonehome/internal/decode"
	"phonehome/internal/flow"
)

//go:embed trackhar.json own.json
var files embed.FS

// File is the form of trackhar.json and own.json.
type File struct {
	Source    string     `json:"source"`
	Licence   string     `json:"licence"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one endpoint (or family of endpoints with one format).
type Endpoint struct {
	Tracker     string   `json:"tracker"`
	Owner       string   `json:"owner"`
	Adapter     string   `json:"adapter"`
	Name        string   `json:"name"`
	URLs        []string `json:"urls"`         // scheme, host and path, without the query
	URLPatterns []string `json:"url_patterns"` // regular expressions over the same
	Decoding    []Step   `json:"decoding"`
	Fields      []Field  `json:"fields"`
	source      string
}

// Step is a decoding step as TrackHAR writes it: it says how its paths are
// named when they differ from the request's own keys.
type Step struct {
	Function string         `json:"function"`
	Input    string         `json:"input"`
	MapInput string         `json:"mapInput"`
	Output   string         `json:"output"`
	Options  map[string]any `json:"options"`
}

// Field is one field of an endpoint and the kind of data it carries.
type Field struct {
	Kind      flow.Kind `json:"kind"`
	Property  string    `json:"property"` // TrackHAR's name for what it carries
	Context   string    `json:"context"`
	Path      string    `json:"path"`
	Reasoning string    `json:"reasoning"`
	NotIf     any       `json:"not_if"` // a value that is not the data (a placeholder): string or {regex}
	OnlyIf    any       `json:"only_if"`
	notIf     func(string) bool
	onlyIf    func(string) bool
	why       string
}

// Why says in words where the knowledge of the field comes from.
func (f *Field) Why() string { return f.why }

// Accepts reports whether v is an instance of the field's data, not one of
// the placeholders the table names.
func (f *Field) Accepts(v string) bool {
	return (f.notIf == nil || !f.notIf(v)) && (f.onlyIf == nil || f.onlyIf(v))
}

// Table is the endpoint knowledge, ready for lookups. It is read-only after
// New and safe for concurrent use.
type Table struct {
	exact    map[string][]*compiled // "https://host/path" → endpoints
	patterns []patternEndpoint
	count    int

	mu    sync.RWMutex
	cache map[string]Match // URL key → what Lookup found
}

type compiled struct {
	ep     *Endpoint
	fields map[string]*Field // normalised path → field
	lasts  map[string]bool   // the fields' own names, lowercased: most values are tested by this alone
}

type patternEndpoint struct {
	re     *regexp.Regexp
	prefix string // a literal the URL must contain, to skip the expression cheaply
	c      *compiled
}

// Builtin returns the table built into phonehome.
func Builtin() (*Table, error) {
	t := &Table{exact: map[string][]*compiled{}}
	for _, name := range []string{"trackhar.json", "own.json"} {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		if err := t.Load(b, name); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Load adds the endpoints of a file in the form of trackhar.json.
func (t *Table) Load(b []byte, name string) error {
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("endpoint table %s: %w (it must be JSON as written by import-trackhar.mjs)", name, err)
	}
	source := "TrackHAR"
	if name != "trackhar.json" {
		source = "phonehome"
	}
	for i := range f.Endpoints {
		ep := &f.Endpoints[i]
		ep.source = source
		c := &compiled{ep: ep, fields: map[string]*Field{}, lasts: map[string]bool{}}
		aliases, vars := renames(ep.Decoding)
		for j := range ep.Fields {
			fd := &ep.Fields[j]
			// said once here: findings carry it, and there are many more of them
			fd.why = fmt.Sprintf("the endpoint table (%s: %s, %s) says %s.%s carries %s (%s)", source, ep.Tracker, ep.Name, fd.Context, fd.Path, fd.Property, fd.Reasoning)
			fd.notIf, fd.onlyIf = filter(fd.NotIf), filter(fd.OnlyIf)
			if fd.Path == "$" || strings.ContainsAny(fd.Path, "[]?@()") {
				continue // a whole part, or a filter expression: not a field
			}
			key := normalTable(resolve(fd.Context+"."+fd.Path, aliases, vars))
			if _, dup := c.fields[key]; !dup {
				c.fields[key] = fd
				t.count++
				c.lasts[strings.ToLower(key[strings.LastIndexByte(key, '.')+1:])] = true
			}
		}
		for _, u := range ep.URLs {
			if k, ok := urlKey(u); ok {
				t.exact[k] = append(t.exact[k], c)
			}
		}
		for _, p := range ep.URLPatterns {
			re, err := regexp.Compile(p)
			if err != nil {
				continue // a JavaScript expression Go's cannot read: the endpoint is matched by its other URLs
			}
			t.patterns = append(t.patterns, patternEndpoint{re: re, prefix: literalHost(p), c: c})
		}
	}
	return nil
}

// Fields is the number of fields the table knows.
func (t *Table) Fields() int { return t.count }

// Match is the endpoints a request's URL is one of; nil when none.
type Match []*compiled

// Lookup finds the endpoints of a request URL. A tracker's endpoints come
// back request after request, so what was found for a URL (without its
// query) is remembered: the next lookup is one map read.
func (t *Table) Lookup(rawURL string) Match {
	if t == nil {
		return nil
	}
	var buf [256]byte
	key, ok := appendURLKey(buf[:0], rawURL)
	if !ok {
		return nil
	}
	t.mu.RLock()
	m, hit := t.cache[string(key)]
	t.mu.RUnlock()
	if hit {
		return m
	}
	return t.find(string(key))
}

// find is Lookup of a URL key not remembered yet.
func (t *Table) find(key string) Match {
	var m Match
	m = append(m, t.exact[key]...)
	for _, p := range t.patterns {
		if strings.Contains(key, p.prefix) && p.re.MatchString(key) {
			m = append(m, p.c)
		}
	}
	t.mu.Lock()
	if t.cache == nil || len(t.cache) >= maxCached {
		t.cache = map[string]Match{}
	}
	t.cache[key] = m
	t.mu.Unlock()
	return m
}

// maxCached bounds the URLs remembered; past it the cache starts again.
const maxCached = 4096

// urlKey is what an endpoint is looked up by: scheme and host lowercased,
// no port, the path as sent, no query, no trailing slash.
func urlKey(raw string) (string, bool) {
	b, ok := appendURLKey(nil, raw)
	return string(b), ok
}

func appendURLKey(b []byte, raw string) ([]byte, bool) {
	i := strings.Index(raw, "://")
	if i <= 0 {
		return nil, false
	}
	for j := 0; j < i; j++ {
		b = append(b, lower(raw[j]))
	}
	b = append(b, "://"...)
	rest := raw[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host := rest[:end]
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		host = host[at+1:]
	}
	if c := strings.LastIndexByte(host, ':'); c >= 0 && !strings.Contains(host[c:], "]") {
		host = host[:c]
	}
	if host == "" {
		return nil, false
	}
	for j := 0; j < len(host); j++ {
		b = append(b, lower(host[j]))
	}
	path := rest[end:]
	if q := strings.IndexAny(path, "?#"); q >= 0 {
		path = path[:q]
	}
	b = append(b, path...)
	for len(b) > 0 && b[len(b)-1] == '/' {
		b = b[:len(b)-1]
	}
	return b, true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// Field finds what the matched endpoints know of a decoded value's field.
func (m Match) Field(v decode.Value) *Field {
	if len(m) == 0 {
		return nil
	}
	// the field's own name (of "1.16", of "events[2].id"), before the path
	name := v.Key
	if name == "" {
		name = v.Path[strings.LastIndexAny(v.Path, ":›")+1:]
	}
	for strings.HasSuffix(name, "]") {
		if i := strings.LastIndexByte(name, '['); i >= 0 {
			name = name[:i]
		} else {
			break
		}
	}
	name = name[strings.LastIndexByte(name, '.')+1:]
	var kb [64]byte
	if len(name) > len(kb) {
		return nil
	}
	last := kb[:len(name)]
	for i := 0; i < len(name); i++ {
		last[i] = lower(name[i])
	}
	known := false
	for _, c := range m {
		known = known || c.lasts[string(last)]
	}
	if !known {
		return nil
	}
	var buf [160]byte
	key := normalValue(buf[:0], v.Path)
	if key == nil {
		return nil
	}
	for _, c := range m {
		if f := c.fields[string(key)]; f != nil {
			return f
		}
	}
	return nil
}

// Endpoint names the first matched endpoint, for an explanation.
func (m Match) Endpoint() *Endpoint {
	if len(m) == 0 {
		return nil
	}
	return m[0].ep
}

// normalTable turns a table path into the lookup form: its segments joined by
// dots, array elements ("*") left out, header names lowercased.
func normalTable(p string) string {
	segs := strings.Split(p, ".")
	out := segs[:0]
	for _, s := range segs {
		if s == "*" || s == "" || s == "$" {
			continue
		}
		out = append(out, s)
	}
	if len(out) > 1 && (out[0] == "header") {
		out[1] = strings.ToLower(out[1])
	}
	return strings.Join(out, ".")
}

// normalValue writes a decode path in the lookup form into b: "body › form:p
// › base64 › gzip › json:env.model" → "body.p.env.model", "body › gzip ›
// protobuf:1.2[3].16" → "body.1.2.16". Layers that only transform (base64,
// gzip) add no segment; array indices are left out. nil when the path has no
// part of the request to start from.
func normalValue(b []byte, p string) []byte {
	first := true
	for p != "" {
		layer := p
		if i := strings.Index(p, decode.Sep); i >= 0 {
			layer, p = p[:i], p[i+len(decode.Sep):]
		} else {
			p = ""
		}
		name, rest, named := strings.Cut(layer, ":")
		if first {
			first = false
			switch {
			case layer == "body":
				b = append(b, "body"...)
			case strings.HasPrefix(layer, "path["):
				b = append(b, "path"...)
			case named && (name == "query" || name == "cookie"):
				b = append(append(append(b, name...), '.'), rest...)
			case named && name == "header":
				b = append(b, "header."...)
				for i := 0; i < len(rest); i++ {
					c := rest[i]
					if c >= 'A' && c <= 'Z' {
						c += 32
					}
					b = append(b, c)
				}
			default:
				return nil
			}
			continue
		}
		if !named {
			continue // base64, gzip, hex, ...: the same field, another encoding
		}
		if name == "jwt" {
			continue
		}
		b = append(b, '.')
		b = appendKeys(b, rest)
	}
	return b
}

// appendKeys appends "a.b[3].c" as "a.b.c".
func appendKeys(b []byte, k string) []byte {
	for i := 0; i < len(k); i++ {
		if k[i] == '[' {
			j := strings.IndexByte(k[i:], ']')
			if j < 0 {
				break
			}
			i += j
			continue
		}
		b = append(b, k[i])
	}
	return b
}

// renames reads the decoding steps for the names they give: an output that
// is not where its input was ("res.body.pdDecoded" from "res.body.pd"), and
// variables ("parsedBody") that later steps read.
func renames(steps []Step) (aliases map[string]string, vars map[string]string) {
	aliases, vars = map[string]string{}, map[string]string{}
	for _, s := range steps {
		in := s.Input
		if in == "" {
			in = s.MapInput
		}
		src := resolve(in, aliases, vars)
		if s.Function == "getProperty" {
			if p, _ := s.Options["path"].(string); p != "" && p != "$" {
				src += "." + strings.TrimPrefix(p, "$.")
			}
		}
		out := s.Output
		if o, ok := strings.CutPrefix(out, "res."); ok {
			if o != src {
				aliases[o] = src
			}
		} else if !isContext(out) {
			vars[out] = src
		}
	}
	return aliases, vars
}

// resolve names a path of the decoded request by the request's own keys.
func resolve(p string, aliases, vars map[string]string) string {
	p = strings.TrimPrefix(p, "res.")
	head, rest, _ := strings.Cut(p, ".")
	if v, ok := vars[head]; ok {
		p = v
		if rest != "" {
			p += "." + rest
		}
	}
	// the longest renamed prefix wins
	best := ""
	for a := range aliases {
		if (p == a || strings.HasPrefix(p, a+".")) && len(a) > len(best) {
			best = a
		}
	}
	if best != "" {
		p = aliases[best] + p[len(best):]
	}
	return p
}

func isContext(s string) bool {
	switch s {
	case "body", "query", "header", "cookie", "path":
		return true
	}
	return false
}

// filter makes a not_if or only_if test: a string is compared whole, a
// {regex} is matched. nil when there is none, or it cannot be read.
func filter(x any) func(string) bool {
	switch v := x.(type) {
	case string:
		return func(s string) bool { return s == v }
	case map[string]any:
		src, _ := v["regex"].(string)
		if flags, _ := v["flags"].(string); strings.Contains(flags, "i") {
			src = "(?i)" + src
		}
		re, err := regexp.Compile(src)
		if err != nil {
			return nil
		}
		return re.MatchString
	}
	return nil
}

// literalHost is the longest run of characters a URL pattern matches
// literally, outside groups and not quantified, for a cheap test before the
// expression runs ("" when there is none: the expression always runs).
func literalHost(p string) string {
	if i := strings.Index(p, `:\/\/`); i >= 0 { // the scheme is in every URL
		p = p[i+len(`:\/\/`):]
	}
	best, cur, depth := "", []byte{}, 0
	flush := func() {
		if len(cur) > len(best) {
			best = string(cur)
		}
		cur = cur[:0]
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			i++
			if n := p[i]; depth == 0 && strings.IndexByte(`/.-:?&=_`, n) >= 0 {
				cur = append(cur, n)
			} else {
				flush() // \d, \w: a class
			}
		case c == '(' || c == '[':
			flush()
			depth++
		case c == ')' || c == ']':
			depth--
		case c == '?' || c == '*' || c == '{':
			if len(cur) > 0 {
				cur = cur[:len(cur)-1] // the character before is optional
			}
			flush()
		case strings.IndexByte(`|^$+.`, c) >= 0:
			flush()
		case depth == 0:
			cur = append(cur, c)
		}
	}
	flush()
	return best
}
