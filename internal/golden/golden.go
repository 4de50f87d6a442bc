// Package golden compares what a test renders with a file kept in the
// package's testdata, and rewrites the file when the test runs with -update.
package golden

import (
	"os"
	"path/filepath"
	"testing"
)

// Check compares got with testdata/name; with update set it rewrites the
// file instead. pkg names the package for the hint ("./internal/report").
func Check(t testing.TB, pkg, name, got string, update bool) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test %s -update writes it)", err, pkg)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test %s -update rewrites it):\n%s", name, pkg, got)
	}
}
