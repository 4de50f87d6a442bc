//go:build linux

package netctl

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

func nftApply(ruleset string) error {
	nft, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("nftables is needed to redirect the device's traffic: install it (Debian: apt-get install nftables)")
	}
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

func nftDeleteTable(table string) error {
	out, err := exec.Command("nft", "delete", "table", table).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("nft delete table %s: %v: %s", table, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil {
		return false
	}
	// a pid reused by another program is not phonehome
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(b, []byte("phonehome"))
}
