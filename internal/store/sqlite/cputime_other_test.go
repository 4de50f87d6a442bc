//go:build !linux

package sqlite

// threadCPU is not known here.
func threadCPU() (int64, bool) { return 0, false }
