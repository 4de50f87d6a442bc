package pii

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"phonehome/internal/decode"
	"phonehome/internal/flow"
)

func TestValues(t *testing.T) {
	d := New("DE")
	cases := []struct {
		key, text string
		numeric   bool
		want      flow.Kind // kind, or "" for nothing
	}{
		{"imei", "356938035643809", false, IMEI},
		{"deviceImei", "356938035643808", false, ""}, // fails Luhn
		{"imei_md5", "4c1d1c5c2f0bb4e1a8e6f1f5f0a8d9b3", false, IMEI},
		{"order", "356938035643809", false, IMEI}, // the shape alone: Luhn and a reporting-body prefix
		{"order", "123456789012347", false, ""},   // passes Luhn, no IMEI prefix
		{"n", "356938035643809", true, ""},        // a bare number is not taken on shape alone
		{"gaid", "38400000-8cf0-11bd-b23e-10b96e40000d", false, AdvertisingID},
		{"idfa", "00000000-0000-0000-0000-000000000000", false, ""}, // limit ad tracking
		{"request_id", "38400000-8cf0-11bd-b23e-10b96e40000d", false, ""},
		{"mac", "02:00:00:00:00:00", false, ""}, // Android's placeholder
		{"wifi_mac", "64cc2e9a417d", false, MACAddress},
		{"x", "64:cc:2e:9a:41:7d", false, MACAddress},
		{"bssid", "a4:2b:b0:11:22:33", false, WifiBSSID},
		{"android_id", "3b6f1e0a9c2d4f81", false, AndroidID},
		{"android_id", "0000000000000000", false, ""},
		{"phone", "+49 151 23456789", false, PhoneNumber},
		{"phone", "015123456789", false, PhoneNumber}, // national format, region DE
		{"x", "+4915123456789", false, PhoneNumber},
		{"ts", "+4915123456789", false, ""}, // a skip key wins
		{"x", "1731916800000", false, ""},   // a timestamp in milliseconds
		{"device_id", "1731916800", false, ""},
		{"user_email", "anna.schmidt@example.de", false, Email},
		{"icon", "logo@2x.png", false, ""},
		{"lat", "52.5200", false, Location},
		{"lat", "52.5", false, ""}, // a region, not a place
		{"loc", "52.5200,13.4050", false, Location},
		{"q", "how to cancel subscription", false, SearchQuery},
		{"q", "12", false, ""},
		{"url", "https://www.healthline.com/health/depression", false, VisitedURL},
		{"sender", "com.miui.systemAdSolution", false, SenderApp},
		{"sender", "sdk", false, ""},
		{"sign", "4b1c1e4e0f7c7b8f9a4e2d1c6b5a3f20", false, ""},
		{"md5", "4b1c1e4e0f7c7b8f9a4e2d1c6b5a3f20", false, ""},
		{"version", "7.1.2", false, ""},
		{"os_version", "7.1.2", false, OSVersion},
		{"screen", "720x1280", false, ScreenSize},
		{"ssid", "HomeNet-5G", false, WifiSSID},
		{"ssid", "<unknown ssid>", false, ""},
		{"password", "hunter2", false, Password},
		{"first_name", "Anna", false, PersonName},
		{"iccid", "8949024123456789012", false, ICCID},
		{"User-Agent", "Dalvik/2.1.0 (Linux; U; Android 12; M2101K6G Build/SKQ1.211006.001)", false, OSVersion},
	}
	for _, c := range cases {
		hits := d.Scan([]decode.Value{{Path: "p:" + c.key, Key: c.key, Text: c.text, Numeric: c.numeric}})
		var got flow.Kind
		if len(hits) > 0 {
			got = hits[0].Kind
		}
		if got != c.want {
			t.Errorf("%s=%q (numeric %v): got %q, want %q (%+v)", c.key, c.text, c.numeric, got, c.want, hits)
		}
	}
}

func TestAppList(t *testing.T) {
	d := New("")
	vals := []decode.Value{
		{Path: "body › json:apps[0]", Key: "apps", Text: "com.whatsapp"},
		{Path: "body › json:apps[1]", Key: "apps", Text: "com.truecaller"},
		{Path: "body › json:apps[2]", Key: "apps", Text: "com.phonepe.app"},
	}
	hits := d.Scan(vals)
	if len(hits) != 1 || hits[0].Kind != AppList || hits[0].Value != "com.whatsapp,com.truecaller,com.phonepe.app" || hits[0].Path != "body › json:apps" {
		t.Errorf("%+v", hits)
	}
}

func BenchmarkScan(b *testing.B) {
	d := New("")
	vals := []decode.Value{
		{Path: "a", Key: "android_id", Text: "3b6f1e0a9c2d4f81"}, {Path: "b", Key: "event", Text: "page_finished"},
		{Path: "c", Key: "url", Text: "https://www.example.com/news"}, {Path: "d", Key: "ts", Text: "1731916800000", Numeric: true},
		{Path: "e", Key: "model", Text: "Redmi 4A"}, {Path: "f", Key: "props", Text: "some free text value here"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(d.Scan(vals)) != 3 {
			b.Fatal()
		}
	}
}

func TestKnownValues(t *testing.T) {
	prof, err := ParseProfile([]byte(`
imei: "356938035643809"
email: Anna.Schmidt@Example.de
phone_number: "+49 151 23456789"
mac_address: 64:CC:2E:9A:41:7D
contact: ["+919820012345"]
location: "52.5200,13.4050"
`))
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKnown(prof, "DE")
	if err != nil {
		t.Fatal(err)
	}
	d := New("DE")
	d.Known = k
	otherHash := "4c1d1c5c2f0bb4e1a8e6f1f5f0a8d9b3" // an MD5 of something else: must not match
	cases := []struct {
		text string
		kind flow.Kind
		path string
	}{
		{"356938035643809", IMEI, "p"},
		{"x=" + "5d5b9f6c4d45c1ba3a6a1c2ee02c7d3f", "", ""},
		{"anna.schmidt@example.de", Email, "p"},
		{"015123456789", PhoneNumber, "p"},
		{"4915123456789", PhoneNumber, "p"},
		{"64cc2e9a417d", MACAddress, "p"},
		{"KzkxOTgyMDAxMjM0NQ==", Contact, "p › as base64"},
		{otherHash, "", ""},
	}
	for _, c := range cases {
		hits := d.Scan([]decode.Value{{Path: "p", Key: "x", Text: c.text}})
		var got flow.Kind
		var path string
		for _, h := range hits {
			if h.Method == flow.MethodKnown {
				got, path = h.Kind, h.Path
			}
		}
		if got != c.kind || path != c.path {
			t.Errorf("%q: %q at %q, want %q at %q (%+v)", c.text, got, path, c.kind, c.path, hits)
		}
	}
	// Hashes of the normalised forms: lowercased email, E.164 phone.
	for _, form := range []string{"md5", "sha1", "sha256"} {
		var text string
		for _, p := range k.pats {
			if p.kind == Email && p.form == form && p.text == strings.ToLower(p.text) && strings.Contains(formSource(p, k), "anna.schmidt@example.de") {
				text = p.text
			}
		}
		if text == "" {
			t.Fatalf("no %s form of the lowercased email", form)
		}
		hits := d.Scan([]decode.Value{{Path: "body › json:em", Key: "em", Text: text}})
		if len(hits) != 1 || hits[0].Kind != Email || hits[0].Path != "body › json:em › as "+form {
			t.Errorf("%s of email: %+v", form, hits)
		}
	}
	hits := d.Scan([]decode.Value{{Path: "a", Key: "lat", Text: "52.5213"}, {Path: "b", Key: "lng", Text: "13.4101"}})
	if len(hits) != 1 || hits[0].Method != flow.MethodKnown || hits[0].Kind != Location {
		t.Errorf("home location: %+v", hits)
	}
	if _, err := ParseProfile([]byte("favourite_colour: blue")); err == nil || !strings.Contains(err.Error(), "favourite_colour") {
		t.Errorf("unknown kind: %v", err)
	}
}

// formSource recomputes which normal form a hash pattern came from.
func formSource(p pattern, k *Known) string {
	for _, base := range []string{"anna.schmidt@example.de"} {
		for _, q := range k.pats {
			if q.form == "" && q.text == base {
				sum := md5.Sum([]byte(base))
				s1 := sha1.Sum([]byte(base))
				s256 := sha256.Sum256([]byte(base))
				for _, h := range []string{hex.EncodeToString(sum[:]), hex.EncodeToString(s1[:]), hex.EncodeToString(s256[:])} {
					if h == p.text {
						return base
					}
				}
			}
		}
	}
	return ""
}

func BenchmarkKnownScan(b *testing.B) {
	prof := Profile{}
	for i := 0; i < 1000; i++ {
		prof[Contact] = append(prof[Contact], fmt.Sprintf("+4915%09d", 100000000+i*7919))
	}
	k, err := NewKnown(prof, "")
	if err != nil {
		b.Fatal(err)
	}
	// Decoded text: realistic telemetry values, none of them known.
	var sb strings.Builder
	for sb.Len() < 1<<20 {
		sb.WriteString(`https://www.example.com/news/2026/11/18/story?id=829374 page_finished 1731916800000 3b6f1e0a9c2d4f81 Redmi 4A en_IN `)
	}
	text := sb.String()
	b.Logf("%d profile values expanded into %d forms", 1000, k.Patterns())
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if hits := k.Match(text); len(hits) != 0 {
			b.Fatal(hits)
		}
	}
}

func FuzzProfile(f *testing.F) {
	f.Add([]byte("imei: \"356938035643809\"\ncontact: [\"+4915123456789\"]\nlocation: \"52.52,13.40\"\n"))
	f.Add([]byte(`{"email": ["a@b.de", 5], "mac_address": "64:cc:2e:9a:41:7d"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProfile(b)
		if err != nil {
			return
		}
		if k, err := NewKnown(p, "DE"); err == nil {
			k.Match("356938035643809 a@b.de")
		}
	})
}

func FuzzScan(f *testing.F) {
	f.Add("imei", "356938035643809", "body › json:deviceInfo.imei", false)
	f.Add("extinfo", "Redmi", "body › form:extinfo › json:[5]", false)
	f.Add("User-Agent", "Dalvik/2.1.0 (Linux; U; Android 12; M2101K6G Build/SKQ1)", "header:User-Agent", false)
	f.Fuzz(func(t *testing.T, key, text, path string, numeric bool) {
		New("IN").Scan([]decode.Value{{Path: path, Key: key, Text: text, Numeric: numeric}, {Path: path + "[1]", Key: "lat", Text: text}})
	})
}

// TestKnownAgainstOtherEvidence: what the profile says and what the field's
// name or the value's shape says, when they meet on one value.
func TestKnownAgainstOtherEvidence(t *testing.T) {
	prof, err := ParseProfile([]byte(`
manufacturer: Xiaomi
app_version: ["12.5.3.0"]
carrier: Airtel
install_id: ["1137915060658198713"]
advertising_id: ["0d361ff5-0f54-4edd-b681-5f032f5d392c"]
contact: ["+916506128854"]
`))
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKnown(prof, "")
	if err != nil {
		t.Fatal(err)
	}
	d := New("")
	d.Known = k
	cases := []struct {
		key, text string
		want      []flow.Kind // the kinds found, in order
	}{
		// an attribute is found only as the whole value
		{"installed", "com.xiaomi.mipicks", nil},
		{"os", "V12.5.3.0.RKGINXM", nil},
		{"ssid", "Airtel_Zerotouch_5G", []flow.Kind{WifiSSID}},
		{"brand", "Xiaomi", []flow.Kind{Manufacturer}},
		// a shared attribute value: the field's name decides
		{"miui", "12.5.3.0", []flow.Kind{OSVersion}},
		{"app_version", "12.5.3.0", []flow.Kind{AppVersion}},
		// the whole value is one of the person's identifiers: that, not the name's guess
		{"randomized_device_token", "1137915060658198713", []flow.Kind{InstallID}},
		{"x", "0d361ff5-0f54-4edd-b681-5f032f5d392c", []flow.Kind{AdvertisingID}},
		// a contact's bare national number, without the trunk prefix
		{"phone", "6506128854", []flow.Kind{Contact}},
	}
	for _, c := range cases {
		var got []flow.Kind
		for _, h := range d.Scan([]decode.Value{{Path: "p", Key: c.key, Text: c.text}}) {
			got = append(got, h.Kind)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s=%q: %v, want %v", c.key, c.text, got, c.want)
		}
	}
}
