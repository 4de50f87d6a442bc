// Package exampleflows provides the example phone's flows read and detected
// as phonehome analyze would: the material the benchmarks copy into large
// sessions.
package exampleflows

import (
	"bytes"
	"fmt"

	"phonehome/internal/capture"
	"phonehome/internal/decode"
	"phonehome/internal/detect"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/example"
	"phonehome/internal/flow"
)

// Detected returns the flows of both days of the example (before and after
// the opt-out), in capture order, with their findings and destinations.
func Detected() ([]*flow.Flow, error) {
	engine := detect.New(trackers.Builtin(), pii.New(""), decode.Limits{})
	var out []*flow.Flow
	for _, files := range [][]example.File{example.Files(), example.After()} {
		for _, f := range files {
			if _, err := capture.Read(bytes.NewReader(f.Data), f.Name, capture.Options{}, func(fl *flow.Flow) {
				engine.Inspect(fl)
				out = append(out, fl)
			}); err != nil {
				return nil, fmt.Errorf("read the example's %s: %w", f.Name, err)
			}
		}
	}
	return out, nil
}
