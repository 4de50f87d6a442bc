package flow

import (
	"encoding/json"
	"testing"
)

// TestMethodText: methods are written as the names findings always had, in
// JSON too, and read back; the zero value is "".
func TestMethodText(t *testing.T) {
	for m, name := range map[Method]string{MethodUnknown: "", MethodPattern: "pattern", MethodKey: "key", MethodKnown: "known", MethodInference: "inference"} {
		b, err := m.MarshalText()
		if m.String() != name || string(b) != name || err != nil || ParseMethod(name) != m {
			t.Errorf("%d: %q %q %v, parsed back %d", m, m.String(), b, err, ParseMethod(name))
		}
		var back Method
		if err := back.UnmarshalText([]byte(name)); err != nil || back != m {
			t.Errorf("%q: read back %d, %v", name, back, err)
		}
	}
	if ParseMethod("guess") != MethodUnknown || Method(200).String() != "" {
		t.Error("an unknown method is MethodUnknown, written as \"\"")
	}
	x := Finding{Kind: "imei", Value: "356938035643809", Path: "query:imei", Method: MethodKey, Confidence: 0.95}
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"Kind":"imei","Value":"356938035643809","Path":"query:imei","Method":"key","Confidence":0.95,"Context":false}`
	if string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var back Finding
	if err := json.Unmarshal(b, &back); err != nil || back != x {
		t.Errorf("read back %+v, %v", back, err)
	}
	d, _ := json.Marshal(Destination{Owner: "Xiaomi", Party: PartyFirst})
	if string(d) != `{"Owner":"Xiaomi","Category":"","SDK":"","List":"","Site":"","Party":"first"}` {
		t.Errorf("destination JSON %s", d)
	}
}
