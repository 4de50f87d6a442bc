// Command gen writes the example captures embedded in phonehome: one morning of
// a Xiaomi phone on home Wi-Fi, as the two seed write-ups describe it.
//
//   - xiaomi-lan.pcap: what an ARP-spoofing laptop records. DNS lookups, the
//     cleartext ad API, a connectivity check, and TLS connections it cannot read.
//   - xiaomi-proxy.har: the same phone's HTTPS calls, decrypted by an
//     intercepting proxy: the tracker told which app sent it, a contact card
//     lookup with an encoded phone number, promoted-apps with the folder's
//     package names, and a browser's telemetry batch with events and annotations.
//
// The values are invented for the example (the IMEI is the well-known test
// number). Run with: go generate ./internal/example
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"phonehome/internal/capture/har"
	"phonehome/internal/capture/pcap"
	"phonehome/internal/flow"
	"phonehome/internal/synth"
)

var (
	start    = time.Date(2026, 11, 18, 7, 44, 2, 0, time.UTC)
	phone    = netip.MustParseAddr("192.168.1.23")
	router   = netip.MustParseAddr("192.168.1.1")
	device   = map[string]string{"imei": "356938035643809", "android_id": "3b6f1e0a9c2d4f81", "mi_account": "6120847731", "oaid": "d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90"}
	hostAddr = map[string]netip.Addr{
		"connect.rom.miui.com":            netip.MustParseAddr("161.117.71.36"),
		"api.ad.intl.xiaomi.com":          netip.MustParseAddr("161.117.97.142"),
		"tracking.intl.miui.com":          netip.MustParseAddr("161.117.96.161"),
		"us.micardapi.micloud.xiaomi.net": netip.MustParseAddr("20.42.73.27"),
		"global.market.xiaomi.com":        netip.MustParseAddr("161.117.71.152"),
		"global.api.huangye.miui.com":     netip.MustParseAddr("161.117.69.20"),
		"data.mistat.intl.xiaomi.com":     netip.MustParseAddr("161.117.97.50"),
		"graph.facebook.com":              netip.MustParseAddr("157.240.1.20"),
	}
)

func main() {
	dir := "data"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	tlsTimes, err := writePcap(filepath.Join(dir, "xiaomi-lan.pcap"))
	if err != nil {
		log.Fatal(err)
	}
	if err := writeHAR(filepath.Join(dir, "xiaomi-proxy.har"), tlsTimes); err != nil {
		log.Fatal(err)
	}
	if err := writeAfterHAR(filepath.Join(dir, "..", "after", "xiaomi-after-opt-out.har")); err != nil {
		log.Fatal(err)
	}
}

func adClientInfo() string {
	info := map[string]any{
		"deviceInfo": map[string]any{"model": "Redmi 4A", "device": "rolex", "os": "android", "androidVersion": "7.1.2",
			"miuiVersion": "V8.5.4.0.NCCMIED", "screenWidth": 720, "screenHeight": 1280, "imei": device["imei"], "mac": "64:cc:2e:9a:41:7d"},
		"userInfo": map[string]any{"locale": "en_IN", "language": "en", "country": "IN", "connectionType": "WIFI", "carrier": "Jio 4G"},
		"appInfo":  map[string]any{"packageName": "com.miui.home", "version": "4.3.2"},
	}
	b, _ := json.Marshal(info)
	return string(b)
}

// writePcap writes the LAN view and returns when each TLS connection began, so
// the decrypted view can line up with it.
func writePcap(path string) (tlsTimes []time.Time, err error) {
	fh, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	pw, err := pcap.NewWriter(fh, pcap.LinkEthernet)
	if err != nil {
		return nil, err
	}
	w := synth.New(pw, start)
	w.MAC[phone] = [6]byte{0x64, 0xcc, 0x2e, 0x9a, 0x41, 0x7d}
	dns := netip.AddrPortFrom(router, 53)
	port := uint16(40112)
	next := func() netip.AddrPort { port += 3; return netip.AddrPortFrom(phone, port) }
	id := uint16(0x3a10)
	lookup := func(host string) error {
		id++
		return w.DNS(next(), dns, id, host, hostAddr[host])
	}
	httpExchange := func(host, req, resp string) error {
		if err := lookup(host); err != nil {
			return err
		}
		c, err := w.TCP(next(), netip.AddrPortFrom(hostAddr[host], 80))
		if err != nil {
			return err
		}
		if err := c.Send(true, []byte(req)); err != nil {
			return err
		}
		w.Wait(40 * time.Millisecond)
		if err := c.Send(false, []byte(resp)); err != nil {
			return err
		}
		return c.Close()
	}
	tlsConn := func(host string, up, down int) error {
		if err := lookup(host); err != nil {
			return err
		}
		chunks, err := synth.TLSConversation(host, []string{"h2", "http/1.1"}, up, down)
		if err != nil {
			return err
		}
		tlsTimes = append(tlsTimes, w.Now)
		c, err := w.TCP(next(), netip.AddrPortFrom(hostAddr[host], 443))
		if err != nil {
			return err
		}
		for _, ch := range chunks {
			if err := c.Send(ch.FromClient, ch.Data); err != nil {
				return err
			}
		}
		return c.Close()
	}

	if err := httpExchange("connect.rom.miui.com",
		"GET /generate_204 HTTP/1.1\r\nHost: connect.rom.miui.com\r\nUser-Agent: Dalvik/2.1.0 (Linux; U; Android 7.1.2; Redmi 4A MIUI/V8.5.4.0.NCCMIED)\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nServer: Tengine\r\nDate: Wed, 18 Nov 2026 07:44:02 GMT\r\nConnection: close\r\n\r\n"); err != nil {
		return nil, err
	}
	w.Wait(1200 * time.Millisecond)
	q := url.Values{"clientInfo": {adClientInfo()}, "upId": {"1.1.1.1"}, "v": {"2.1"}, "sign": {"4b1c1e4e0f7c7b8f9a4e2d1c6b5a3f20"}}
	adBody := `{"code":0,"data":{"adInfos":[{"id":31245,"landingPageUrl":"http://global.market.xiaomi.com/app/detail?id=com.example.game","imgUrls":["http://t1.market.xiaomi.com/thumbnail/splash/1.jpg"],"duration":3000}]}}`
	if err := httpExchange("api.ad.intl.xiaomi.com",
		"GET /getSplashScreenAds?"+q.Encode()+" HTTP/1.1\r\nHost: api.ad.intl.xiaomi.com\r\nUser-Agent: Dalvik/2.1.0 (Linux; U; Android 7.1.2; Redmi 4A MIUI/V8.5.4.0.NCCMIED)\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
		fmt.Sprintf("HTTP/1.1 200 OK\r\nServer: Tengine\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(adBody), adBody)); err != nil {
		return nil, err
	}
	for i, h := range []struct {
		host     string
		up, down int
	}{
		{"tracking.intl.miui.com", 812, 164},
		{"us.micardapi.micloud.xiaomi.net", 402, 1210},
		{"tracking.intl.miui.com", 905, 164},
		{"global.market.xiaomi.com", 1603, 5120},
		{"global.api.huangye.miui.com", 733, 380},
		{"data.mistat.intl.xiaomi.com", 2118, 96},
	} {
		w.Wait(time.Duration(700+300*i) * time.Millisecond)
		if err := tlsConn(h.host, h.up, h.down); err != nil {
			return nil, err
		}
	}
	return tlsTimes, nil
}

// harBuilder collects decrypted exchanges; at gives the time of the i-th.
type harBuilder struct {
	flows []*flow.Flow
	at    func(i int) time.Time
}

func (hb *harBuilder) add(method, rawURL, ua, ctype string, body []byte, gzipped bool, status int, respBody string) {
	u, _ := url.Parse(rawURL)
	t := hb.at(len(hb.flows))
	req := &flow.Request{Method: method, URL: rawURL, Proto: "HTTP/1.1",
		Headers: flow.Headers{{Name: "Host", Value: u.Host}, {Name: "User-Agent", Value: ua}, {Name: "Accept-Encoding", Value: "gzip"}}}
	if body != nil {
		req.Headers = append(req.Headers, flow.Header{Name: "Content-Type", Value: ctype}, flow.Header{Name: "Content-Length", Value: fmt.Sprint(len(body))})
		if gzipped {
			req.Headers = append(req.Headers, flow.Header{Name: "Content-Encoding", Value: "gzip"})
		}
		req.Body = flow.Body{Data: body, Size: int64(len(body))}
	}
	resp := &flow.Response{Status: status, Reason: "OK", Proto: "HTTP/1.1",
		Headers: flow.Headers{{Name: "Server", Value: "Tengine"}, {Name: "Content-Type", Value: "application/json;charset=UTF-8"}},
		Body:    flow.Body{Data: []byte(respBody), Size: int64(len(respBody))}}
	hb.flows = append(hb.flows, &flow.Flow{Start: t, End: t.Add(148300 * time.Microsecond),
		Server: flow.Endpoint{Addr: hostAddr[u.Hostname()], Port: 443}, Request: req, Response: resp})
}

func (hb *harBuilder) write(path string) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := har.Write(fh, "phonehome example generator", hb.flows); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

const dalvik = "Dalvik/2.1.0 (Linux; U; Android 7.1.2; Redmi 4A MIUI/V8.5.4.0.NCCMIED)"

// track is the form MIUI's tracking SDK posts.
func track(sender, event string, ts time.Time, extra url.Values) []byte {
	v := url.Values{"sender": {sender}, "event": {event}, "ts": {fmt.Sprint(ts.UnixMilli())},
		"duration": {"2315"}, "android_id": {device["android_id"]}, "oaid": {device["oaid"]},
		"model": {"Redmi 4A"}, "miui": {"V8.5.4.0.NCCMIED"}, "locale": {"en_IN"}, "net": {"wifi"}}
	for k, x := range extra {
		v[k] = x
	}
	return []byte(v.Encode())
}

// browserBatch is the Mint browser's gzipped telemetry: events, each with the
// same annotations.
func browserBatch(at time.Time, evs []map[string]any) []byte {
	annotations := map[string]any{"instance_id": "6f3c2b9e-0d4a-4c8e-b1f7-2a9d5e8c7b13", "android_id": device["android_id"],
		"mi_account": device["mi_account"], "manufacturer": "Xiaomi", "model": "Redmi 4A", "browser_version": "3.4.3",
		"os_version": "Android 7.1.2", "language": "en_IN", "search_engine": "google", "carrier": "Jio 4G",
		"network": "wifi", "screen": "720x1280"}
	var events []map[string]any
	for i, ev := range evs {
		e := map[string]any{"ts": at.Add(time.Duration(i-len(evs)) * 9 * time.Second).UnixMilli()}
		for k, v := range ev {
			e[k] = v
		}
		for k, v := range annotations {
			e[k] = v
		}
		events = append(events, e)
	}
	batch, _ := json.Marshal(map[string]any{"app": "com.mi.globalbrowser.mini", "events": events})
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(batch)
	zw.Close()
	return gz.Bytes()
}

func writeHAR(path string, tlsTimes []time.Time) error {
	// each request rides the connection the LAN capture saw
	hb := &harBuilder{at: func(i int) time.Time { return tlsTimes[i].Add(31 * time.Millisecond) }}
	add := hb.add
	ok := `{"code":0,"msg":"ok"}`
	add("POST", "https://tracking.intl.miui.com/track/v1", dalvik, "application/x-www-form-urlencoded",
		track("com.miui.systemAdSolution", "splash_show", tlsTimes[0], url.Values{"ad_id": {"31245"}}), false, 200, ok)
	add("GET", "https://us.micardapi.micloud.xiaomi.net/mic/card/v2/contact?phone="+
		base64.StdEncoding.EncodeToString([]byte("+919820012345"))+"&region=IN&ver=2", "com.android.contacts/7.1.2 "+dalvik, "", nil, false, 200,
		`{"code":0,"data":{"card":null,"tags":[]}}`)
	add("POST", "https://tracking.intl.miui.com/track/v1", dalvik, "application/x-www-form-urlencoded",
		track("com.miui.securitycenter", "scan_result", tlsTimes[2], url.Values{"threats": {"0"}}), false, 200, ok)
	folder, _ := json.Marshal(map[string]any{"folderName": "More apps", "promoted": true,
		"packageNames": []string{"com.whatsapp", "com.facebook.katana", "com.truecaller", "in.amazon.mShop.android.shopping", "com.phonepe.app", "com.google.android.youtube"},
		"imei_md5":     fmt.Sprintf("%x", md5.Sum([]byte(device["imei"]))), "androidVersion": "7.1.2", "model": "Redmi 4A"})
	add("POST", "https://global.market.xiaomi.com/apm/folder/promoted", dalvik, "application/json", folder, false, 200,
		`{"code":0,"apps":[{"packageName":"com.example.game","title":"Example Game"}]}`)
	add("POST", "https://global.api.huangye.miui.com/yellowpage/v3/message/stat", "com.android.mms "+dalvik, "application/x-www-form-urlencoded",
		[]byte("data=q8Jm2X7vR0tN5bYpL3wKc9Hf1ZsAeU6iGoT4xDnMjV8yPrQlWkEh0uBaSdFgC2Iz&sign=8f14e45fceea167a5a36dedd4bea2543"), false, 200, ok)
	batch := browserBatch(tlsTimes[5], []map[string]any{
		{"event": "page_finished", "url": "https://www.healthline.com/health/depression/signs"},
		{"event": "search", "query": "loan against salary no documents", "engine": "google"},
		{"event": "page_finished", "url": "https://www.google.com/search?q=loan+against+salary+no+documents"},
		{"event": "youtube_video_play", "video_id": "dQw4w9WgXcQ"},
		{"event": "download", "url": "https://files.example.org/statement-oct.pdf"},
	})
	add("POST", "https://data.mistat.intl.xiaomi.com/mistats/v3", "Mint Browser/3.4.3 "+dalvik, "application/json", batch, true, 200, ok)
	return hb.write(path)
}

// writeAfterHAR is the same phone the next morning, after its owner switched
// off personalised ads (MIUI System Ads), the browser's usage data and
// contact-card sync. Some data stops; much does not; a new app's SDK appears.
func writeAfterHAR(path string) error {
	day := start.Add(24*time.Hour + 3*time.Minute)
	hb := &harBuilder{at: func(i int) time.Time { return day.Add(time.Duration(i) * 1700 * time.Millisecond) }}
	add := hb.add
	ok := `{"code":0,"msg":"ok"}`
	add("POST", "https://tracking.intl.miui.com/track/v1", dalvik, "application/x-www-form-urlencoded",
		track("com.miui.systemAdSolution", "personalization_off", hb.at(0), url.Values{"personalized": {"0"}}), false, 200, ok)
	add("GET", "https://us.micardapi.micloud.xiaomi.net/mic/card/v2/contact?phone="+
		base64.StdEncoding.EncodeToString([]byte("+919820012345"))+"&region=IN&ver=2", "com.android.contacts/7.1.2 "+dalvik, "", nil, false, 200,
		`{"code":0,"data":{"card":null,"tags":[]}}`)
	add("POST", "https://tracking.intl.miui.com/track/v1", dalvik, "application/x-www-form-urlencoded",
		track("com.miui.securitycenter", "scan_result", hb.at(2), url.Values{"threats": {"0"}}), false, 200, ok)
	batch := browserBatch(hb.at(3), []map[string]any{
		{"event": "app_start", "cold": true},
		{"event": "settings_change", "setting": "usage_data", "value": "off"},
		{"event": "app_start", "cold": false},
	})
	add("POST", "https://data.mistat.intl.xiaomi.com/mistats/v3", "Mint Browser/3.4.3 "+dalvik, "application/json", batch, true, 200, ok)
	fb := url.Values{"event": {"MOBILE_APP_INSTALL"}, "advertiser_id": {device["oaid"]}, "advertiser_tracking_enabled": {"1"},
		"application_tracking_enabled": {"1"}, "anon_id": {"XZ7a1c3f0e-5b2d-4e8a-9c61-0f3e2d1b4a57"},
		"application_package_name": {"com.truecaller"}, "extinfo": {`["a2","com.truecaller","1101","12.58.7","7.1.2","Redmi 4A","en_IN","IST","Jio 4G",720,1280,"2.00",8,24,5,"Asia/Kolkata"]`}}
	add("POST", "https://graph.facebook.com/v17.0/1288392747887445/activities", "FBAndroidSDK.16.0.0 "+dalvik,
		"application/x-www-form-urlencoded", []byte(fb.Encode()), false, 200, `{"success":true}`)
	return hb.write(path)
}
