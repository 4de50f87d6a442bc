package policy

import (
	"sort"
	"strings"

	"phonehome/internal/flow"
)

// presets are rule sets built from the tracker knowledge (its categories):
// with Options.Known set they decide on the host alone, at the hello and at
// DNS, without detection.
var presets = map[string][]string{
	// everyone whose business is the data: ads, analytics, the vendors'
	// telemetry, social widgets, fingerprinting
	"block-trackers": {"category:advertising", "category:analytics", "category:telemetry", "category:social", "category:fingerprinting"},
	"block-ads":      {"category:advertising"},
	// the OS vendor's own telemetry (Xiaomi, Samsung, Huawei, Apple, ...)
	"vendor-telemetry": {"category:telemetry"},
}

// redactPresets take kinds out of every request instead of blocking.
var redactPresets = map[string][]string{
	// device and advertising identifiers, phone numbers and location
	"strip-identifiers": {"imei", "imsi", "iccid", "serial_number", "android_id", "advertising_id", "mac_address",
		"install_id", "device_id", "phone_number", "location"},
}

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	var n []string
	for k := range presets {
		n = append(n, k)
	}
	for k := range redactPresets {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Preset returns the rules of a preset; each verdict names the preset
// as its list.
func Preset(name string) ([]Rule, error) {
	if kinds, ok := redactPresets[name]; ok {
		r, err := RedactRule(kinds, false)
		if err != nil {
			return nil, err
		}
		r.Text, r.fromList = "redact identifiers", "preset "+name
		return []Rule{r}, nil
	}
	pats, ok := presets[name]
	if !ok {
		return nil, &RuleError{Text: name, Problem: "unknown preset", Instead: strings.Join(PresetNames(), ", ")}
	}
	var rules []Rule
	for _, p := range pats {
		r, err := ParseRule(flow.ActionBlock, p, nil)
		if err != nil {
			return nil, err
		}
		r.fromList = "preset " + name
		rules = append(rules, r)
	}
	return rules, nil
}
