// Package example ships a small phone session so that phonehome can be tried
// with nothing else: `phonehome analyze --example`.
//go:generate go run ./gen data

package example

import "embed"

//go:embed data/* after/*
var files embed.FS

// File is one embedded capture.
type File struct {
	Name string
	Data []byte
}

// Files returns the example captures in a fixed order.
func Files() []File { return dir("data") }

// After returns the same phone's session the next day, after its owner
// switched off personalised ads, the browser's usage data and contact-card
// sync: the second half of a before/after comparison (phonehome diff --example).
func After() []File { return dir("after") }

func dir(name string) []File {
	entries, _ := files.ReadDir(name)
	out := make([]File, 0, len(entries))
	for _, e := range entries {
		b, _ := files.ReadFile(name + "/" + e.Name())
		out = append(out, File{Name: "example/" + e.Name(), Data: b})
	}
	return out
}
