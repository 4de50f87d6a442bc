package trackers

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuiltin(t *testing.T) {
	kb := Builtin()
	cases := map[string]string{ // host → owner/category/matched domain
		"tracking.intl.miui.com":          "Xiaomi/telemetry/tracking.intl.miui.com",
		"us.micardapi.micloud.xiaomi.net": "Xiaomi/content/micardapi.micloud.xiaomi.net",
		"api.ad.intl.xiaomi.com":          "Xiaomi/advertising/api.ad.intl.xiaomi.com",
		"sa.api.intl.miui.com":            "Xiaomi/telemetry/sa.api.intl.miui.com", // from the NextDNS list
		"x.app-measurement.com":           "Google/analytics/app-measurement.com",
		"T.APPSFLYER.COM.":                "AppsFlyer/advertising/t.appsflyer.com", // EasyPrivacy names it, our table says whose
	}
	for host, want := range cases {
		e, ok := kb.Lookup(host)
		if got := e.Owner + "/" + e.Category + "/" + e.Domain; !ok || got != want {
			t.Errorf("%s: %s, want %s", host, got, want)
		}
	}
	if _, ok := kb.Lookup("example.org"); ok {
		t.Error("unknown domains must not match")
	}
	if Site("a.b.tracking.intl.miui.com") != "miui.com" || Site("x.co.uk") != "x.co.uk" {
		t.Error("eTLD+1")
	}
}

func TestHostsAndDomainLists(t *testing.T) {
	kb := New()
	n, err := kb.Load(strings.NewReader("# a hosts file\n127.0.0.1 localhost\n0.0.0.0 ads.example.com\n0.0.0.0 metrics.example.net # comment\n"), "hosts")
	if err != nil || n != 2 {
		t.Fatalf("hosts: %d %v", n, err)
	}
	if e, ok := kb.Lookup("x.ads.example.com"); !ok || e.List != "hosts" {
		t.Errorf("%+v", e)
	}
	if _, err := New().Load(strings.NewReader("this is\nnot a list\n"), "notes.txt"); !errors.Is(err, ErrUnknownList) {
		t.Errorf("prose must be refused: %v", err)
	}
	n, err = New().Load(strings.NewReader("[Adblock Plus 2.0]\n||track.example.com^\n||ads.example.org^$third-party\n||x.example.com/path\n##.banner\n||img.example.com^$image\n"), "easyprivacy.txt")
	if err != nil || n != 2 {
		t.Errorf("adblock: %d %v", n, err)
	}
}

// TestSharedLists loads the real lists the project keeps beside the code.
func TestSharedLists(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "..", "shared", "data", "lists")
	if _, err := os.Stat(dir); err != nil {
		t.Skip("shared tracker lists not present beside the repository")
	}
	cases := []struct {
		file    string
		atLeast int
		host    string
		owner   string
	}{
		{"hagezi/native.xiaomi.txt", 400, "tracking.intl.miui.com", ""},
		{"disconnect/services.json", 3000, "doubleclick.net", "Google"},
		{"duckduckgo/app-android-tds.json", 300, "a.applovin.com", "AppLovin"},
		{"exodus/exodus-trackers-etip-export-2022.json", 100, "app-measurement.com", ""},
		{"easylist/easyprivacy.txt", 5000, "", ""},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			fh, err := os.Open(filepath.Join(dir, c.file))
			if err != nil {
				t.Skip(err)
			}
			defer fh.Close()
			kb := New()
			n, err := kb.Load(fh, c.file)
			if err != nil || n < c.atLeast {
				t.Fatalf("%d domains, %v", n, err)
			}
			if c.host != "" {
				e, ok := kb.Lookup(c.host)
				if !ok || c.owner != "" && e.Owner != c.owner {
					t.Errorf("%s: %+v", c.host, e)
				}
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	kb := Builtin()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := kb.Lookup("a.b.c.data.mistat.intl.xiaomi.com"); !ok {
			b.Fatal()
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("0.0.0.0 ads.example.com\n"))
	f.Add([]byte("[Adblock Plus 2.0]\n||track.example.com^$third-party\n"))
	f.Add([]byte(`{"categories":{"Advertising":[{"X":{"https://x.example":["x.example"]}}]}}`))
	f.Add([]byte(`{"trackers":{"a.example":{"owner":{"name":"A"},"categories":["Advertising"]}},"entities":{},"packageNames":{"com.a":"A"}}`))
	f.Add([]byte(`{"trackers":[{"name":"T","network_signature":"t\\.example\\.com|x\\.io","categories":["Analytics"]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kb := New()
		_, _ = kb.Load(strings.NewReader(string(b)), "fuzz")
		_, _ = kb.Lookup("a.b.example.com")
	})
}

func TestBuiltinEasyPrivacy(t *testing.T) {
	kb := Builtin()
	if kb.Len() < 5000 {
		t.Fatalf("only %d domains known: EasyPrivacy's domain rules are missing", kb.Len())
	}
	// Our own table wins over the list for what it describes.
	if e, _ := kb.Lookup("app-measurement.com"); e.Owner != "Google" || e.List != "phonehome" {
		t.Errorf("%+v", e)
	}
}

func BenchmarkBuiltin(b *testing.B) {
	for b.Loop() {
		Builtin()
	}
}
