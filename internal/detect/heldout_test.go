package detect

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"phonehome/internal/decode"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/flow"
)

// Held-out cases: requests written from public material the detector was
// not tuned on (TrackHAR's research notes and the SDK vendors' own
// documentation of their parameters), labelled by the development set's
// conventions. The figures are reported separately from the development
// set's; the test fails only if they fall below what this version reached.
var heldOutDocs = []struct {
	source  string
	method  string
	url     string
	ctype   string
	body    string
	headers flow.Headers
	want    []flow.Kind
}{
	{ // TrackHAR research-docs adjust/uuid.md, Adjust's S2S session parameters
		source: "Adjust S2S session (help.adjust.com server-to-server-sessions)", method: "POST", url: "https://app.adjust.com/session",
		ctype: "application/x-www-form-urlencoded",
		body:  "app_token=4w565xzmb54d&s2s=1&os_name=ios&os_version=17.2&idfa=D2CADB5F-410F-4963-AC0C-2A78534BDF1E&persistent_ios_uuid=3b35fcfb-6115-4cff-830f-e32a248c487d&device_type=iPhone&device_name=iPhone15%2C2&country=de&language=de&app_version=2.4.1&created_at_unix=1710388290",
		want:  []flow.Kind{pii.AdvertisingID, pii.InstallID, pii.OSVersion, pii.DeviceModel, pii.Locale, pii.AppVersion},
	},
	{ // Adjust web SDK (help.adjust.com web-attribution): web_uuid
		source: "Adjust web SDK session", method: "POST", url: "https://app.adjust.com/session", ctype: "application/x-www-form-urlencoded",
		body: "app_token=2fm9gkqubvpc&web_uuid=4d1615ab-ee78-49aa-a10f-d57035322a42&platform=web&language=en&country=us&os_name=windows",
		want: []flow.Kind{pii.InstallID, pii.Locale},
	},
	{ // Singular S2S API reference: asid, aifa, ip, ve (OS version), ma/mo (make, model)
		source: "Singular S2S launch (support.singular.net S2S API endpoint reference)", method: "GET",
		url:  "https://s2s.singular.net/api/v1/launch?a=SDK_KEY_12345&p=Android&i=com.example.shop&aifa=8ecd7512-2864-440c-93f3-a3cabe62525b&asid=edee92a2-7b2f-45f4-a509-840f170fc6d9&ve=13&ma=samsung&mo=SM-G991B&lc=de_DE&n=Example%20Shop&app_v=5.1.0",
		want: []flow.Kind{pii.AdvertisingID, pii.InstallID, pii.OSVersion, pii.Manufacturer, pii.DeviceModel, pii.Locale, pii.AppVersion},
	},
	{ // OneSignal REST API "Add a device" (documentation.onesignal.com)
		source: "OneSignal add a device", method: "POST", url: "https://api.onesignal.com/players", ctype: "application/json",
		body: `{"app_id":"5eb5a37e-b458-11e3-ac11-000c2940e62c","device_type":1,"identifier":"ce777617da7f548fe7a9ab6febb56cf39fba6d382000c0395666288d961ee566","language":"en","timezone":-28800,"game_version":"1.0","device_model":"iPhone 8,2","device_os":"15.1.1","ad_id":"9d8f0c74-7f5a-4a4b-9d2a-0a8a3c2f6b11","carrier":"T-Mobile"}`,
		want: []flow.Kind{pii.InstallID, pii.Locale, pii.Timezone, pii.AppVersion, pii.DeviceModel, pii.OSVersion, pii.AdvertisingID, pii.Carrier},
	},
	{ // Facebook App Events (developers.facebook.com app-events API): anon_id "XZ" + UUID, advertiser_id, ud[em] SHA-256
		source: "Facebook app events activities", method: "POST", url: "https://graph.facebook.com/v18.0/1234567890/activities",
		ctype: "application/x-www-form-urlencoded",
		body:  "event=CUSTOM_APP_EVENTS&advertiser_id=38400000-8cf0-11bd-b23e-10b96e40000d&anon_id=XZ6A3F5B2C-1D4E-4F8A-9B0C-7E2D1A3B4C5D&application_tracking_enabled=1&ud=%7B%22em%22%3A%22f1904cc5e7a14c4b8d7f2c3f64b1a7c4e5a2f0e39b1d1e3c6a8b9f0d2e4c6a8b%22%7D&extinfo=%5B%22a2%22%2C%22com.example.app%22%2C%22102%22%2C%221.0.2%22%2C%2214%22%2C%22Pixel+7%22%2C%22en_GB%22%2C%22GMT%22%2C%22EE%22%2C1080%2C2400%2C%222.6%22%5D",
		want:  []flow.Kind{pii.AdvertisingID, pii.InstallID, pii.Email, pii.AppVersion, pii.OSVersion, pii.DeviceModel, pii.Locale, pii.Timezone, pii.Carrier, pii.ScreenSize},
	},
	{ // Branch v1/install (help.branch.io: device data the SDK sends)
		source: "Branch v1/install", method: "POST", url: "https://api2.branch.io/v1/install", ctype: "application/json",
		body: `{"hardware_id":"f07d5a4e1b2c3d90","is_hardware_id_real":true,"brand":"Google","model":"Pixel 8","screen_dpi":420,"screen_height":2400,"screen_width":1080,"wifi":true,"os":"Android","os_version":34,"country":"US","language":"en","local_ip":"192.168.1.20","google_advertising_id":"a1b2c3d4-e5f6-4711-8899-aabbccddeeff","app_version":"3.2.0","sdk":"android5.8.0","branch_key":"key_live_abc123"}`,
		want: []flow.Kind{pii.AndroidID, pii.Manufacturer, pii.DeviceModel, pii.ScreenSize, pii.NetworkType, pii.OSVersion, pii.Locale, pii.AdvertisingID, pii.AppVersion},
	},
	{ // INFOnline research-docs: client.uuids.advertisingIdentifier is an MD5 of the ad ID
		source: "INFOnline IOMb (TrackHAR research-docs infonline)", method: "POST", url: "https://de-config.ioam.de/appcfg.php",
		ctype: "application/json",
		body:  `{"client":{"uuids":{"advertisingIdentifier":"ea0d12c883812cadaf46f99793f2d824"},"osVersion":"13","platform":"android"},"library":{"libVersion":"2.3.1"}}`,
		want:  []flow.Kind{pii.AdvertisingID, pii.OSVersion},
	},
	{ // Negative: a CDN fetch with a cache buster and a content hash (nothing personal)
		source: "negative: CDN asset with cache buster", method: "GET", url: "https://cdn.example.net/assets/app.3f9a2c1d.js?v=1710388290&h=9e107d9d372bb6826bd81d3542a419d6",
		want: nil,
	},
	{ // Negative: an OAuth token refresh (tokens are credentials of the app, not tracking data)
		source: "negative: request ID and nonce", method: "POST", url: "https://api.example.org/v2/sync", ctype: "application/json",
		body: `{"request_id":"0b9d7e4c-2a1f-4f3e-8c6d-5e4f3a2b1c0d","nonce":"Xk3j9Lq2Zp8Rt5Wv","ts":1710388290123,"items":[{"sku":"A-1001","qty":2}]}`,
		want: nil,
	},
}

func TestHeldOutSDKDocs(t *testing.T) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	labels, found, findings, tp := 0, 0, 0, 0
	var rows []string
	for i, c := range heldOutDocs {
		hs := append(flow.Headers{{Name: "User-Agent", Value: "okhttp/4.12.0"}}, c.headers...)
		if c.ctype != "" {
			hs = append(hs, flow.Header{Name: "Content-Type", Value: c.ctype})
		}
		f := &flow.Flow{Seq: i + 1, Source: "held-out", Client: flow.Endpoint{Addr: netip.MustParseAddr("10.9.0.2")},
			Request: &flow.Request{Method: c.method, URL: c.url, Headers: hs, Body: flow.Body{Data: []byte(c.body)}}}
		e.Inspect(f)
		got := map[flow.Kind]bool{}
		for _, x := range Reported(f) {
			got[x.Kind] = true
		}
		want := map[flow.Kind]bool{}
		for _, k := range c.want {
			want[k] = true
		}
		var missed, extra []string
		for k := range want {
			labels++
			if got[k] {
				found++
			} else {
				missed = append(missed, string(k))
			}
		}
		for k := range got {
			findings++
			if want[k] || accepted(k, want) {
				tp++
			} else {
				extra = append(extra, string(k))
			}
		}
		sort.Strings(missed)
		sort.Strings(extra)
		rows = append(rows, fmt.Sprintf("%-70s missed %v, wrong %v", c.source, missed, extra))
	}
	p, r := float64(tp)/float64(max(findings, 1)), float64(found)/float64(max(labels, 1))
	t.Logf("held-out: %d cases, %d (request, kind) units: precision %.3f, recall %.3f\n%s", len(heldOutDocs), labels, p, r, strings.Join(rows, "\n"))
	if p < 0.9 || r < 0.85 {
		t.Errorf("held-out precision %.3f recall %.3f: below this version's 0.9 and 0.85", p, r)
	}
}

// accepted is the development set's also_accept, for kinds a tool without
// the profile can reasonably give instead.
func accepted(k flow.Kind, want map[flow.Kind]bool) bool {
	switch k {
	case pii.DeviceID:
		return want[pii.InstallID] || want[pii.AndroidID] || want[pii.AdvertisingID] || want[pii.IMEI] || want[pii.SerialNumber]
	case pii.InstallID:
		return want[pii.DeviceID]
	case pii.MACAddress:
		return want[pii.WifiBSSID]
	case pii.WifiBSSID:
		return want[pii.MACAddress]
	}
	return false
}

// BenchmarkInspect2KBTrackerRequest decodes and detects a 2 KB tracker
// request of an endpoint the endpoint table knows (Adjust's session, a form
// of some fifty fields, as the SDK sends it), the table loaded.
func BenchmarkInspect2KBTrackerRequest(b *testing.B) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	if e.ep == nil {
		b.Fatal("no endpoint table")
	}
	body := heldOutDocs[0].body + "&android_uuid=9250759f-a0dd-4534-8747-57f482a92bc9&gps_adid=0d361ff5-0f54-4edd-b681-5f032f5d392c" +
		"&android_id=7d51e0f7039fb997&mac_sha1=F621BAFC7F9F6AD0EA9B93A2E5E15497F9932825&mac_md5=c03c6c34329ba80474c92b1337f08c15" +
		"&connectivity_type=1&mcc=404&mnc=45&display_width=1080&display_height=2400&screen_density=high&screen_format=long" +
		"&screen_size=normal&cpu_type=arm64-v8a&hardware_name=RKQ1.201022.002&os_build=RKQ1.201022.002&api_level=30" +
		"&package_name=com.example.wallet&environment=production&event_buffering_enabled=0&needs_response_details=1" +
		"&session_count=12&subsession_count=3&session_length=845&time_spent=812&last_interval=3600&tracking_enabled=1" +
		"&gps_adid_src=service&gps_adid_attempt=1&device_manufacturer=Xiaomi&device_name=M2101K7AI&fb_id=&installed_at=2024-03-10T11%3A33%3A10.537Z%2B0530" +
		"&created_at=2024-03-14T09%3A26%3A33.618%2B0530&sent_at=2024-03-14T09%3A26%3A33.921%2B0530&updated_at=2024-03-14T09%3A20%3A01.002%2B0530"
	for len(body) < 2048 {
		body += "&callback_params=%7B%22screen%22%3A%22home%22%2C%22ab%22%3A%22b%22%7D"
	}
	req := &flow.Request{Method: "POST", URL: "https://app.adjust.com/session", Proto: "HTTP/1.1",
		Headers: flow.Headers{{Name: "User-Agent", Value: "Dalvik/2.1.0 (Linux; U; Android 11; M2101K7AI Build/RKQ1.201022.002)"},
			{Name: "Content-Type", Value: "application/x-www-form-urlencoded"}, {Name: "Client-SDK", Value: "android4.33.5"}},
		Body: flow.Body{Data: []byte(body)}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		f := &flow.Flow{Host: "app.adjust.com", Request: req}
		e.Inspect(f)
		if len(f.Findings) < 15 {
			b.Fatal(len(f.Findings))
		}
	}
}
