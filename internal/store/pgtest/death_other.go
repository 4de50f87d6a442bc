//go:build unix && !linux

package pgtest

import "syscall"

// dieWithParent cannot be asked for here: a killed test leaves its server.
func dieWithParent(*syscall.SysProcAttr) {}
