package pii

import (
	"testing"

	"phonehome/internal/decode"
)

func TestValues(t *testing.T) {
	d := New("DE")
	cases := []struct {
		key, text string
		numeric   bool
		want      string // kind, or "" for nothing
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
		{"x", "1731916800000", false, ""},  // a timestamp in milliseconds
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
		got := ""
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
