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

// TestLoadRefusesWhatIsNoList: what is not a tracker list is refused with
// the file's name and what was expected, and nothing of it is added; real
// lists with a few odd lines still load.
func TestLoadRefusesWhatIsNoList(t *testing.T) {
	const expected = "; expected a hosts file, one domain per line, Adblock/EasyPrivacy rules, Disconnect services.json, DuckDuckGo tds.json or an Exodus tracker export"
	// a multi-byte character cut by the end of the part checkText reads
	first := "x.example.com # "
	straddle := first + strings.Repeat("a", textPrefix-1-len(first)) + "é\nads.example.com\n"
	if straddle[textPrefix-1] != "é"[0] {
		t.Fatal("the é does not straddle the end of the prefix")
	}
	for _, c := range []struct {
		name, data string
		n          int
		err        string // after "load tracker list NAME: unknown tracker list format: "
	}{
		{"program", "\x7fELF\x02\x01\x01\x00\x00\x00\n||ads.example.com^\nads.example.com\n", 0,
			"it is not text (a NUL byte at offset 7, as in a program, an archive or a capture)"},
		{"hosts.gz", "\x1f\x8b\x08\x00ads.example.com\n", 0, "it is gzip-compressed: decompress it first (gunzip)"},
		{"hosts.zip", "PK\x03\x04ads.example.com\n", 0, "it is a zip archive: extract the list from it first"},
		{"windows-hosts", "\xff\xfe0\x000\x00", 0, "it is UTF-16 text: save it as UTF-8"},
		{"latin1", "ads.example.com # caf\xe9\n", 0, "it is not UTF-8 text (byte 0xe9 at offset 21): save it as UTF-8"},
		{"README.md", "# Lists\nSee ads.example.com for more.\nads.example.com\nThis is prose.\nMore prose here.\n", 0,
			`3 of its 4 lines are not domains or hosts entries (line 2: "See ads.example.com for more.")`},
		{"notes.txt", "this is\nnot a list\n", 0, `2 of its 2 lines are not domains or hosts entries (line 1: "this is")`},
		{"hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost\n", 0, "no domains found, only comments and local names"},
		{"build.sh", "#!/bin/sh\ntest -f list.txt\n|| echo missing list\n", 0,
			`2 of its 3 lines are not Adblock rules (line 2: "test -f list.txt")`},
		{"xray.json", `[{"country":"us","doms":["ads.example.com"],"owner_name":"Ads"}]`, 0,
			"JSON, but it names no tracker domains phonehome can read"},
		{"broken.json", `{"trackers": `, 0, "it starts as JSON does, but is not JSON: unexpected end of JSON input"},
		// real lists
		{"hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff02::1 ip6-allnodes\n255.255.255.255 broadcasthost\n0.0.0.0 ads.example.com\n", 1, ""},
		{"bom.txt", "\ufeffads.example.com\nmetrics.example.net\n", 2, ""},
		{"mostly.txt", "ads.example.com\nmetrics.example.net\nnot a domain\n", 2, ""},
		{"straddle.txt", straddle, 2, ""},
		{"easyprivacy.txt", "[Adblock Plus 2.0]\n! Title: x\n||ads.example.com^\nexample.com##div[class=\"a b\"]\n/track.gif?\n", 1, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			kb := New()
			n, err := kb.Load(strings.NewReader(c.data), c.name)
			if c.err == "" {
				if err != nil || n != c.n {
					t.Fatalf("%d domains, %v; want %d", n, err, c.n)
				}
				if _, ok := kb.Lookup("ads.example.com"); !ok {
					t.Error("ads.example.com not loaded")
				}
				return
			}
			want := "load tracker list " + c.name + ": unknown tracker list format: " + c.err + expected
			if !errors.Is(err, ErrUnknownList) || err.Error() != want {
				t.Errorf("got  %v\nwant %s", err, want)
			}
			if n != 0 || kb.Len() != 0 {
				t.Errorf("a refused list added %d domains", kb.Len())
			}
		})
	}
}
