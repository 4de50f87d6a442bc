package decode

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"
)

// values maps each path to its values, in order.
func values(r Result) map[string][]string {
	m := map[string][]string{}
	for _, v := range r.Values {
		m[v.Path] = append(m[v.Path], v.Text)
	}
	return m
}

// checkEdit edits r at the paths of every value equal to secret, and checks
// that the result has secret nowhere and every other value as it was.
func checkEdit(t *testing.T, r Request, secret string, fake string) Request {
	t.Helper()
	before := Decode(r, Limits{})
	changes := map[string]Change{}
	for _, v := range before.Values {
		if strings.Contains(v.Text, secret) {
			changes[v.Path] = func(old string) (string, bool) {
				if fake == "" {
					return "", false
				}
				return strings.ReplaceAll(old, secret, fake), true
			}
		}
	}
	if len(changes) == 0 {
		t.Fatalf("%q not decoded from the request: %v", secret, before.Values)
	}
	out, missed, err := Edit(r, changes, Limits{})
	if err != nil || len(missed) > 0 {
		t.Fatalf("Edit: missed %v, err %v", missed, err)
	}
	after := Decode(out, Limits{})
	for _, v := range after.Values {
		if strings.Contains(v.Text, secret) {
			t.Errorf("%s still holds the secret: %q", v.Path, v.Text)
		}
	}
	bm, am := values(before), values(after)
	for p, vs := range bm {
		if _, edited := changes[p]; edited {
			if fake == "" {
				if len(am[p]) != 0 {
					t.Errorf("%s: removed value still there: %v", p, am[p])
				}
			} else if got := am[p]; len(got) != len(vs) || !strings.Contains(strings.Join(got, "\x00"), fake) {
				t.Errorf("%s: want the fake %q, got %v", p, fake, got)
			}
			continue
		}
		if strings.Join(am[p], "\x00") != strings.Join(vs, "\x00") {
			t.Errorf("%s: was %q, now %q", p, vs, am[p])
		}
	}
	for p := range am {
		if _, ok := bm[p]; !ok {
			t.Errorf("new path after the edit: %s", p)
		}
	}
	for _, h := range out.Headers {
		if strings.EqualFold(h.Name, "content-length") && h.Value != strconv.Itoa(len(out.Body)) {
			t.Errorf("Content-Length %s for a body of %d", h.Value, len(out.Body))
		}
	}
	return out
}

const (
	imei   = "356938035643809"
	adid   = "d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90"
	fakeID = "5f0e3c1b-2a4d-4c6e-8f90-1a2b3c4d5e6f"
)

func gzBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func wrappedRequests() map[string]Request {
	inner := `{"events":[{"event":"open","ts":1731916800000},{"event":"close","imei":"` + imei + `"}],"imei":"` + imei +
		`","gaid":"` + adid + `","model":"Redmi 4A","n":3,"ok":true,"nil":null}`
	form := "sender=com.example.app&ts=1731916800000&data=" + url.QueryEscape(base64.StdEncoding.EncodeToString(gzBytes([]byte(inner)))) + "&x=1"
	ct := Header{"Content-Type", "application/x-www-form-urlencoded"}
	var br, zs bytes.Buffer
	bw := brotli.NewWriterLevel(&br, 5)
	bw.Write([]byte(inner))
	bw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write([]byte(inner))
	zw.Close()
	var pb []byte
	pb = protowire.AppendTag(pb, 1, protowire.BytesType)
	pb = protowire.AppendString(pb, "Redmi 4A")
	pb = protowire.AppendTag(pb, 2, protowire.BytesType)
	var sub []byte
	sub = protowire.AppendTag(sub, 1, protowire.BytesType)
	sub = protowire.AppendString(sub, imei)
	sub = protowire.AppendTag(sub, 2, protowire.VarintType)
	sub = protowire.AppendVarint(sub, 7)
	pb = protowire.AppendBytes(pb, sub)
	pb = protowire.AppendTag(pb, 3, protowire.BytesType)
	pb = protowire.AppendString(pb, adid)
	return map[string]Request{
		"form-base64-gzip-json": {URL: "https://t.example/v1/track?v=2", Headers: []Header{ct, {"Content-Length", strconv.Itoa(len(form))}}, Body: []byte(form)},
		"gzip-json": {URL: "https://t.example/batch", Headers: []Header{{"Content-Type", "application/json"}, {"Content-Encoding", "gzip"}},
			Body: gzBytes([]byte(inner))},
		"br-json":              {URL: "https://t.example/batch", Headers: []Header{{"Content-Encoding", "br"}}, Body: br.Bytes()},
		"zstd-json":            {URL: "https://t.example/batch", Headers: []Header{{"Content-Encoding", "zstd"}}, Body: zs.Bytes()},
		"query-base64url-json": {URL: "https://t.example/p?e=" + base64.RawURLEncoding.EncodeToString([]byte(inner)) + "&v=1&imei=" + imei},
		"json-in-string":       {URL: "https://t.example/", Body: []byte(`{"payload":` + strconv.Quote(inner) + `,"v":1}`)},
		"hex-json":             {URL: "https://t.example/", Body: []byte("d=" + hex.EncodeToString([]byte(inner)) + "&v=1")},
		"pct-json":             {URL: "https://t.example/", Body: []byte(`{"q":"` + url.QueryEscape(inner) + `","v":1}`)},
		"cookie-header": {URL: "https://t.example/", Headers: []Header{{"Cookie", "sid=abc123; imei=" + imei + "; lang=en"},
			{"X-Device", imei}, {"Authorization", "Bearer " + base64.StdEncoding.EncodeToString([]byte(inner))}}},
		"protobuf": {URL: "https://t.example/", Headers: []Header{{"Content-Type", "application/x-protobuf"}}, Body: pb},
		"multipart": {URL: "https://t.example/upload", Headers: []Header{{"Content-Type", "multipart/form-data; boundary=xYzZY"}},
			Body: []byte("preamble\r\n--xYzZY\r\nContent-Disposition: form-data; name=\"meta\"\r\n\r\n" + inner +
				"\r\n--xYzZY\r\nContent-Disposition: form-data; name=\"imei\"\r\n\r\n" + imei +
				"\r\n--xYzZY\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello " + imei + " there\r\n--xYzZY--\r\n")},
		"multipart-lf-gzip": {URL: "https://t.example/upload", Headers: []Header{{"Content-Type", "multipart/form-data; boundary=b"}},
			Body: []byte("--b\nContent-Disposition: form-data; name=\"x\"\n\n" + base64.StdEncoding.EncodeToString(gzBytes([]byte(inner))) + "\n--b\nContent-Disposition: form-data; name=\"y\"\n\n1\n--b--\n")},
		"xml": {URL: "https://t.example/", Headers: []Header{{"Content-Type", "text/xml"}},
			Body: []byte(`<?xml version="1.0"?>` + "\n" + `<device id="` + imei + `" kind='phone'><imei> ` + imei + ` </imei><model>Redmi &amp; 4A</model>` +
				`<blob>` + base64.StdEncoding.EncodeToString([]byte(inner)) + `</blob><empty/></device>`)},
		"jwt-none": {URL: "https://t.example/", Headers: []Header{{"Authorization", "Bearer " +
			base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(inner)) + "."}}},
		"zlib-base64-protobuf": {URL: "https://t.example/", Body: []byte(`{"blob":"` + base64.StdEncoding.EncodeToString(zlibBytes(pb)) + `"}`)},
	}
}

func zlibBytes(b []byte) []byte {
	var buf bytes.Buffer
	if err := zlibTo(&buf, b); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func TestEditRemoves(t *testing.T) {
	for name, r := range wrappedRequests() {
		t.Run(name, func(t *testing.T) {
			orig := append([]byte(nil), r.Body...)
			checkEdit(t, r, imei, "")
			if !bytes.Equal(orig, r.Body) {
				t.Error("the request was changed")
			}
		})
	}
}

func TestEditSubstitutes(t *testing.T) {
	for name, r := range wrappedRequests() {
		t.Run(name, func(t *testing.T) {
			if strings.Contains(name, "protobuf") || strings.Contains(name, "json") {
				checkEdit(t, r, adid, fakeID)
			}
			checkEdit(t, r, imei, "490154203237518")
		})
	}
}

func TestEditKeepsUntouchedBytes(t *testing.T) {
	body := `{ "a" : 1 ,  "imei":"` + imei + `", "b": [ 1, 2 ] }`
	r := Request{URL: "https://t.example/", Body: []byte(body)}
	out, _, err := Edit(r, map[string]Change{"body › json:imei": func(string) (string, bool) { return "", false }}, Limits{})
	if err != nil || string(out.Body) != `{ "a" : 1, "b": [ 1, 2 ] }` {
		t.Fatalf("%q %v", out.Body, err)
	}
	out, _, _ = Edit(r, map[string]Change{"body › json:a": func(string) (string, bool) { return "", false }}, Limits{})
	if string(out.Body) != `{ "imei":"`+imei+`", "b": [ 1, 2 ] }` {
		t.Fatalf("%q", out.Body)
	}
	out, _, _ = Edit(r, map[string]Change{"body › json:b[1]": func(string) (string, bool) { return "", false }}, Limits{})
	if string(out.Body) != `{ "a" : 1 ,  "imei":"`+imei+`", "b": [ 1 ] }` {
		t.Fatalf("%q", out.Body)
	}
	out, missed, _ := Edit(r, map[string]Change{"body › json:zzz": func(string) (string, bool) { return "", false }}, Limits{})
	if string(out.Body) != body || len(missed) != 1 {
		t.Fatalf("%q %v", out.Body, missed)
	}
}

func TestEditRefusesWhatItCannotReencode(t *testing.T) {
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"imei":"` + imei + `"}`))
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`))
	r := Request{URL: "https://t.example/", Body: []byte(`{"token":"` + head + "." + claims + `.c2lnbmF0dXJl"}`)}
	res := Decode(r, Limits{})
	var p string
	for _, v := range res.Values {
		if v.Text == imei {
			p = v.Path
		}
	}
	if p == "" {
		t.Fatalf("no imei in %v", res.Values)
	}
	out, _, err := Edit(r, map[string]Change{p: func(string) (string, bool) { return "", false }}, Limits{})
	le, ok := err.(*LayerError)
	if !ok || le.Layer != "jwt" || out.Body != nil {
		t.Fatalf("want a jwt LayerError and no request, got %v, %q", err, out.Body)
	}
}

// FuzzEdit: decode, edit one leaf, encode, decode: every other value is kept.
func FuzzEdit(f *testing.F) {
	for _, r := range wrappedRequests() {
		enc := ""
		for _, h := range r.Headers {
			if h.Name == "Content-Encoding" {
				enc = h.Value
			}
		}
		f.Add(r.URL, enc, r.Body, uint16(3))
	}
	f.Fuzz(func(t *testing.T, u, enc string, body []byte, pick uint16) {
		lim := Limits{MaxDecoded: 1 << 20, MaxValues: 1000}
		r := Request{URL: u, Headers: []Header{{"Content-Encoding", enc}, {"Content-Type", "multipart/form-data; boundary=b"}}, Body: body}
		before := Decode(r, lim)
		if len(before.Values) == 0 || len(before.Limits) > 0 {
			return
		}
		target := before.Values[int(pick)%len(before.Values)]
		const fake = "phonehome-fake-value"
		out, missed, err := Edit(r, map[string]Change{target.Path: func(string) (string, bool) { return fake, true }}, lim)
		if err != nil {
			if _, ok := err.(*LayerError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if len(missed) > 0 {
			t.Fatalf("missed %v though decoded", missed)
		}
		after := Decode(out, lim)
		if len(after.Limits) > 0 {
			return // the edited request decodes to more than the limits let through
		}
		bm, am := values(before), values(after)
		for p, vs := range bm {
			if p == target.Path {
				continue
			}
			if strings.HasPrefix(p, target.Path) {
				continue // below the edited value (a layer that became a leaf)
			}
			if strings.Join(am[p], "\x00") != strings.Join(vs, "\x00") {
				t.Fatalf("%s: was %q, now %q (edited %s)", p, vs, am[p], target.Path)
			}
		}
		if got := am[target.Path]; !strings.Contains(strings.Join(got, "\x00"), fake) {
			t.Fatalf("%s: the fake is not there: %q", target.Path, got)
		}
	})
}

// BenchmarkEditWrapped: a 2 KB request, form → base64 → gzip → JSON, with
// the IMEI removed from the batch inside.
func BenchmarkEditWrapped(b *testing.B) {
	r := trackerRequest()
	res := Decode(r, Limits{})
	changes := map[string]Change{}
	for _, v := range res.Values {
		if v.Text == "3b6f1e0a9c2d4f81" {
			changes[v.Path] = func(string) (string, bool) { return "", false }
		}
	}
	if len(changes) < 2 {
		b.Fatalf("changes %v", changes)
	}
	b.SetBytes(int64(len(r.Body) + len(r.URL)))
	b.ReportAllocs()
	for b.Loop() {
		if _, missed, err := Edit(r, changes, Limits{}); err != nil || len(missed) > 0 {
			b.Fatal(err, missed)
		}
	}
}
