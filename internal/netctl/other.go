//go:build !linux

package netctl

import "errors"

var errLinux = errors.New("LAN interception (ARP spoofing, nftables) needs Linux")

func nftApply(string) error       { return errLinux }
func nftDeleteTable(string) error { return errLinux }
func processAlive(int) bool       { return false }
func healState(SpoofState) error  { return errLinux }
