package pii

import (
	"testing"

	"phonehome/internal/decode"
	"phonehome/internal/flow"
)

// TestValueEvidence: values recognised by their shape under names that say
// nothing, and the look-alikes that must not be.
func TestValueEvidence(t *testing.T) {
	d := New("IN")
	cases := []struct {
		key, text string
		want      flow.Kind // "" for nothing
	}{
		// 16 hex digits: an ANDROID_ID or an OAID, unless the name says per request.
		{"ai", "7d51e0f7039fb997", AndroidID},
		{"u", "3b6f1e0a9c2d4f81", AndroidID},
		{"oaid", "c424719882ae9590", DeviceID}, // Xiaomi's OAID: 16 hex, not a UUID
		{"session", "5171495c5f3e3c6c", ""},
		{"$insert_id", "b273595c75091125", ""},
		{"traceId", "b6042d67f25923e8", ""},
		{"x", "0000000000000abc", ""},                         // a counter in hex
		{"x", "deadbeefdeadbeef", ""},                         // a word, no randomness
		{"x", "1710387726786123", ""},                         // digits only: a timestamp in µs
		{"x", "da39a3ee5e6b4b0d3255bfef95601890afd80709", ""}, // a SHA-1 under an unknown name
		// UUIDs and FCM tokens by shape.
		{"u", "9250759f-a0dd-4534-8747-57f482a92bc9", DeviceID},
		{"reqId", "e68d321d-d8b4-4a2f-827a-7927822cee48", ""},
		{"_session_id", "e68d321d-d8b4-4a2f-827a-7927822cee48", ""},
		{"x", "00000000-0000-0000-0000-000000000000", ""},
		{"app_id", "5eb5a37e-b458-11e3-ac11-000c2940e62c", ""}, // the app's, not the device's
		{"product_id", "9250759f-a0dd-4534-8747-57f482a92bc9", ""},
		{"identifier", "e9pcTe9V2YjxPt06pqiGic:APA91b3nGA8Xa1h84OosFSRLPovyCrXTZhATq7wB2k-9lMn0", InstallID},
		{"x", "note:APA91b", ""},
		// MAC addresses in every case, with or without separators, and their digests.
		{"x", "64:CC:2E:C6:B2:ED", MACAddress},
		{"wifi_mac", "64CC2EC6B2ED", MACAddress},
		{"mac", "8b0e2772a48555c8c1cd1197d94181a6", MACAddress},
		{"mac_sha1", "F621BAFC7F9F6AD0EA9B93A2E5E15497F9932825", MACAddress},
		{"sha1_imei", "f621bafc7f9f6ad0ea9b93a2e5e15497f9932825", IMEI},
		// Locale tags with a real language and country.
		{"l", "en_IN", Locale},
		{"x", "pt-BR", Locale},
		{"x", "en_in", Locale},
		{"x", "zh-Hans-CN", Locale},
		{"x", "ab_CD", ""}, // no such language
		{"x", "en_XY", ""}, // no such country
		{"x", "arm64-v8a", ""},
		// Time zones: names, offsets, the offset of a local time.
		{"x", "Asia/Kolkata", Timezone},
		{"x", "America/Argentina/Buenos_Aires", Timezone},
		{"x", "GMT+05:30", Timezone},
		{"created_at", "2024-03-14T09:26:33.618+0530", Timezone},
		{"installDate", "2024-03-10_131522+0530", Timezone},
		{"x", "2024-03-14T03:56:33.618Z", ""}, // UTC says nothing of where
		{"x", "image/png", ""},
		{"x", "text/html", ""},
		{"timezone", "5.5", Timezone},
		// Network types, screens, MCC-MNC.
		{"n", "WIFI", NetworkType},
		{"x", "LTE", NetworkType},
		{"x", "1080x2400", ScreenSize},
		{"size", "600x600", ""}, // a square image, not a screen
		{"x", "2400*1080", ScreenSize},
		{"op", "40445", Carrier},
		{"serviceProvider", "310260", Carrier},
		{"dur", "40445", ""}, // a five-digit number under any other name
		{"op", "99999", ""},  // no such MCC
		{"mcc", "404", Carrier},
		// Hashed-data conventions: the kind behind the hash.
		{"udph", "2f1ae3b33b63e9c4ea5b3b6f4b2c1e4d2f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c", PhoneNumber},
		{"udfn", "2f1ae3b33b63e9c4ea5b3b6f4b2c1e4d2f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c", PersonName},
		// Names qualified by whose they are, and account IDs under longer names.
		{"device_carrier", "Airtel", Carrier},
		{"user_timezone", "Asia/Kolkata", Timezone},
		{"mi_account_id", "6893902724", AccountID},
		{"af_customer_user_id", "20354593", AccountID},
		{"device_version", "3.0", ""},
		// Versions and nonces stay silent.
		{"x", "3.8.1", ""},
		{"x", "vmLtizoLr4U1Rq+z", ""},
		{"icon", "partly_cloudy_day@3x.png", ""},
	}
	for _, c := range cases {
		hits := d.Scan([]decode.Value{{Path: "p:" + c.key, Key: c.key, Text: c.text}})
		var got flow.Kind
		if len(hits) > 0 {
			got = hits[0].Kind
		}
		if got != c.want {
			t.Errorf("%s=%q: got %q, want %q (%+v)", c.key, c.text, got, c.want, hits)
		}
	}
}

func TestPackageLists(t *testing.T) {
	d := New("")
	// A launcher folder's apps in one query parameter named like a single package.
	hits := d.Scan([]decode.Value{{Path: "query:packageName", Key: "packageName", Text: "com.dts.freefireth,com.pubg.imobile,com.king.candycrushsaga"}})
	if len(hits) != 1 || hits[0].Kind != AppList {
		t.Errorf("comma list: %+v", hits)
	}
	hits = d.Scan([]decode.Value{{Path: "q:apps", Key: "x", Text: "com.whatsapp com.phonepe.app"}})
	if len(hits) != 1 || hits[0].Kind != AppList {
		t.Errorf("space list: %+v", hits)
	}
	// A batch of usage events, one app each: the apps in use, not the sender.
	vals := []decode.Value{
		{Path: "body › json:events[0].pkg", Key: "pkg", Parent: "events", Text: "com.whatsapp"},
		{Path: "body › json:events[0].dur", Key: "dur", Parent: "events", Text: "765118", Numeric: true},
		{Path: "body › json:events[1].pkg", Key: "pkg", Parent: "events", Text: "com.google.android.youtube"},
	}
	hits = d.Scan(vals)
	if len(hits) != 1 || hits[0].Kind != AppList || hits[0].Path != "body › json:events[].pkg" {
		t.Errorf("batch: %+v", hits)
	}
	// The same host app in every event of a batch is one app, no list.
	vals = []decode.Value{
		{Path: "b › json:[0].properties.$app_id", Key: "$app_id", Parent: "properties", Text: "com.mi.globalbrowser.mini"},
		{Path: "b › json:[1].properties.$app_id", Key: "$app_id", Parent: "properties", Text: "com.mi.globalbrowser.mini"},
	}
	for _, h := range d.Scan(vals) {
		if h.Kind != HostApp {
			t.Errorf("host app repeated: %+v", h)
		}
	}
	// Negatives: host names, versions, a single package.
	for _, v := range []string{"www.google.com,www.youtube.com", "1.2.3,4.5.6", "com.whatsapp", "com.whatsapp,com.whatsapp"} {
		for _, h := range d.Scan([]decode.Value{{Path: "q:x", Key: "x", Text: v}}) {
			if h.Kind == AppList {
				t.Errorf("%q: %+v", v, h)
			}
		}
	}
}

func TestVersionOfParent(t *testing.T) {
	d := New("")
	for _, c := range []struct {
		parent, key, text string
		want              flow.Kind
	}{
		{"appInfo", "version", "4.1.3.7i", AppVersion},
		{"os", "version", "11", OSVersion},
		{"", "version", "3.0", ""},
		{"sdk", "version", "9.6.1", ""}, // the SDK's, not the app's
	} {
		hits := d.Scan([]decode.Value{{Path: "p", Key: c.key, Parent: c.parent, Text: c.text}})
		var got flow.Kind
		if len(hits) > 0 {
			got = hits[0].Kind
		}
		if got != c.want {
			t.Errorf("%s.%s=%q: %+v, want %q", c.parent, c.key, c.text, hits, c.want)
		}
	}
}

func TestSenderOrHost(t *testing.T) {
	d := New("")
	for key, want := range map[string]flow.Kind{"sender": SenderApp, "calling_package": SenderApp, "package_name": HostApp, "app_id": HostApp} {
		hits := d.Scan([]decode.Value{{Path: "p", Key: key, Text: "com.miui.securitycenter"}})
		if len(hits) != 1 || hits[0].Kind != want {
			t.Errorf("%s: %+v, want %s", key, hits, want)
		}
	}
}

func TestCoordinatePairs(t *testing.T) {
	d := New("")
	hits := d.Scan([]decode.Value{{Path: "q:lat", Key: "lat", Text: "12.93"}, {Path: "q:lon", Key: "lon", Text: "77.63"}})
	if len(hits) != 1 || hits[0].Kind != Location || hits[0].Value != "12.93,77.63" {
		t.Errorf("two decimals, both halves: %+v", hits)
	}
	if hits := d.Scan([]decode.Value{{Path: "q:lat", Key: "lat", Text: "12.9"}, {Path: "q:lon", Key: "lon", Text: "77.6"}}); len(hits) != 0 {
		t.Errorf("one decimal is a region: %+v", hits)
	}
	// Names of their own, and integers scaled by 1e6.
	hits = d.Scan([]decode.Value{{Path: "j:userLat", Key: "userLat", Text: "12.934533", Numeric: true}, {Path: "j:userLng", Key: "userLng", Text: "77.626579", Numeric: true}})
	if len(hits) != 1 || hits[0].Kind != Location {
		t.Errorf("userLat/userLng: %+v", hits)
	}
	hits = d.Scan([]decode.Value{{Path: "j:lat_e6", Key: "lat_e6", Text: "12934533", Numeric: true}, {Path: "j:lng_e6", Key: "lng_e6", Text: "77626579", Numeric: true}})
	if len(hits) != 1 || hits[0].Kind != Location || hits[0].Value != "12.934533,77.626579" {
		t.Errorf("scaled: %+v", hits)
	}
	// Combined in one string, whatever the field.
	for _, v := range []string{"12.934533,77.626579", "12.934533;77.626579", "geo:12.934533,77.626579"} {
		hits = d.Scan([]decode.Value{{Path: "j:x", Key: "x", Text: v}})
		if len(hits) != 1 || hits[0].Kind != Location {
			t.Errorf("%q: %+v", v, hits)
		}
	}
	// Not coordinates: latency and a translated text, prices, a version pair.
	for _, vals := range [][]decode.Value{
		{{Path: "a", Key: "latency", Text: "12.934533"}, {Path: "b", Key: "salon", Text: "77.626579"}},
		{{Path: "a", Key: "x", Text: "1.25,3.50"}},
		{{Path: "a", Key: "lat", Text: "1710387726"}, {Path: "b", Key: "lng", Text: "1710387727"}},
	} {
		for _, h := range d.Scan(vals) {
			if h.Kind == Location {
				t.Errorf("%+v: %+v", vals, h)
			}
		}
	}
}

func TestAppDisplayName(t *testing.T) {
	d := New("")
	hits := d.Scan([]decode.Value{
		{Path: "body › json:header.display_name", Key: "display_name", Parent: "header", Text: "DhanPay"},
		{Path: "body › json:header.package_name", Key: "package_name", Parent: "header", Text: "com.dhanpay.wallet"},
	})
	for _, h := range hits {
		if h.Kind == PersonName {
			t.Errorf("the app's name taken for a person's: %+v", h)
		}
	}
	hits = d.Scan([]decode.Value{{Path: "body › json:user.display_name", Key: "display_name", Parent: "user", Text: "Arjun Mehta"},
		{Path: "body › json:header.package_name", Key: "package_name", Parent: "header", Text: "com.dhanpay.wallet"}})
	if len(hits) == 0 || hits[0].Kind != PersonName {
		t.Errorf("a user's display name: %+v", hits)
	}
}

func TestPhoneRegionFromRequest(t *testing.T) {
	d := New("")
	hits := d.Scan([]decode.Value{{Path: "q:tel", Key: "tel", Text: "07573528055"}, {Path: "q:l", Key: "l", Text: "en_IN"}})
	found := false
	for _, h := range hits {
		if h.Kind == PhoneNumber && h.Value == "+917573528055" {
			found = true
		}
	}
	if !found {
		t.Errorf("national number with the request's locale: %+v", hits)
	}
	hits = d.Scan([]decode.Value{{Path: "q:tel", Key: "tel", Text: "07573528055"}, {Path: "q:imsi", Key: "imsi", Text: "404450850664462"}})
	if len(hits) < 2 || hits[0].Kind != PhoneNumber || hits[0].Value != "+917573528055" {
		t.Errorf("national number with the SIM's country: %+v", hits)
	}
	// Without a country, or with two, a national number stays unread.
	for _, vals := range [][]decode.Value{
		{{Path: "q:tel", Key: "tel", Text: "07573528055"}},
		{{Path: "q:tel", Key: "tel", Text: "07573528055"}, {Path: "a", Key: "l", Text: "en_IN"}, {Path: "b", Key: "country", Text: "DE"}},
	} {
		for _, h := range d.Scan(vals) {
			if h.Kind == PhoneNumber {
				t.Errorf("%+v: %+v", vals, h)
			}
		}
	}
}
