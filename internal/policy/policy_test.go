package policy

import (
	"testing"

	"phonehome/internal/flow"
)

// TestAllowAll: the policy in force when none is set decides nothing and
// asks for nothing.
func TestAllowAll(t *testing.T) {
	var p Policy = AllowAll{}
	f := &flow.Flow{Request: &flow.Request{Method: "POST", URL: "http://t.example/x"}}
	if v := p.Hello(flow.Hello{SNI: "t.example"}); v.Action != flow.ActionAllow {
		t.Errorf("hello: %v", v)
	}
	if v, out := p.Request(f); v.Action != flow.ActionAllow || out != nil {
		t.Errorf("request: %v %v", v, out)
	}
	if p.RequestBody(f) != 0 || p.NeedsFindings() {
		t.Errorf("AllowAll must not make the proxy buffer bodies or detect on the request's path")
	}
}

// TestCopyRequest: a redaction changes a copy; the observed request stays as
// the device sent it.
func TestCopyRequest(t *testing.T) {
	in := &flow.Request{Method: "POST", URL: "http://t.example/x?imei=1",
		Headers: flow.Headers{{Name: "X-Imei", Value: "356938035643809"}},
		Body:    flow.Body{Data: []byte("imei=356938035643809"), Size: 20}}
	out := CopyRequest(in)
	out.Headers[0].Value = ""
	out.Body.Data[0] = 'X'
	out.URL = "http://t.example/x"
	if in.Headers[0].Value != "356938035643809" || string(in.Body.Data) != "imei=356938035643809" || in.URL != "http://t.example/x?imei=1" {
		t.Errorf("the copy shares memory with the observed request: %+v", in)
	}
	if CopyRequest(nil) != nil {
		t.Error("a copy of nothing is nothing")
	}
}
