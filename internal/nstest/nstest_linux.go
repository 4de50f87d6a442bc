//go:build linux

package nstest

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Enter runs fn with this goroutine's thread in the named namespace
// (/run/netns/NAME), and brings the thread back before it can be reused.
func Enter(t testing.TB, name string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer home.Close()
	there, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer there.Close()
	if err := unix.Setns(int(there.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // a thread left in another namespace must not be reused
		}
	}()
	fn()
}
