package web

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"phonehome/internal/decode"
	"phonehome/internal/detect"
	"phonehome/internal/flow"
)

// Node is one layer of a request's decode tree: "body", "form:data",
// "base64", "gzip", "json:[3].imei". A leaf carries the value; a node where
// something was found carries the finding and why.
type Node struct {
	Label    string  `json:"label"`
	Path     string  `json:"path"`
	Value    string  `json:"value,omitempty"`
	Found    []Found `json:"found,omitempty"`
	Holds    bool    `json:"holds_finding,omitempty"` // a finding sits here or below
	Children []*Node `json:"children,omitempty"`
}

// Found is a finding at a node, and why it was found.
type Found struct {
	Kind flow.Kind `json:"kind"`
	Why  string    `json:"why"`
}

// treeLeaves bounds the leaves a page shows; findings are always shown.
const treeLeaves = 2000

// why says how a finding was made, for a person: detection's words for its
// evidence, among vals (the request's decoded values), and its confidence.
func why(x flow.Finding, vals []decode.Value) string {
	s := fmt.Sprintf("%s (confidence %.0f%%)", detect.Why(x, vals), x.Confidence*100)
	if x.Context {
		s += " (context only, not reported)"
	}
	return s
}

// decodeTree decodes f's request again (the store keeps findings, not the
// tree) and hangs every finding at its path.
func decodeTree(f *flow.Flow) []*Node {
	root := &Node{}
	byPath := map[string]*Node{}
	add := func(path string) *Node {
		if n := byPath[path]; n != nil {
			return n
		}
		cur := root
		parts := strings.Split(path, decode.Sep)
		for i := range parts {
			p := strings.Join(parts[:i+1], decode.Sep)
			n := byPath[p]
			if n == nil {
				n = &Node{Label: parts[i], Path: p}
				byPath[p] = n
				cur.Children = append(cur.Children, n)
			}
			cur = n
		}
		return cur
	}
	var vals []decode.Value
	if f.Request != nil {
		res := decode.Decode(decode.FromFlow(f.Request), decode.Limits{MaxValues: treeLeaves})
		vals = res.Values
		for _, v := range res.Values {
			add(v.Path).Value = clip(v.Text, 512)
		}
		for _, o := range res.Opaque {
			add(o.Path).Value = fmt.Sprintf("(%d bytes that could not be decoded, %.1f bits of entropy per byte)", o.Size, o.Entropy)
		}
	}
	for _, x := range f.Findings {
		if x.Path == "" {
			continue
		}
		n := add(x.Path)
		n.Found = append(n.Found, Found{Kind: x.Kind, Why: why(x, vals)})
		if n.Value == "" {
			n.Value = clip(x.Value, 512)
		}
		parts := strings.Split(x.Path, decode.Sep)
		for i := range parts {
			byPath[strings.Join(parts[:i+1], decode.Sep)].Holds = true
		}
	}
	return root.Children
}

// clip cuts s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// bodyText is a body as the flow page shows it: text up to 64 KiB, or a
// note that it is binary.
func bodyText(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	shown := b[:min(len(b), 64<<10)]
	if len(shown) < len(b) { // cut at the limit: drop a rune cut in two
		for i := 0; i < utf8.UTFMax-1 && len(shown) > 0 && !utf8.Valid(shown); i++ {
			shown = shown[:len(shown)-1]
		}
	}
	if !utf8.Valid(shown) {
		return fmt.Sprintf("(%d bytes of binary data; the decode tree shows what was read from them)", len(b))
	}
	s := string(shown)
	if len(shown) < len(b) {
		s += fmt.Sprintf("\n… (%d more bytes)", len(b)-len(shown))
	}
	return s
}
