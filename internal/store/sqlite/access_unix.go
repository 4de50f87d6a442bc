//go:build unix

package sqlite

import (
	"io/fs"
	"syscall"
)

// canWrite and canRead say why path cannot be written or read, or nil. They
// ask the kernel (access(2)) rather than opening the file: closing a
// descriptor of a database drops every lock this process holds on it,
// SQLite's included.
func canWrite(path string) error { return access(path, 2, "write") } // W_OK
func canRead(path string) error  { return access(path, 4, "read") }  // R_OK

func access(path string, mode uint32, op string) error {
	if err := syscall.Access(path, mode); err != nil {
		return &fs.PathError{Op: op, Path: path, Err: err}
	}
	return nil
}
