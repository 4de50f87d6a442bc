package detect

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"phonehome/internal/decode"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/flow"
)

func formFlow(seq int, device, url, body string) *flow.Flow {
	return &flow.Flow{Seq: seq, Source: "test", Client: flow.Endpoint{Addr: netip.MustParseAddr(device), Port: 40000},
		Request: &flow.Request{Method: "POST", URL: url,
			Headers: flow.Headers{{Name: "Content-Type", Value: "application/x-www-form-urlencoded"}},
			Body:    flow.Body{Data: []byte(body)}}}
}

func findingsOf(f *flow.Flow, method flow.Method) []string {
	var out []string
	for _, x := range Reported(f) {
		if method == 0 || x.Method == method {
			out = append(out, fmt.Sprintf("%s=%s", x.Kind, x.Value))
		}
	}
	return out
}

// TestValuesThatComeBack: a value sent unchanged in a later request of the
// same device is an identifier, whatever its field is called; a nonce is not.
func TestValuesThatComeBack(t *testing.T) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	const id = "q8Zr2LmX0pVbT7nC4kWd"
	f1 := formFlow(1, "10.0.0.7", "https://sdk.example/v1/e", "u="+id+"&x=Hf83kQ0zLmN2pR7sT1vW&ev=open")
	f2 := formFlow(2, "10.0.0.7", "https://sdk.example/v1/e", "u="+id+"&x=Zx91mN3qLp0sRt5uVw8Y&ev=close")
	f3 := formFlow(3, "10.0.0.7", "https://other.example/collect", "cid="+id+"&n=Kd82jS7aQp1mZx4cVb6N")
	f4 := formFlow(4, "10.0.0.9", "https://sdk.example/v1/e", "u=Mv5nB7cX9zLk3jH1gF0d&ev=open")
	for _, f := range []*flow.Flow{f1, f2, f3, f4} {
		e.Inspect(f)
	}
	if got := findingsOf(f1, flow.MethodRecurrence); len(got) != 0 {
		t.Errorf("first sighting: %v (only what came back is reported)", got)
	}
	if got := fmt.Sprint(findingsOf(f2, flow.MethodRecurrence)); got != "[install_id="+id+"]" {
		t.Errorf("second request: %s", got)
	}
	// "cid" is an install ID by its name already: no second finding by recurrence
	if got := fmt.Sprint(findingsOf(f3, 0)); got != "[install_id="+id+"]" {
		t.Errorf("third request, another party: %s", got)
	}
	if got := findingsOf(f4, flow.MethodRecurrence); len(got) != 0 {
		t.Errorf("another device's value: %v", got)
	}
	x := e.Explain(formFlow(5, "10.0.0.7", "https://sdk.example/v1/e", "u="+id))
	if len(x.Evidence) != 1 || x.Evidence[0].Finding.Method != flow.MethodRecurrence || x.Evidence[0].Why == "" {
		t.Errorf("explain: %+v", x.Evidence)
	}
}

// TestDeviceWideFieldThatChanges: a "mac" digest that changes from one
// app's request to the next is a message authentication code, not the
// device's MAC address.
func TestDeviceWideFieldThatChanges(t *testing.T) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	var last *flow.Flow
	for i, sender := range []string{"com.example.one", "com.example.two", "com.example.three"} {
		last = formFlow(i+1, "10.0.0.7", "https://t.example/track", fmt.Sprintf("sender=%s&mac=%040x&imei=356938035643809", sender, 0xabcdef12345+i*7919))
		e.Inspect(last)
	}
	for _, x := range Reported(last) {
		if x.Kind == pii.MACAddress {
			t.Errorf("a field that changes each request is no MAC address: %+v", x)
		}
	}
}

// TestLANAnnouncement: what a device tells the whole network about itself
// (as package pcap reads an mDNS answer) is reported, owner's name included.
func TestLANAnnouncement(t *testing.T) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	f := &flow.Flow{Host: "mDNS", Transport: flow.TransportLAN, Client: flow.Endpoint{Addr: netip.MustParseAddr("192.168.1.23"), Port: 5353},
		Request: &flow.Request{Method: "ANNOUNCE", URL: "mdns://224.0.0.251:5353/", Headers: flow.Headers{
			{Name: "Mdns-Instance", Value: "Maria's iPhone"}, {Name: "Mdns-Hostname", Value: "Marias-iPhone"},
			{Name: "Mdns-Txt-model", Value: "iPhone14,2"}, {Name: "Mdns-Txt-deviceid", Value: "a4:83:e7:12:34:56"}}}}
	e.Inspect(f)
	got := fmt.Sprint(findingsOf(f, 0))
	for _, want := range []string{"person_name=Maria", "device_model=Maria's iPhone", "device_model=iPhone14,2", "mac_address=a4:83:e7:12:34:56"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in %s", want, got)
		}
	}
}

// TestOnBehalf: the app a phone maker's system service reports for is the
// sender_app; an app an SDK names as its host is the flow's app.
func TestOnBehalf(t *testing.T) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	ua := flow.Header{Name: "User-Agent", Value: "Dalvik/2.1.0 (Linux; U; Android 13; 23049PCD8G Build/TKQ1)"}
	body := `clientInfo={"deviceInfo":{"make":"xiaomi","model":"23049PCD8G","oaid":"9e1f0c3b7a2d4e5f"},"appInfo":{"packageName":"com.example.notes","version":"2.1"}}`
	sys := &flow.Flow{Host: "api.ad.intl.xiaomi.com", Request: &flow.Request{Method: "POST", URL: "http://api.ad.intl.xiaomi.com/getSplashScreenAds",
		Headers: flow.Headers{ua, {Name: "Content-Type", Value: "application/x-www-form-urlencoded"}}, Body: flow.Body{Data: []byte(body)}}}
	e.Inspect(sys)
	if got := fmt.Sprint(findingsOf(sys, 0)); !strings.Contains(got, "sender_app=com.example.notes") {
		t.Errorf("system service: %s", got)
	}
	// the same description sent to an SDK's owner is the SDK's host app
	sdk := &flow.Flow{Host: "app.adjust.com", Request: &flow.Request{Method: "POST", URL: "https://app.adjust.com/session",
		Headers: flow.Headers{ua, {Name: "Content-Type", Value: "application/x-www-form-urlencoded"}}, Body: flow.Body{Data: []byte(body)}}}
	e.Inspect(sdk)
	if got := fmt.Sprint(findingsOf(sdk, 0)); strings.Contains(got, "sender_app") || sdk.App != "com.example.notes" {
		t.Errorf("SDK: %s, app %q", got, sdk.App)
	}
}

// TestEarlierSighting: once a value comes back, the first request that
// carried it is named, so that a stored session can add its finding.
func TestEarlierSighting(t *testing.T) {
	e := New(trackers.Builtin(), pii.New(""), decode.Limits{})
	var told []string
	e.Earlier = func(first *flow.Flow, x flow.Finding) {
		told = append(told, fmt.Sprintf("%s#%d %s %s=%s @ %s", first.Source, first.Seq, first.Request.URL, x.Kind, x.Value, x.Path))
	}
	const id = "q8Zr2LmX0pVbT7nC4kWd"
	for i := 1; i <= 3; i++ {
		e.Inspect(formFlow(i, "10.0.0.7", "https://sdk.example/v1/e", "u="+id))
	}
	if got := fmt.Sprint(told); got != "[test#1 https://sdk.example/v1/e install_id="+id+" @ body › form:u]" {
		t.Errorf("told %s", got)
	}
}
