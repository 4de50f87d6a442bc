package pgtest

import "syscall"

// dieWithParent has the kernel kill the child when the test process ends.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
