// Package storetest holds what the tests of the store and of its engines
// share: flows that use every column.
package storetest

import (
	"net/netip"
	"time"

	"phonehome/internal/flow"
)

// Sample returns three flows that use every column: an HTTP exchange by a
// named device with findings, notes, a verdict and cut bodies; a DNS lookup
// over IPv6; a TLS connection with nothing decrypted. Each call returns new
// ones.
func Sample() []*flow.Flow {
	t0 := time.Date(2026, 11, 18, 7, 44, 2, 123456789, time.UTC)
	return []*flow.Flow{
		{
			Source: "a.pcap", Seq: 1, Start: t0, End: t0.Add(40 * time.Millisecond),
			Client:    flow.Endpoint{Addr: netip.MustParseAddr("192.168.1.23"), Port: 40100},
			Server:    flow.Endpoint{Addr: netip.MustParseAddr("161.117.97.142"), Port: 80},
			Device:    "anna-phone",
			Host:      "api.ad.intl.xiaomi.com",
			Transport: flow.TransportHTTP,
			Request: &flow.Request{Method: "POST", URL: "http://api.ad.intl.xiaomi.com/x?imei=1", Proto: "HTTP/1.1",
				Headers: flow.Headers{{Name: "Host", Value: "api.ad.intl.xiaomi.com"}, {Name: "X-A", Value: "1"}, {Name: "X-A", Value: "é\"2"}},
				Body:    flow.Body{Data: []byte("0123456789"), Size: 10}},
			Response: &flow.Response{Status: 200, Reason: "OK", Proto: "HTTP/1.1", Headers: flow.Headers{{Name: "Content-Type", Value: "application/json"}},
				Body: flow.Body{Data: []byte("{}"), Size: 5000, Incomplete: true}, Trailers: flow.Headers{{Name: "X-Sum", Value: "1"}}},
			BytesUp: 200, BytesDown: 5100, Notes: flow.Notes{{Code: flow.NoteCaptureGap, Text: "bytes missing"}},
			Dest: flow.Destination{Owner: "Xiaomi", Category: "advertising", Site: "xiaomi.com", Party: "first"}, App: "com.miui.home",
			Findings: []flow.Finding{{Kind: "imei", Value: "356938035643809", Path: "query:imei", Method: flow.MethodKey, Confidence: 0.95},
				{Kind: "device_model", Value: "Redmi 4A", Path: "header:User-Agent", Method: flow.MethodPattern, Confidence: 0.9, Context: true}},
			Verdict: flow.Verdict{Action: flow.ActionBlock, Rule: "owner:Xiaomi", List: "phonehome", Status: 451},
		},
		{
			Source: "a.pcap", Seq: 2, Start: t0, End: t0,
			Client:    flow.Endpoint{Addr: netip.MustParseAddr("fd00::23"), Port: 5000},
			Server:    flow.Endpoint{Addr: netip.MustParseAddr("fd00::1"), Port: 53},
			Transport: flow.TransportDNS,
			DNS:       &flow.DNS{ID: 7, Name: "tracking.intl.miui.com", Type: "A", RCode: "SUCCESS", Answers: []string{"161.117.96.161"}, Answered: true},
		},
		{
			Source: "b.har", Seq: 1, Host: "tracking.intl.miui.com", Transport: flow.TransportTLS,
			TLS: &flow.TLSInfo{SNI: "tracking.intl.miui.com", ALPN: []string{"h2", "http/1.1"}, Version: "TLS 1.3"},
		},
	}
}

// Normal makes the flows written (in) what a read gives back (out): times
// in local time, the IDs stored, an absent response body an empty one.
func Normal(in, out []*flow.Flow) {
	for i := range in {
		in[i].ID = out[i].ID
		if !in[i].Start.IsZero() {
			in[i].Start, in[i].End = in[i].Start.Local(), in[i].End.Local()
		}
		if in[i].Response != nil && in[i].Response.Body.Data == nil {
			in[i].Response.Body.Data = []byte{}
		}
	}
}
