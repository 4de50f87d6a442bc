package decode

import (
	"encoding/xml"
	"io"
	"strings"
)

// xml decodes an XML document into its leaves: element text by element name,
// attributes as name@attribute; an Apple property list (<plist>) by its <key>
// names (see plist.go). Each leaf is decoded further (base64, JSON, ...). It
// reports false, adding nothing, for text that is not well-formed XML.
//
// The parser allocates for every token; that is charged to the copy
// allowance, with the leaves' paths, and the walk stops where it runs out.
func (s *state) xml(t, path string, depth int) bool {
	mark, opaque := len(s.res.Values), len(s.res.Opaque)
	d := xml.NewDecoder(strings.NewReader(t))
	var stack []string
	var text strings.Builder
	elements := 0
	fail := func() bool {
		s.res.Values, s.res.Opaque = s.res.Values[:mark], s.res.Opaque[:opaque]
		return false
	}
	// here is the path of a leaf, "" when it does not fit the allowance.
	here := func(leaf string) string {
		n := len(path) + len(Sep) + len("xml:") + len(leaf)
		for _, e := range stack {
			n += len(e) + 1
		}
		if !s.spendAt(3*n+16*(len(stack)+1), path) { // the names' slice, their join, the path
			return ""
		}
		return join(path, "xml:"+strings.Join(append(stack[:len(stack):len(stack)], leaf), "."))
	}
	// stop ends the walk at a limit: what it found stands, if anything.
	stop := func() bool { return s.full || len(s.res.Values) > mark || fail() }
	parent := func() string {
		if len(stack) == 0 {
			return ""
		}
		return stack[len(stack)-1]
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil || len(stack) > 64 {
			return fail()
		}
		if s.full || !s.spendAt(tokenCost(tok), path) {
			return stop()
		}
		switch x := tok.(type) {
		case xml.StartElement:
			elements++
			name := x.Name.Local
			if name == "plist" && len(stack) == 0 {
				switch err := s.xmlPlist(d, path, depth); {
				case err == errStop:
					return stop()
				case err != nil || skipRest(d) != nil:
					return fail()
				}
				return true
			}
			for _, a := range x.Attr {
				if a.Value != "" {
					p := here(name)
					if p == "" {
						return stop()
					}
					s.strIn(a.Value, p+"@"+a.Name.Local, a.Name.Local, name, depth+1)
				}
			}
			stack = append(stack, name)
			text.Reset()
		case xml.CharData:
			text.Write(x)
		case xml.EndElement:
			if len(stack) == 0 {
				return fail()
			}
			name := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			v := strings.TrimSpace(text.String())
			text.Reset()
			if v != "" {
				p := here(name)
				if p == "" {
					return stop()
				}
				s.strIn(v, p, name, parent(), depth+1)
			}
		}
	}
	if elements == 0 || len(stack) != 0 {
		return fail()
	}
	return true
}

// What the XML parser allocates for a token beyond its bytes: the token, its
// names, and its place on the parser's stack. Measured on encoding/xml.
const (
	xmlElementCost = 160
	xmlAttrCost    = 64
)

// tokenCost is what reading tok cost the parser and costs the walk.
func tokenCost(tok xml.Token) int {
	switch x := tok.(type) {
	case xml.StartElement:
		n := xmlElementCost + len(x.Name.Local) + len(x.Name.Space)
		for _, a := range x.Attr {
			n += xmlAttrCost + len(a.Name.Local) + len(a.Name.Space) + len(a.Value)
		}
		return n
	case xml.EndElement:
		return xmlElementCost/2 + len(x.Name.Local) + len(x.Name.Space)
	case xml.CharData: // read, and written into the walk's text
		return 2 * len(x)
	case xml.Comment:
		return 2*len(x) + 32
	case xml.ProcInst:
		return 2*(len(x.Target)+len(x.Inst)) + 32
	case xml.Directive:
		return 2*len(x) + 32
	}
	return 32
}
