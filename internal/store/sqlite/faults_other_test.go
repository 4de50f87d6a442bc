//go:build !linux

package sqlite

import "testing"

func mountTmpfs(t *testing.T, size int) string {
	t.Skip("mounts a tmpfs to make the disk full or read-only for real: Linux only")
	return ""
}

func remount(t *testing.T, dir string, readOnly bool) {
	t.Skip("remounts a tmpfs: Linux only")
}
