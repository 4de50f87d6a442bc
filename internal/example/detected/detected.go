// Package detected gives the example phone's flows (both days) as analyze
// sees them: read from the embedded captures and detected with the built-in
// knowledge. Benchmarks of what comes after detection (the store, reports)
// start from them.
package detected

import (
	"bytes"

	"phonehome/internal/capture"
	"phonehome/internal/decode"
	"phonehome/internal/detect"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/example"
	"phonehome/internal/flow"
)

// Flows reads and detects the flows of both example days, in order.
func Flows() ([]*flow.Flow, error) {
	engine := detect.New(trackers.Builtin(), pii.New(""), decode.Limits{})
	var out []*flow.Flow
	for _, files := range [][]example.File{example.Files(), example.After()} {
		for _, f := range files {
			if _, err := capture.Read(bytes.NewReader(f.Data), f.Name, capture.Options{}, func(fl *flow.Flow) {
				engine.Inspect(fl)
				out = append(out, fl)
			}); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
