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
	here := func(leaf string) string {
		return join(path, "xml:"+strings.Join(append(stack[:len(stack):len(stack)], leaf), "."))
	}
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
		switch x := tok.(type) {
		case xml.StartElement:
			elements++
			name := x.Name.Local
			if name == "plist" && len(stack) == 0 {
				if s.xmlPlist(d, path, depth) != nil || skipRest(d) != nil {
					return fail()
				}
				return true
			}
			for _, a := range x.Attr {
				if a.Value != "" {
					s.strIn(a.Value, here(name)+"@"+a.Name.Local, a.Name.Local, name, depth+1)
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
				s.strIn(v, here(name), name, parent(), depth+1)
			}
		}
	}
	if elements == 0 || len(stack) != 0 {
		return fail()
	}
	return true
}
