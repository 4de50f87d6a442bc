//go:build unix

package wireguard

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockPeers holds an exclusive lock on dir's peers while they are read and
// rewritten: two additions at once (two browser tabs, the UI and phonehome
// wireguard add) must not give out one address twice or lose a peer. Each
// call opens the lock file anew, so goroutines of one process exclude each
// other as processes do.
func lockPeers(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock the WireGuard peers: %w", err)
	}
	fh, err := os.OpenFile(filepath.Join(dir, "peers.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the WireGuard peers: %w", err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		fh.Close()
		return nil, fmt.Errorf("lock the WireGuard peers: %w", err)
	}
	return func() { fh.Close() }, nil // closing releases the lock
}
