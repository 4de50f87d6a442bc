package policy

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"phonehome/internal/decode"
	"phonehome/internal/detect"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/flow"

	"google.golang.org/protobuf/encoding/protowire"
)

const (
	redactIMEI = "356938035643809"
	redactADID = "d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90"
)

var redactKinds = []flow.Kind{pii.IMEI, pii.AdvertisingID}

func redactGzip(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// redactBatch is a telemetry batch of at least n bytes carrying the IMEI and
// the advertising ID, its events distinct as real ones are.
func redactBatch(n int) string {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"event":"page_finished","url":"https://www.example.com/news/2026/11/%02d/story-%x","ts":%d,"dur":%d},`,
			i%28+1, i*7919, 1731916800000+int64(i)*15331, i*37%1000)
	}
	b.WriteString(`{"event":"search","query":"loan against salary"}],"imei":"` + redactIMEI + `","gaid":"` + redactADID +
		`","model":"Redmi 4A","carrier":"Jio 4G","screen":"720x1280"}`)
	return b.String()
}

// redactRequests are one request in each wrapping; the batch inside is 2 KB.
func redactRequests() map[string]*flow.Request { return redactRequestsOf(redactBatch(1800)) }

func redactRequestsOf(batch string) map[string]*flow.Request {
	form := "sender=com.example.app&event=splash_show&ts=1731916800000&model=Redmi+4A&locale=en_IN&data=" +
		url.QueryEscape(base64.StdEncoding.EncodeToString(redactGzip([]byte(batch))))
	formCT := flow.Header{Name: "Content-Type", Value: "application/x-www-form-urlencoded"}
	body := func(b []byte) flow.Body { return flow.Body{Data: b, Size: int64(len(b))} }
	return map[string]*flow.Request{
		"form-base64-gzip-json": {Method: "POST", URL: "https://tracking.example.com/track/v1?v=2",
			Headers: flow.Headers{formCT, {Name: "Content-Length", Value: strconv.Itoa(len(form))}}, Body: body([]byte(form))},
		"gzip-json": {Method: "POST", URL: "https://tracking.example.com/batch",
			Headers: flow.Headers{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Encoding", Value: "gzip"}},
			Body:    body(redactGzip([]byte(batch)))},
		"query": {Method: "GET", URL: "https://tracking.example.com/p?imei=" + redactIMEI + "&gaid=" + redactADID + "&v=1"},
		"query-base64url-json": {Method: "GET", URL: "https://tracking.example.com/p?e=" +
			base64.RawURLEncoding.EncodeToString([]byte(batch)) + "&v=1"},
		"json-in-string": {Method: "POST", URL: "https://tracking.example.com/",
			Body: body([]byte(`{"payload":` + strconv.Quote(batch) + `,"v":1}`))},
		"multipart": {Method: "POST", URL: "https://tracking.example.com/upload",
			Headers: flow.Headers{{Name: "Content-Type", Value: "multipart/form-data; boundary=XyZ"}},
			Body: body([]byte("--XyZ\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n" + batch +
				"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"imei\"\r\n\r\n" + redactIMEI + "\r\n--XyZ--\r\n"))},
		"xml": {Method: "POST", URL: "https://tracking.example.com/", Headers: flow.Headers{{Name: "Content-Type", Value: "text/xml"}},
			Body: body([]byte(`<report><imei>` + redactIMEI + `</imei><gaid>` + redactADID + `</gaid><model>Redmi 4A</model></report>`))},
		"gzip-protobuf": {Method: "POST", URL: "https://tracking.example.com/log",
			Headers: flow.Headers{{Name: "Content-Type", Value: "application/x-protobuf"}, {Name: "Content-Encoding", Value: "gzip"}},
			Body:    body(redactGzip(redactProto()))},
		"headers": {Method: "GET", URL: "https://tracking.example.com/",
			Headers: flow.Headers{{Name: "Cookie", Value: "sid=abc123; imei=" + redactIMEI + "; gaid=" + redactADID + "; lang=en"}, {Name: "X-Device", Value: redactIMEI}}},
	}
}

// redactProto is a protobuf message: a model, and a nested message with the
// IMEI, a counter and a name. (A bare UUID in a field with no name is no
// advertising ID that detection could tell.)
func redactProto() []byte {
	var sub []byte
	sub = protowire.AppendTag(sub, 1, protowire.BytesType)
	sub = protowire.AppendString(sub, redactIMEI)
	sub = protowire.AppendTag(sub, 2, protowire.VarintType)
	sub = protowire.AppendVarint(sub, 7)
	sub = protowire.AppendTag(sub, 3, protowire.BytesType)
	sub = protowire.AppendString(sub, "splash_show")
	var pb []byte
	pb = protowire.AppendTag(pb, 1, protowire.BytesType)
	pb = protowire.AppendString(pb, "Redmi 4A")
	pb = protowire.AppendTag(pb, 2, protowire.BytesType)
	return protowire.AppendBytes(pb, sub)
}

func redactEngine() *detect.Engine {
	return detect.New(trackers.Builtin(), pii.New(""), decode.Limits{})
}

func redactFlow(e *detect.Engine, r *flow.Request, client string) *flow.Flow {
	f := &flow.Flow{Host: "tracking.example.com", Transport: flow.TransportHTTPS, Request: r,
		Client: flow.Endpoint{Addr: netip.MustParseAddr(client), Port: 40000}}
	e.Inspect(f)
	return f
}

func redactValues(r *flow.Request) map[string][]string {
	m := map[string][]string{}
	for _, v := range decode.Decode(decode.FromFlow(r), decode.Limits{}).Values {
		m[v.Path] = append(m[v.Path], v.Text)
	}
	return m
}

func TestRedactEveryWrapping(t *testing.T) {
	e := redactEngine()
	for name, r := range redactRequests() {
		t.Run(name, func(t *testing.T) {
			orig := CopyRequest(r)
			f := redactFlow(e, r, "192.168.1.20")
			var kinds []string
			for _, fd := range f.Findings {
				kinds = append(kinds, string(fd.Kind)+"@"+fd.Path)
			}
			out, reds, err := Redact(f, redactKinds, false)
			if err != nil {
				t.Fatalf("Redact: %v (findings %v)", err, kinds)
			}
			if len(reds) == 0 {
				t.Errorf("redactions %v, findings %v", reds, kinds)
			}
			if r.URL != orig.URL || !bytes.Equal(r.Body.Data, orig.Body.Data) || len(r.Headers) != len(orig.Headers) {
				t.Fatal("the observed request was changed")
			}
			before, after := redactValues(r), redactValues(out)
			for p, vs := range after {
				for _, v := range vs {
					if strings.Contains(v, redactIMEI) || strings.Contains(v, redactADID) {
						t.Errorf("%s still holds %q", p, v)
					}
				}
			}
			for p, vs := range before {
				if strings.Contains(strings.Join(vs, ""), redactIMEI) || strings.Contains(strings.Join(vs, ""), redactADID) {
					continue
				}
				if strings.Join(after[p], "\x00") != strings.Join(vs, "\x00") {
					t.Errorf("%s: was %q, now %q", p, vs, after[p])
				}
			}
			if cl := out.Headers.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(out.Body.Data)) {
				t.Errorf("Content-Length %s, body %d", cl, len(out.Body.Data))
			}
			if out.Body.Size != int64(len(out.Body.Data)) {
				t.Errorf("Body.Size %d, body %d", out.Body.Size, len(out.Body.Data))
			}
			if ce := out.Headers.Get("Content-Encoding"); ce == "gzip" {
				if zr, err := gzip.NewReader(bytes.NewReader(out.Body.Data)); err != nil {
					t.Errorf("the body is no longer gzip: %v", err)
				} else if _, err := new(bytes.Buffer).ReadFrom(zr); err != nil {
					t.Errorf("the body is no longer gzip: %v", err)
				}
			}
			if strings.Contains(name, "form") {
				if _, err := url.ParseQuery(string(out.Body.Data)); err != nil {
					t.Errorf("the form no longer parses: %v", err)
				}
			}
			if _, err := url.Parse(out.URL); err != nil {
				t.Errorf("the URL no longer parses: %v", err)
			}
		})
	}
}

func TestRedactFakes(t *testing.T) {
	e := redactEngine()
	fakes := func(client string) (imei, adid string) {
		f := redactFlow(e, redactRequests()["gzip-json"], client)
		out, _, err := Redact(f, redactKinds, true)
		if err != nil {
			t.Fatal(err)
		}
		after := redactValues(out)
		return strings.Join(after["body › gzip › json:imei"], ","), strings.Join(after["body › gzip › json:gaid"], ",")
	}
	imei, adid := fakes("192.168.1.20")
	if len(imei) != 15 || strings.Trim(imei, "0123456789") != "" || luhnDigit([]byte(imei[:14])) != imei[14] || imei == redactIMEI {
		t.Errorf("fake IMEI %q is not a Luhn-valid IMEI", imei)
	}
	if len(adid) != 36 || adid[14] != '4' || strings.Count(adid, "-") != 4 || adid == redactADID {
		t.Errorf("fake advertising ID %q is not a UUID", adid)
	}
	if i2, a2 := fakes("192.168.1.20"); i2 != imei || a2 != adid {
		t.Errorf("fakes of one device differ: %s %s, then %s %s", imei, adid, i2, a2)
	}
	if i3, a3 := fakes("192.168.1.21"); i3 == imei || a3 == adid {
		t.Errorf("two devices share a fake: %s %s", i3, a3)
	}
	// The same value in another wrapping gets the same fake.
	f := redactFlow(e, redactRequests()["query"], "192.168.1.20")
	out, _, err := Redact(f, redactKinds, true)
	if err != nil {
		t.Fatal(err)
	}
	if v := redactValues(out); strings.Join(v["query:imei"], "") != imei || strings.Join(v["query:gaid"], "") != adid {
		t.Errorf("query fakes %v, body fakes %s %s", v, imei, adid)
	}
}

func TestFakeShapes(t *testing.T) {
	if v := fakeOf(pii.AndroidID, "d", "3b6f1e0a9c2d4f81"); len(v) != 16 || strings.Trim(v, "0123456789abcdef") != "" {
		t.Errorf("android ID %q", v)
	}
	v := fakeOf(pii.Location, "d", "37.4219983")
	x, err := strconv.ParseFloat(v, 64)
	if d := x - 37.4219983; err != nil || d == 0 || d > 0.05 || d < -0.05 || len(v) != len("37.4219983") {
		t.Errorf("latitude %q", v)
	}
	if v := fakeOf(pii.Location, "d", "37.42200,-122.08400"); strings.Count(v, ",") != 1 || strings.Contains(v, "37.42200") {
		t.Errorf("pair %q", v)
	}
	if v := fakeOf(pii.Email, "d", "jane.doe@example.com"); len(v) != 20 || !strings.Contains(v, "@") || v == "jane.doe@example.com" {
		t.Errorf("email %q", v)
	}
}

func TestRedactRefusesSignedToken(t *testing.T) {
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"imei":"` + redactIMEI + `"}`))
	r := &flow.Request{Method: "GET", URL: "https://tracking.example.com/",
		Headers: flow.Headers{{Name: "Authorization", Value: "Bearer " + head + "." + claims + ".c2lnbmF0dXJlc2lnbmF0dXJl"}}}
	f := redactFlow(redactEngine(), r, "192.168.1.20")
	out, reds, err := Redact(f, redactKinds, false)
	if err == nil || out != nil || reds != nil {
		t.Fatalf("want an error and no request: %v %v %v (findings %v)", out, reds, err, f.Findings)
	}
	var le *decode.LayerError
	if !errors.As(err, &le) || le.Layer != "jwt" {
		t.Errorf("want a jwt LayerError: %v", err)
	}
}

// BenchmarkRedactWrapped: a 2 KB request (its batch decoded; 0.8 KB on the
// wire), form → base64 → gzip → JSON, the IMEI and the advertising ID
// removed, the copy decoded again to check.
func BenchmarkRedactWrapped(b *testing.B) {
	benchmarkRedact(b, redactBatch(1800), false)
}

func BenchmarkRedactWrappedFake(b *testing.B) {
	benchmarkRedact(b, redactBatch(1800), true)
}

// BenchmarkRedactWrapped2KBWire: the same with 2 KB on the wire (an 8 KB
// batch).
func BenchmarkRedactWrapped2KBWire(b *testing.B) {
	benchmarkRedact(b, redactBatch(8000), false)
}

func benchmarkRedact(b *testing.B, batch string, fake bool) {
	r := redactRequestsOf(batch)["form-base64-gzip-json"]
	f := redactFlow(redactEngine(), r, "192.168.1.20")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Redact(f, redactKinds, fake); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(r.Body.Data)), "wire-B")
	b.ReportMetric(float64(len(batch)), "batch-B")
}

func TestRedactRefusesWhatItCannotFinish(t *testing.T) {
	e := redactEngine()
	r := redactRequests()["gzip-json"]
	r.Body.Truncated = true
	if out, _, err := Redact(redactFlow(e, r, "192.168.1.20"), redactKinds, false); !errors.Is(err, ErrNotRedacted) || out != nil {
		t.Errorf("a truncated body: %v", err)
	}
	f := redactFlow(e, redactRequests()["query"], "192.168.1.20")
	f.Findings = append(f.Findings, flow.Finding{Kind: pii.IMEI, Value: redactIMEI, Path: "body › json:imei"})
	if out, _, err := Redact(f, redactKinds, false); !errors.Is(err, ErrNotRedacted) || out != nil {
		t.Errorf("a path with no value: %v", err)
	}
	f = redactFlow(e, redactRequests()["query"], "192.168.1.20")
	out, reds, err := Redact(f, []flow.Kind{pii.Email}, false)
	if err != nil || len(reds) != 0 || out == nil || out == f.Request || out.URL != f.Request.URL {
		t.Errorf("no finding of the kinds: %v %v %v", out, reds, err)
	}
}
