package decode

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"
)

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// find returns the value at path, failing the test when it is missing.
func find(t *testing.T, r Result, path string) Value {
	t.Helper()
	for _, v := range r.Values {
		if v.Path == path {
			return v
		}
	}
	var paths []string
	for _, v := range r.Values {
		paths = append(paths, v.Path+" = "+v.Text)
	}
	t.Fatalf("no value at %q; have:\n%s", path, strings.Join(paths, "\n"))
	return Value{}
}

func TestLayers(t *testing.T) {
	pb := protowire.AppendTag(nil, 1, protowire.BytesType)
	pb = protowire.AppendString(pb, "356938035643809")
	inner := protowire.AppendTag(nil, 1, protowire.BytesType)
	inner = protowire.AppendString(inner, "Redmi 4A")
	inner = protowire.AppendTag(inner, 2, protowire.VarintType)
	inner = protowire.AppendVarint(inner, 720)
	pb = protowire.AppendTag(pb, 2, protowire.BytesType)
	pb = protowire.AppendBytes(pb, inner)

	var br bytes.Buffer
	bw := brotli.NewWriter(&br)
	bw.Write([]byte(`{"gaid":"38400000-8cf0-11bd-b23e-10b96e40000d"}`))
	bw.Close()
	zenc, _ := zstd.NewWriter(nil)
	zs := zenc.EncodeAll([]byte("oaid=d8f1c2a4&model=Redmi"), nil)

	jwt := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"6120847731","device_id":"3b6f1e0a9c2d4f81"}`)) + ".c2lnbmF0dXJl"

	nested := "data=" + base64.StdEncoding.EncodeToString(gz([]byte(`{"imei":"356938035643809","events":[{"$url":"https://a.example/"}]}`))) + "&sign=abc"

	cases := []struct {
		name string
		req  Request
		want map[string]string // path → text
	}{
		{"query with JSON and base64", Request{URL: "http://api.ad.intl.xiaomi.com/getSplashScreenAds?clientInfo=%7B%22deviceInfo%22%3A%7B%22imei%22%3A%22356938035643809%22%7D%7D&phone=KzkxOTgyMDAxMjM0NQ%3D%3D"},
			map[string]string{"query:clientInfo › json:deviceInfo.imei": "356938035643809", "query:phone › base64": "+919820012345", "path[0]": "getSplashScreenAds"}},
		{"form › base64 › gzip › json", Request{URL: "https://t.example/t", Headers: []Header{{"Content-Type", "application/x-www-form-urlencoded"}}, Body: []byte(nested)},
			map[string]string{"body › form:data › base64 › gzip › json:imei": "356938035643809", "body › form:data › base64 › gzip › json:events[0].$url": "https://a.example/", "body › form:sign": "abc"}},
		{"gzip by header, JSON batch", Request{URL: "https://t.example/b", Headers: []Header{{"Content-Encoding", "gzip"}}, Body: gz([]byte(`[{"event":"search","query":"loan"},{"event":"play","video_id":"dQw4w9WgXcQ"}]`))},
			map[string]string{"body › gzip › json:[0].query": "loan", "body › gzip › json:[1].video_id": "dQw4w9WgXcQ"}},
		{"brotli by header", Request{URL: "https://t.example/", Headers: []Header{{"Content-Encoding", "br"}}, Body: br.Bytes()},
			map[string]string{"body › br › json:gaid": "38400000-8cf0-11bd-b23e-10b96e40000d"}},
		{"zstd by magic", Request{URL: "https://t.example/", Body: zs},
			map[string]string{"body › zstd › form:oaid": "d8f1c2a4"}},
		{"protobuf", Request{URL: "https://t.example/", Headers: []Header{{"Content-Type", "application/x-protobuf"}}, Body: pb},
			map[string]string{"body › protobuf:1": "356938035643809", "body › protobuf:2.1": "Redmi 4A", "body › protobuf:2.2": "720"}},
		{"JWT and cookies", Request{URL: "https://t.example/", Headers: []Header{{"Authorization", "Bearer " + jwt}, {"Cookie", "uid=abc123; _ga=GA1.2.1843271712.1731916201"}, {"X-Requested-With", "com.miui.securitycenter"}}},
			map[string]string{"header:Authorization › jwt:claims › json:sub": "6120847731", "header:Authorization › jwt:header › json:alg": "HS256", "cookie:_ga": "GA1.2.1843271712.1731916201", "header:X-Requested-With": "com.miui.securitycenter"}},
		{"multipart", Request{URL: "https://t.example/", Headers: []Header{{"Content-Type", "multipart/form-data; boundary=XyZ"}},
			Body: []byte("--XyZ\r\nContent-Disposition: form-data; name=\"imei\"\r\n\r\n356938035643809\r\n--XyZ\r\nContent-Disposition: form-data; name=\"log\"; filename=\"a.json\"\r\n\r\n{\"ssid\":\"HomeNet\"}\r\n--XyZ--\r\n")},
			map[string]string{"body › multipart:imei": "356938035643809", "body › multipart:log(a.json) › json:ssid": "HomeNet"}},
		{"hex of JSON", Request{URL: "https://t.example/?d=" + hex.EncodeToString([]byte(`{"mac":"64:cc:2e:9a:41:7d"}`))},
			map[string]string{"query:d › hex › json:mac": "64:cc:2e:9a:41:7d"}},
		{"values that must stay as they are", Request{URL: "https://t.example/?md5=4c1d1c5c2f0bb4e1a8e6f1f5f0a8d9b3&w=connectionType&ts=1731916800000&v=7.1.2"},
			map[string]string{"query:md5": "4c1d1c5c2f0bb4e1a8e6f1f5f0a8d9b3", "query:w": "connectionType", "query:ts": "1731916800000", "query:v": "7.1.2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Decode(c.req, Limits{})
			for path, text := range c.want {
				if v := find(t, r, path); v.Text != text {
					t.Errorf("%s = %q, want %q", path, v.Text, text)
				}
			}
			if len(r.Limits) > 0 {
				t.Errorf("limits hit: %v", r.Limits)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	r := Decode(Request{URL: "https://t.example/?clientInfo=%7B%22deviceInfo%22%3A%7B%22imei%22%3A%221%22%7D%7D"}, Limits{})
	if v := find(t, r, "query:clientInfo › json:deviceInfo.imei"); v.Key != "imei" {
		t.Errorf("key %q", v.Key)
	}
	r = Decode(Request{URL: "https://t.example/?phone=KzkxOTgyMDAxMjM0NQ"}, Limits{})
	if v := find(t, r, "query:phone › base64"); v.Key != "phone" {
		t.Errorf("a decoded value keeps the key it was sent under: %q", v.Key)
	}
}

func TestOpaque(t *testing.T) {
	random := make([]byte, 512)
	rand.Read(random)
	r := Decode(Request{URL: "https://t.example/", Body: random}, Limits{})
	if len(r.Opaque) != 1 || r.Opaque[0].Path != "body" || r.Opaque[0].Entropy < 7 || len(r.Values) != 0 {
		t.Errorf("random body: opaque %+v, values %d", r.Opaque, len(r.Values))
	}
	enc := base64.StdEncoding.EncodeToString(random[:48])
	r = Decode(Request{URL: "https://t.example/", Body: []byte("data=" + pctEscape(enc) + "&sign=1")}, Limits{})
	if len(r.Opaque) != 1 || r.Opaque[0].Path != "body › form:data › base64" {
		t.Errorf("encrypted base64 field: %+v", r.Opaque)
	}
	// a prefixed UUID (Facebook's anon_id) is an identifier, not base64 of something
	r = Decode(Request{URL: "https://t.example/?anon_id=XZ7a1c3f0e-5b2d-4e8a-9c61-0f3e2d1b4a57"}, Limits{})
	if len(r.Opaque) != 0 || len(r.Values) != 1 || r.Values[0].Path != "query:anon_id" {
		t.Errorf("prefixed UUID: opaque %+v, values %+v", r.Opaque, r.Values)
	}
}

func pctEscape(s string) string {
	return strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(s)
}

func TestLimits(t *testing.T) {
	bomb := gz(make([]byte, 50<<20))
	r := Decode(Request{URL: "https://t.example/", Headers: []Header{{"Content-Encoding", "gzip"}}, Body: bomb}, Limits{})
	if len(r.Limits) == 0 || !strings.Contains(r.Limits[0], "expansion") {
		t.Errorf("a 50 MB gzip bomb must hit the expansion limit: %v", r.Limits)
	}
	deep := `"x"`
	for i := 0; i < 14; i++ { // each level doubles the escaping
		deep = fmt.Sprintf(`{"a":%q}`, deep)
	}
	r = Decode(Request{URL: "https://t.example/", Body: []byte(deep)}, Limits{MaxDepth: 10})
	if len(r.Limits) == 0 || !strings.Contains(r.Limits[0], "depth") {
		t.Errorf("JSON in JSON 14 deep must hit the depth limit: %v", r.Limits)
	}
	many := strings.Repeat("a=1&", 5000)
	r = Decode(Request{URL: "https://t.example/?" + many}, Limits{MaxValues: 100})
	if len(r.Values) != 100 || len(r.Limits) != 1 {
		t.Errorf("values %d limits %v", len(r.Values), r.Limits)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("http://a.example/x?y=eyJhIjoxfQ", "gzip", gz([]byte(`{"a":"b"}`)))
	f.Add("https://a.example/", "", []byte("data=H4sIAAAAAAAA/6tWSkosSlWyUkpKLEpVqgUAF7ry0xEAAAA%3D&x=1"))
	f.Add("https://a.example/", "br", []byte{0x0b, 0x02, 0x80, 0x7b, 0x7d, 0x03})
	var small bytes.Buffer // a window within the fuzzing limit of 1 MiB
	bw := brotli.NewWriterOptions(&small, brotli.WriterOptions{Quality: 5, LGWin: 16})
	bw.Write([]byte(`{"a":"YmFzZTY0"}`))
	bw.Close()
	f.Add("https://a.example/", "br", small.Bytes())
	f.Add("https://a.example/", "", []byte{0x0a, 0x03, 'a', 'b', 'c', 0x12, 0x02, 0x08, 0x01})
	f.Add("https://a.example/", "", []byte(`<plist><dict><key>k</key><string>dmFsdWU=</string></dict></plist>`))
	f.Add("https://a.example/", "", []byte(`<a x="1"><b>2</b><c/></a>`))
	f.Fuzz(func(t *testing.T, u, enc string, body []byte) {
		r := Decode(Request{URL: u, Headers: []Header{{"Content-Encoding", enc}, {"Content-Type", "multipart/form-data; boundary=b"}}, Body: body},
			Limits{MaxDecoded: 1 << 20, MaxValues: 1000})
		if len(r.Values) > 1000 {
			t.Fatal("value limit not honoured")
		}
	})
}

// trackerRequest is a typical 2 KB tracker call: a form with analytics fields
// and a gzip-compressed JSON batch inside base64.
func trackerRequest() Request {
	batch := `{"events":[` + strings.Repeat(`{"event":"page_finished","url":"https://www.example.com/news/2026/11/18/story","ts":1731916800000},`, 6) +
		`{"event":"search","query":"loan against salary"}],"android_id":"3b6f1e0a9c2d4f81","model":"Redmi 4A","carrier":"Jio 4G","screen":"720x1280"}`
	body := "sender=com.miui.systemAdSolution&event=splash_show&ts=1731916800000&android_id=3b6f1e0a9c2d4f81&oaid=d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90" +
		"&model=Redmi+4A&miui=V8.5.4.0.NCCMIED&locale=en_IN&net=wifi&data=" + pctEscape(base64.StdEncoding.EncodeToString(gz([]byte(batch))))
	return Request{URL: "https://tracking.intl.miui.com/track/v1?v=2&sign=4b1c1e4e0f7c7b8f9a4e2d1c6b5a3f20",
		Headers: []Header{{"User-Agent", "Dalvik/2.1.0 (Linux; U; Android 7.1.2; Redmi 4A MIUI/V8.5.4.0.NCCMIED)"}, {"Content-Type", "application/x-www-form-urlencoded"}},
		Body:    []byte(body)}
}

func BenchmarkDecodeTrackerRequest(b *testing.B) {
	req := trackerRequest()
	b.SetBytes(int64(len(req.Body) + len(req.URL)))
	b.ReportAllocs()
	for b.Loop() {
		r := Decode(req, Limits{})
		if len(r.Values) < 20 {
			b.Fatal(len(r.Values))
		}
	}
}

// gzipRequest is a typical compressed upload: 6 KB of JSON events, gzip by
// its header.
func gzipRequest() Request {
	batch := `{"events":[` + strings.Repeat(`{"event":"page_finished","url":"https://www.example.com/news/2026/11/18/story","ts":1731916800000,"session":"9c2d4f81"},`, 48) +
		`{"event":"search","query":"loan against salary"}],"android_id":"3b6f1e0a9c2d4f81","model":"Redmi 4A","carrier":"Jio 4G","screen":"720x1280"}`
	return Request{URL: "https://events.example.com/v2/batch",
		Headers: []Header{{"Content-Type", "application/json"}, {"Content-Encoding", "gzip"}},
		Body:    gz([]byte(batch))}
}

// BenchmarkDecodeGzipBody decodes a gzip request with one Decoder, as the
// detect engine's pooled workers do.
func BenchmarkDecodeGzipBody(b *testing.B) {
	req := gzipRequest()
	var d Decoder
	b.SetBytes(int64(len(req.Body)))
	b.ReportAllocs()
	for b.Loop() {
		r := d.Decode(req, Limits{})
		if len(r.Values) < 200 {
			b.Fatal(len(r.Values))
		}
	}
}

// TestMalformedJSON: text that only looks like JSON is kept as text, and no
// value from the failed walk leaks out.
func TestMalformedJSON(t *testing.T) {
	for _, in := range []string{`{"imei":"356938035643809"`, `{"a":tru}`, `[1,2`, `{"a" "b"}`, `{"a":"b"}x`, `{"a":"\u12"}`, `{"a":[{"b":1},]}`} {
		r := Decode(Request{URL: "https://t.example/", Body: []byte(in)}, Limits{})
		if len(r.Values) != 1 || r.Values[0].Text != in || r.Values[0].Path != "body" {
			t.Errorf("%q: %+v", in, r.Values)
		}
	}
	r := Decode(Request{URL: "https://t.example/", Body: []byte(`{"s":"a\"b\\c\u00e9\ud83d\ude00","n":-1.5e3,"t":true,"z":null,"e":{},"l":[]}`)}, Limits{})
	want := map[string]string{"body › json:s": "a\"b\\cé😀", "body › json:n": "-1.5e3", "body › json:t": "true"}
	for p, v := range want {
		if got := find(t, r, p); got.Text != v {
			t.Errorf("%s = %q, want %q", p, got.Text, v)
		}
	}
	if len(r.Values) != 3 {
		t.Errorf("null, {} and [] carry no value: %+v", r.Values)
	}
}

func TestXMLAndPlist(t *testing.T) {
	soap := `<?xml version="1.0"?><Envelope><Body><Report device="SM-G991B"><imei>356938035643809</imei><loc lat="52.52" lng="13.40"/></Report></Body></Envelope>`
	r := Decode(Request{URL: "https://t.example/x", Headers: []Header{{"Content-Type", "text/xml"}}, Body: []byte(soap)}, Limits{})
	got := map[string]string{}
	for _, v := range r.Values {
		got[v.Path] = v.Text
	}
	for path, want := range map[string]string{
		"body › xml:Envelope.Body.Report.imei":    "356938035643809",
		"body › xml:Envelope.Body.Report@device":  "SM-G991B",
		"body › xml:Envelope.Body.Report.loc@lat": "52.52",
	} {
		if got[path] != want {
			t.Errorf("%s = %q, want %q (all: %v)", path, got[path], want, got)
		}
	}
	plist := `<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>idfa</key><string>6D92078A-8246-4BA4-AE5B-76104861E7DC</string><key>payload</key><string>eyJlbWFpbCI6ImFAYi5jb20ifQ==</string><key>n</key><integer>3</integer></dict></plist>`
	r = Decode(Request{URL: "https://t.example/x", Body: []byte(plist)}, Limits{})
	got = map[string]string{}
	keys := map[string]string{}
	for _, v := range r.Values {
		got[v.Path] = v.Text
		keys[v.Path] = v.Key
	}
	if got["body › plist:idfa"] != "6D92078A-8246-4BA4-AE5B-76104861E7DC" || keys["body › plist:idfa"] != "idfa" {
		t.Errorf("plist keys name their values: %v", got)
	}
	if got["body › plist:payload › base64 › json:email"] != "a@b.com" {
		t.Errorf("plist values are decoded further: %v", got)
	}
	// not XML: left as text
	r = Decode(Request{URL: "https://t.example/", Body: []byte("<b>unclosed")}, Limits{})
	if len(r.Values) != 1 || r.Values[0].Path != "body" {
		t.Errorf("broken XML: %+v", r.Values)
	}
}
