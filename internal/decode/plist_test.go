package decode

import (
	"encoding/base64"
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

// The fixtures are written by Python's plistlib (testdata/plists.py): one
// property list, binary and XML.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBinaryPlist(t *testing.T) {
	r := Decode(Request{URL: "https://t.example/", Headers: []Header{{"Content-Type", "application/x-plist"}}, Body: fixture(t, "device.bplist")}, Limits{})
	for path, want := range map[string]Value{
		"body › bplist:idfa":                       {Key: "idfa", Text: "6D92078A-8246-4BA4-AE5B-76104861E7DC"},
		"body › bplist:apps[2]":                    {Key: "apps", Text: "com.burbn.instagram"},
		"body › bplist:device.model":               {Key: "model", Parent: "device", Text: "iPhone14,2"},
		"body › bplist:device.name":                {Key: "name", Parent: "device", Text: "Zoë’s iPhone"}, // UTF-16 in the file
		"body › bplist:device.screen[1]":           {Key: "screen", Parent: "device", Text: "2532", Numeric: true},
		"body › bplist:location.lat":               {Key: "lat", Parent: "location", Text: "52.5200066", Numeric: true},
		"body › bplist:first_seen":                 {Key: "first_seen", Text: "2026-11-18T09:30:00Z"},
		"body › bplist:session":                    {Key: "session", Text: "1731916800123", Numeric: true},
		"body › bplist:negative":                   {Key: "negative", Text: "-42", Numeric: true},
		"body › bplist:big":                        {Key: "big", Text: "18446744073709551615", Numeric: true}, // a 16-byte integer
		"body › bplist:opted_out":                  {Key: "opted_out", Text: "false"},
		"body › bplist:limit_ad_tracking":          {Key: "limit_ad_tracking", Text: "true"},
		"body › bplist:ref":                        {Key: "ref", Text: "7", Numeric: true},
		"body › bplist:payload › json:email":       {Key: "email", Parent: "payload", Text: "zoe@example.com"},
		"body › bplist:nested › bplist:account_id": {Key: "account_id", Text: "6120847731"},
	} {
		got := find(t, r, path)
		want.Path = path
		if got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", path, got, want)
		}
	}
	if len(r.Opaque) != 0 || len(r.Limits) != 0 {
		t.Errorf("opaque %v limits %v", r.Opaque, r.Limits)
	}
}

// TestPlistFormatsAgree: the XML and the binary form of one list give the
// same values under the same keys.
func TestPlistFormatsAgree(t *testing.T) {
	bin := Decode(Request{URL: "https://t.example/", Body: fixture(t, "device.bplist")}, Limits{})
	xml := Decode(Request{URL: "https://t.example/", Body: fixture(t, "device.plist")}, Limits{})
	fromXML := map[string]Value{}
	for _, v := range xml.Values {
		fromXML[v.Path] = v
	}
	n := 0
	for _, v := range bin.Values {
		if v.Path == "path[0]" || v.Key == "ref" {
			continue // the URL; UIDs exist only in binary lists
		}
		v.Path = strings.Replace(v.Path, "bplist:", "plist:", 1)
		if got, ok := fromXML[v.Path]; !ok || got != v {
			t.Errorf("binary %+v, XML %+v", v, got)
		}
		n++
	}
	if n != len(xml.Values) || n < 15 {
		t.Errorf("binary list gave %d values, XML %d", n, len(xml.Values))
	}
}

func TestPlistInsideOtherLayers(t *testing.T) {
	blob := base64.StdEncoding.EncodeToString(fixture(t, "device.bplist"))
	r := Decode(Request{URL: "https://t.example/?d=" + strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(blob),
		Body: []byte(`{"blob":"` + blob + `"}`)}, Limits{})
	find(t, r, "query:d › base64 › bplist:idfa")
	find(t, r, "body › json:blob › base64 › bplist:device.model")
	r = Decode(Request{URL: "https://t.example/", Headers: []Header{{"Content-Encoding", "gzip"}}, Body: gz(fixture(t, "device.bplist"))}, Limits{})
	find(t, r, "body › gzip › bplist:location.lng")
}

// bplistOf assembles a binary property list from encoded objects whose
// references and offsets are one byte.
func bplistOf(top int, objects ...[]byte) []byte {
	b := []byte("bplist00")
	var offsets []byte
	for _, o := range objects {
		offsets = append(offsets, byte(len(b)))
		b = append(b, o...)
	}
	table := len(b)
	b = append(b, offsets...)
	trailer := make([]byte, 32)
	trailer[6], trailer[7] = 1, 1
	binary.BigEndian.PutUint64(trailer[8:], uint64(len(objects)))
	binary.BigEndian.PutUint64(trailer[16:], uint64(top))
	binary.BigEndian.PutUint64(trailer[24:], uint64(table))
	return append(b, trailer...)
}

// TestHostileBplist: cycles, references out of range, shared objects
// multiplied and truncated lists end the walk; nothing hangs or panics, and
// a list that is not well formed adds no value from inside it.
func TestHostileBplist(t *testing.T) {
	// 30 arrays each holding the next one twice: 2^30 leaves if walked naively.
	var doubling [][]byte
	for i := 1; i <= 30; i++ {
		doubling = append(doubling, []byte{0xA2, byte(i), byte(i)})
	}
	doubling = append(doubling, []byte("Qx"))
	good := fixture(t, "device.bplist")
	for name, c := range map[string]struct {
		b     []byte
		limit bool
	}{
		"cycle":            {b: bplistOf(0, []byte{0xA1, 0x00})},
		"dict cycle":       {b: bplistOf(0, []byte{0xD1, 0x01, 0x00}, []byte("Qk"))},
		"ref out of range": {b: bplistOf(0, []byte{0xA1, 0x05})},
		"key not a string": {b: bplistOf(0, []byte{0xD1, 0x01, 0x02}, []byte{0x10, 0x01}, []byte("Qx"))},
		"count past end":   {b: bplistOf(0, []byte{0x5F, 0x10, 0xFF, 'a'})},
		"unknown marker":   {b: bplistOf(0, []byte{0x70})},
		"truncated":        {b: good[:len(good)-9]},
		"trailer only":     {b: good[len(good)-40:]},
		"shared objects":   {b: bplistOf(0, doubling...), limit: true},
	} {
		r := Decode(Request{URL: "https://t.example/", Body: c.b}, Limits{MaxValues: 1000})
		inside := 0
		for _, v := range r.Values {
			if strings.Contains(v.Path, "bplist:") {
				inside++
			}
		}
		switch {
		case c.limit && (len(r.Limits) == 0 || !strings.Contains(r.Limits[0], "shared objects")):
			t.Errorf("%s: want a limit, got %v", name, r.Limits)
		case c.limit && inside == 0:
			t.Errorf("%s: what was walked before the limit is kept", name)
		case !c.limit && inside != 0:
			t.Errorf("%s: values from a malformed list: %+v", name, r.Values)
		}
	}
}

func TestXMLPlistShapes(t *testing.T) {
	for _, c := range []struct{ in, path, text string }{
		{`<plist><array><string>a</string><dict><key>k</key><true/></dict></array></plist>`, "body › plist:[1].k", "true"},
		{`<plist version="1.0"><string>cGF5bG9hZA==</string></plist>`, "body › plist › base64", "payload"},
		{"<plist><dict><key>d</key><data>\n\teyJp\n\tIjoxfQ==\n</data></dict></plist>", "body › plist:d › json:i", "1"},
	} {
		r := Decode(Request{URL: "https://t.example/", Body: []byte(c.in)}, Limits{})
		if got := find(t, r, c.path); got.Text != c.text {
			t.Errorf("%s: %s = %q, want %q", c.in, c.path, got.Text, c.text)
		}
	}
	// not a property list after all: kept as text
	for _, in := range []string{
		`<plist><dict><string>no key</string></dict></plist>`,
		`<plist><dict><key>k</key><blob>x</blob></dict></plist>`,
		`<plist><key>k</key></plist>`,
		`<plist><string>a</string></plist><more/>`,
	} {
		r := Decode(Request{URL: "https://t.example/", Body: []byte(in)}, Limits{})
		if len(r.Values) != 1 || r.Values[0].Path != "body" || r.Values[0].Text != in {
			t.Errorf("%s: %+v", in, r.Values)
		}
	}
}

func FuzzBplist(f *testing.F) {
	f.Add(fixture(f, "device.bplist"))
	f.Add(bplistOf(0, []byte{0xA2, 0x01, 0x01}, []byte{0xD1, 0x02, 0x03}, []byte("Qk"), []byte{0x41, 0x00}))
	f.Add(bplistOf(0, []byte{0x6F, 0x10, 0x02, 0x00, 'a', 0x00, 'b'}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := Bytes("body", b, Limits{MaxDecoded: 1 << 20, MaxValues: 1000})
		if len(r.Values) > 1000 {
			t.Fatal("value limit not honoured")
		}
	})
}

func BenchmarkBplist(b *testing.B) {
	body := fixture(b, "device.bplist")
	var d Decoder
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if r := d.Decode(Request{URL: "https://t.example/", Body: body}, Limits{}); len(r.Values) < 15 {
			b.Fatal(len(r.Values))
		}
	}
}
