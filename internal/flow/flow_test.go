package flow

import "testing"

func TestURLPath(t *testing.T) {
	for in, want := range map[string]string{
		"https://h.example/a/b?q=1#f": "/a/b",
		"https://h.example":           "/",
		"https://h.example?x":         "/",
		"/track/v1?imei=1":            "/track/v1",
		"":                            "",
	} {
		if got := URLPath(in); got != want {
			t.Errorf("URLPath(%q) = %q, want %q", in, got, want)
		}
	}
}
