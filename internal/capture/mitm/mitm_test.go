package mitm

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"phonehome/internal/flow"
)

func TestTnetstring(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{"5:hello,", []byte("hello")},
		{"5:héll;", "héll"},
		{"2:42#", int64(42)},
		{"4:-1.5^", -1.5},
		{"4:true!", true},
		{"0:~", nil},
		{"0:]", []any(nil)},
	}
	for _, c := range cases {
		v, rest, err := parseValue([]byte(c.in), 0)
		if err != nil || len(rest) != 0 {
			t.Errorf("%q: %v rest %q", c.in, err, rest)
			continue
		}
		switch w := c.want.(type) {
		case []byte:
			if !bytes.Equal(v.([]byte), w) {
				t.Errorf("%q: %v", c.in, v)
			}
		case []any:
			if v.([]any) != nil {
				t.Errorf("%q: %v", c.in, v)
			}
		default:
			if v != c.want {
				t.Errorf("%q: got %#v want %#v", c.in, v, c.want)
			}
		}
	}
	v, _, err := parseValue([]byte("26:1:a,1:b;1:x,4:1:y,]1:n;0:~}"), 0)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	if string(m["a"].(string)) != "b" || len(m["x"].([]any)) != 1 || m["n"] != nil {
		t.Errorf("dict %#v", m)
	}
	for _, bad := range []string{"", "x", "5:abc,", "3:abc?", "2:ab#", "3:1:a}", "9999999999999:"} {
		if _, _, err := parseValue([]byte(bad), 0); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
	nested := "0:]"
	for i := 0; i < maxDepth+2; i++ {
		nested = itoa(len(nested)) + ":" + nested + "]"
	}
	if _, _, err := parseValue([]byte(nested), 0); err == nil {
		t.Error("deep nesting must be refused")
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	s := ""
	for n > 0 {
		s = string(rune('0'+n%10)) + s
		n /= 10
	}
	return s
}

func TestTruncatedFlowFile(t *testing.T) {
	data, err := os.ReadFile("../testdata/mitmdump-8.1.1.flows")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = Read(bytes.NewReader(data[:len(data)-100]), "cut.flows", Options{}, func(*flow.Flow) { n++ })
	var me *Error
	if !errors.As(err, &me) || me.Flow != 4 || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("want a truncation error at flow 4: %v", err)
	}
	if n != 3 {
		t.Errorf("the 3 whole flows before the cut must be emitted, got %d", n)
	}
}

func TestOldVersion(t *testing.T) {
	in := "14:7:version;1:6#}"
	err := Read(strings.NewReader(in), "old.flows", Options{}, func(*flow.Flow) {})
	if err == nil || !strings.Contains(err.Error(), "version 6") {
		t.Errorf("old version: %v", err)
	}
}

func FuzzTnetstring(f *testing.F) {
	data, err := os.ReadFile("../testdata/mitmdump-8.1.1.flows")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("26:1:a,1:b;1:x,4:1:y,]1:n;0:~}"))
	f.Add([]byte("0:}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = Read(bytes.NewReader(b), "fuzz.flows", Options{MaxBody: 16}, func(*flow.Flow) {})
	})
}

func BenchmarkRead(b *testing.B) {
	data, err := os.ReadFile("../testdata/mitmdump-8.1.1.flows")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := Read(bytes.NewReader(data), "bench.flows", Options{}, func(*flow.Flow) { n++ }); err != nil || n != 4 {
			b.Fatal(err, n)
		}
	}
}
