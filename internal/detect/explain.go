package detect

import (
	"fmt"
	"slices"
	"strings"

	"phonehome/internal/decode"
	"phonehome/internal/detect/pii"
	"phonehome/internal/flow"
)

// Explanation is why a flow has the findings it has: what its request
// decoded into, and per finding the evidence that decided it.
type Explanation struct {
	Values   []decode.Value  // every decoded leaf, with its path
	Opaque   []decode.Opaque // payloads nobody can read
	Limits   []string        // decoding limits that were hit
	Evidence []Evidence      // one per finding, in the flow's order
}

// Evidence is one finding and what decided it.
type Evidence struct {
	Finding flow.Finding
	// Reported is false for a device attribute held back because nothing
	// identifying travels beside it (the quasi-identifier rule).
	Reported bool
	Why      string
}

// Explain inspects f as Inspect does and says why: it is Inspect with the
// decoded values and the evidence kept. Like Inspect it learns from f (a value
// that comes back, a field that changes), so a caller explaining the n-th
// flow of a capture inspects the ones before it first.
func (e *Engine) Explain(f *flow.Flow) Explanation {
	var x Explanation
	e.InspectWith(f, func(f *flow.Flow, vals []decode.Value) {
		x.Values = slices.Clone(vals)
	})
	if f.Request != nil {
		var dec decode.Decoder
		res := dec.Decode(decode.FromFlow(f.Request), e.limits)
		x.Opaque, x.Limits = slices.Clone(res.Opaque), slices.Clone(res.Limits)
	}
	hits := e.pii.Scan(x.Values)
	for _, fd := range f.Findings {
		if fd.Kind == OpaquePayload {
			continue // a note, not a finding
		}
		ev := Evidence{Finding: fd, Reported: !fd.Context}
		for _, h := range hits {
			if h.Kind == fd.Kind && h.Value == fd.Value && h.Path == fd.Path && h.Why != "" {
				ev.Why = h.Why
				break
			}
		}
		if ev.Why == "" {
			ev.Why = Why(fd, x.Values)
		}
		if fd.Context {
			ev.Why += "; held back: only a description of the device, and nothing identifying travels beside it"
		}
		x.Evidence = append(x.Evidence, ev)
	}
	return x
}

// Why puts the method of a finding into words, naming the field it sat in
// among vals, the values its request decoded into (none: no field named).
// It reads the finding only: nothing is inspected again.
func Why(fd flow.Finding, vals []decode.Value) string {
	var at *decode.Value
	for i := range vals {
		if vals[i].Path == fd.Path || strings.HasPrefix(fd.Path, vals[i].Path+" › as ") {
			at = &vals[i]
			break
		}
	}
	field := ""
	if at != nil && at.Key != "" {
		field = at.Key
		if at.Parent != "" {
			field = at.Parent + "." + at.Key
		}
	}
	switch fd.Method {
	case flow.MethodKey:
		if field == "" {
			return fmt.Sprintf("the field's name says %s, and the value has the form of one", fd.Kind)
		}
		return fmt.Sprintf("the field's name %q says %s, and the value has the form of one", field, fd.Kind)
	case flow.MethodPattern:
		return "the value's own shape: " + shapeOf(fd.Kind)
	case flow.MethodKnown:
		form := "as given"
		if _, f, ok := strings.Cut(fd.Path, " › as "); ok {
			form = "as " + f
		}
		return fmt.Sprintf("one of the profile's %s values, found %s", fd.Kind, form)
	case flow.MethodInference:
		if fd.Kind == pii.AppList {
			return "two or more package names in the elements of one list or batch"
		}
		return "what surrounds it"
	case flow.MethodEndpoint:
		return "the endpoint table says this field carries " + string(fd.Kind)
	case flow.MethodRecurrence:
		return "an identifier's shape, and the same value came back unchanged in another request of this device"
	}
	return "no evidence recorded"
}

// shapes says in words what shape of value a kind is recognised by.
var shapes = map[flow.Kind]string{
	pii.IMEI:        "15 digits with a reporting body's prefix and a valid Luhn check digit",
	pii.ICCID:       "19 to 22 digits starting 89 with a valid Luhn check digit",
	pii.MACAddress:  "six hex octets, not a placeholder address",
	pii.WifiBSSID:   "six hex octets, not a placeholder address",
	pii.PhoneNumber: "a number the phone number library parses as valid, with its country code",
	pii.Email:       "an e-mail address",
	pii.Location:    "a latitude and a longitude with enough decimals to be a place",
	pii.AndroidID:   "16 random-looking hex digits (Android's ANDROID_ID), under a name that does not say per request",
	pii.DeviceID:    "a random UUID under a name that does not say per request",
	pii.InstallID:   "a Firebase Cloud Messaging token (installation ID, ':APA91b', a long tail)",
	pii.Locale:      "a real language code with a real country code",
	pii.Timezone:    "an IANA zone name or a UTC offset",
	pii.NetworkType: "a network type as Android and iOS name them",
	pii.ScreenSize:  "two plausible screen sides",
	pii.Carrier:     "a real mobile country code and network code, under a name about the network or SIM",
	pii.OSVersion:   "the Android version and model in a User-Agent",
	pii.DeviceModel: "the Android version and model in a User-Agent",
	pii.SenderApp:   "an app's package name at the start of the User-Agent",
	pii.AppList:     "two or more package names in one field",
}

func shapeOf(k flow.Kind) string {
	if s, ok := shapes[k]; ok {
		return s
	}
	return "its form"
}
