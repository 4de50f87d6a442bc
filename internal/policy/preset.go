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

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	var n []string
	for k := range presets {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Preset returns the block rules of a preset; each verdict names the preset
// as its list.
func Preset(name string) ([]Rule, error) {
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
