// Package netctl changes the kernel's network state for LAN interception and
// changes it back: IP forwarding on, ICMP redirects off, an nftables table
// that redirects one device's traffic to phonehome, and ARP spoofing of that
// device and its gateway. Every change is written to a state file before it
// is made, so that the next start undoes what a crash left behind.
package netctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// procSys is where kernel parameters are (a test points it elsewhere).
var procSys = "/proc/sys"

// State is what phonehome changed and has not yet changed back.
type State struct {
	PID      int               `json:"pid"`
	Started  time.Time         `json:"started"`
	Sysctls  map[string]string `json:"sysctls,omitempty"` // path under /proc/sys → value before
	NftTable string            `json:"nft_table,omitempty"`
	Spoof    *SpoofState       `json:"spoof,omitempty"`
}

// SpoofState is an ARP spoof in progress: who must be told the truth again.
type SpoofState struct {
	Iface      string     `json:"iface"`
	Target     netip.Addr `json:"target"`
	TargetMAC  string     `json:"target_mac"`
	Gateway    netip.Addr `json:"gateway"`
	GatewayMAC string     `json:"gateway_mac"`
	// IPv6 (neighbour advertisements), when both have addresses
	Target6   []netip.Addr `json:"target6,omitempty"`
	Gateway6  []netip.Addr `json:"gateway6,omitempty"`
	LinkLocal netip.Addr   `json:"link_local,omitzero"`
}

// Setup records and makes changes.
type Setup struct {
	path  string
	state State
	sys   string // root of sysctls, /proc/sys
}

// StateFile is where a setup's state is kept in dir.
func StateFile(dir string) string { return filepath.Join(dir, "netstate.json") }

// Begin starts a setup whose state lives in dir. A state file left by an
// earlier run that did not finish is undone first; what was undone is returned.
func Begin(dir string) (*Setup, []string, error) {
	restored, err := Recover(dir)
	if err != nil {
		return nil, restored, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, restored, fmt.Errorf("network state: %w", err)
	}
	s := &Setup{path: StateFile(dir), sys: procSys, state: State{PID: os.Getpid(), Started: time.Now().UTC(), Sysctls: map[string]string{}}}
	return s, restored, s.save()
}

func (s *Setup) save() error {
	b, _ := json.MarshalIndent(s.state, "", "  ")
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("network state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("network state: %w", err)
	}
	return nil
}

// Sysctl sets a kernel parameter ("net/ipv4/ip_forward"), remembering its value.
func (s *Setup) Sysctl(name, value string) error {
	p := filepath.Join(s.sys, name)
	old, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if strings.TrimSpace(string(old)) == value {
		return nil
	}
	if _, done := s.state.Sysctls[name]; !done {
		s.state.Sysctls[name] = strings.TrimSpace(string(old))
		if err := s.save(); err != nil {
			return err
		}
	}
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set %s=%s (run as root or with CAP_NET_ADMIN): %w", name, value, err)
	}
	return nil
}

// Nft loads a ruleset that creates table (family and name, "ip phonehome").
func (s *Setup) Nft(table, ruleset string) error {
	s.state.NftTable = table
	if err := s.save(); err != nil {
		return err
	}
	return nftApply(ruleset)
}

// Spoofing records an ARP spoof about to start.
func (s *Setup) Spoofing(st SpoofState) error {
	s.state.Spoof = &st
	return s.save()
}

// Healed records that the spoofed caches were told the truth.
func (s *Setup) Healed() {
	s.state.Spoof = nil
	s.save()
}

// Restore undoes every change, in reverse order, and removes the state file.
// A spoof is healed before the rules go, so the device is never cut off.
func (s *Setup) Restore() error {
	err := restore(s.state, s.sys)
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// Recover undoes what a state file in dir records (a run that was killed)
// and removes it; it returns what it restored.
func Recover(dir string) ([]string, error) {
	b, err := os.ReadFile(StateFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("network state %s is damaged (%v): check ip_forward, nft list tables and the ARP caches by hand, then delete it", StateFile(dir), err)
	}
	if st.PID != os.Getpid() && processAlive(st.PID) {
		return nil, fmt.Errorf("another phonehome (pid %d) is intercepting on this machine: stop it first", st.PID)
	}
	var done []string
	if st.Spoof != nil {
		done = append(done, fmt.Sprintf("ARP caches of %s and %s told the real addresses again", st.Spoof.Target, st.Spoof.Gateway))
	}
	if st.NftTable != "" {
		done = append(done, "nftables table "+st.NftTable+" removed")
	}
	for k, v := range st.Sysctls {
		done = append(done, fmt.Sprintf("%s back to %s", k, v))
	}
	if err := restore(st, procSys); err != nil {
		return done, err
	}
	return done, os.Remove(StateFile(dir))
}

func restore(st State, sys string) error {
	var errs []error
	if st.Spoof != nil {
		if err := healState(*st.Spoof); err != nil {
			errs = append(errs, err)
		}
	}
	if st.NftTable != "" {
		if err := nftDeleteTable(st.NftTable); err != nil {
			errs = append(errs, err)
		}
	}
	for name, v := range st.Sysctls {
		if err := os.WriteFile(filepath.Join(sys, name), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore %s=%s: %w", name, v, err))
		}
	}
	return errors.Join(errs...)
}
