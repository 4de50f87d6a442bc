package record

import (
	"encoding/json"
	"reflect"
	"testing"

	"phonehome/internal/flow"
)

func FuzzUnpackFindings(f *testing.F) {
	f.Add(PackFindings([]flow.Finding{{Kind: "imei", Value: "1", Path: "q", Method: flow.MethodKey, Confidence: 1}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := UnpackFindings(b)
		if err != nil {
			return
		}
		again, err := UnpackFindings(PackFindings(fs))
		if err != nil || !reflect.DeepEqual(again, fs) {
			t.Errorf("%x: %+v read back as %+v (%v)", b, fs, again, err)
		}
	})
}

// The fast header reader agrees with encoding/json wherever it answers.
func FuzzParseHeaders(f *testing.F) {
	for _, s := range []string{`[]`, `[["Host","x"],["User-Agent","a b"]]`, `[["a","\"q\""]]`, `[["a","b"],]`, `[["a"]]`, `[["a","b"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := ParseHeadersFast(s)
		if !ok {
			return
		}
		var pairs [][2]string
		if err := json.Unmarshal([]byte(s), &pairs); err != nil {
			t.Fatalf("%q: fast reader accepted what JSON rejects: %v", s, err)
		}
		if len(pairs) != len(fast) {
			t.Fatalf("%q: %d headers, JSON has %d", s, len(fast), len(pairs))
		}
		for i, p := range pairs {
			if fast[i].Name != p[0] || fast[i].Value != p[1] {
				t.Fatalf("%q: header %d is %q, JSON says %q", s, i, fast[i], p)
			}
		}
	})
}

// Headers are written as encoding/json writes them, byte for byte.
func FuzzHeadersJSON(f *testing.F) {
	for _, s := range []string{"Host", "a b", `"q"`, "a\x00b", "<&>", "é", "\xff", "\u2028"} {
		f.Add(s, "value "+s)
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		h := flow.Headers{{Name: name, Value: value}, {Name: "X", Value: value}}
		pairs := [][2]string{{name, value}, {"X", value}}
		want, _ := json.Marshal(pairs)
		if got := HeadersJSON(h); got != string(want) {
			t.Fatalf("%q %q: %s, encoding/json writes %s", name, value, got, want)
		}
	})
}
