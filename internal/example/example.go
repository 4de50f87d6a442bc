// Package example ships a small phone session so that phonehome can be tried
// with nothing else: `phonehome analyze --example`.
//go:generate go run ./gen data

package example

import "embed"

//go:embed data/*
var files embed.FS

// File is one embedded capture.
type File struct {
	Name string
	Data []byte
}

// Files returns the example captures in a fixed order.
func Files() []File {
	entries, _ := files.ReadDir("data")
	out := make([]File, 0, len(entries))
	for _, e := range entries {
		b, _ := files.ReadFile("data/" + e.Name())
		out = append(out, File{Name: "example/" + e.Name(), Data: b})
	}
	return out
}
