//go:build linux

package netctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
)

// Host is an address on the LAN and its hardware address.
type Host struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

func (h Host) String() string { return fmt.Sprintf("%s (%s)", h.IP, h.MAC) }

// Spoofer tells a device that the gateway is at our hardware address, and
// the gateway that the device is, so that both send their traffic through us.
type Spoofer struct {
	c        *arp.Client
	Iface    *net.Interface
	Target   Host
	Gateway  Host
	Interval time.Duration // between rounds of spoofed replies (Linux ignores one within ~1 s of a genuine reply)
}

// Resolve asks for ip's hardware address on ifi, a few times.
func Resolve(ifi *net.Interface, ip netip.Addr) (net.HardwareAddr, error) {
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("ARP on %s (run as root or with CAP_NET_RAW): %w", ifi.Name, err)
	}
	defer c.Close()
	return resolve(c, ip)
}

func resolve(c *arp.Client, ip netip.Addr) (net.HardwareAddr, error) {
	for try := 0; try < 4; try++ {
		c.SetDeadline(time.Now().Add(700 * time.Millisecond))
		mac, err := c.Resolve(ip)
		if err == nil {
			return mac, nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s does not answer ARP: is it on and on this network?", ip)
}

// NewSpoofer resolves the target's and the gateway's hardware addresses.
func NewSpoofer(ifi *net.Interface, target, gateway netip.Addr) (*Spoofer, error) {
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("ARP on %s (run as root or with CAP_NET_RAW): %w", ifi.Name, err)
	}
	s := &Spoofer{c: c, Iface: ifi, Target: Host{IP: target}, Gateway: Host{IP: gateway}, Interval: 1500 * time.Millisecond}
	if s.Target.MAC, err = resolve(c, target); err != nil {
		c.Close()
		return nil, fmt.Errorf("target: %w", err)
	}
	if s.Gateway.MAC, err = resolve(c, gateway); err != nil {
		c.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	c.SetDeadline(time.Time{})
	return s, nil
}

// State is what must be healed if this spoofer is never stopped properly.
func (s *Spoofer) State() SpoofState {
	return SpoofState{Iface: s.Iface.Name, Target: s.Target.IP, TargetMAC: s.Target.MAC.String(), Gateway: s.Gateway.IP, GatewayMAC: s.Gateway.MAC.String()}
}

// tell sends to whom an ARP reply saying that ip is at mac.
func tell(c *arp.Client, whom Host, ip netip.Addr, mac net.HardwareAddr) error {
	p, err := arp.NewPacket(arp.OperationReply, mac, ip, whom.MAC, whom.IP)
	if err != nil {
		return err
	}
	return c.WriteTo(p, whom.MAC)
}

// Run poisons both caches every Interval until ctx ends, then heals them.
func (s *Spoofer) Run(ctx context.Context) error {
	me := s.c.HardwareAddr()
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		if err := errors.Join(tell(s.c, s.Target, s.Gateway.IP, me), tell(s.c, s.Gateway, s.Target.IP, me)); err != nil {
			return fmt.Errorf("send ARP: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// healSchedule spaces the true replies more than a second apart: Linux
// ignores a reply that comes within a second (locktime) of the entry's last
// update, and an ignored reply with a new address counts as an update (the
// entry goes stale), so replies closer together would all be ignored.
var healSchedule = []time.Duration{0, 1100 * time.Millisecond, 2200 * time.Millisecond, 3300 * time.Millisecond}

// Heal tells both the real hardware addresses, several times, and closes.
func (s *Spoofer) Heal() error {
	defer s.c.Close()
	return heal(s.c, s.Target, s.Gateway)
}

func heal(c *arp.Client, target, gateway Host) error {
	start := time.Now()
	var err error
	for _, at := range healSchedule {
		time.Sleep(time.Until(start.Add(at)))
		err = errors.Join(tell(c, target, gateway.IP, gateway.MAC), tell(c, gateway, target.IP, target.MAC))
	}
	return err
}

// healState heals the caches a killed run left poisoned.
func healState(st SpoofState) error {
	ifi, err := net.InterfaceByName(st.Iface)
	if err != nil {
		return fmt.Errorf("heal ARP: %w", err)
	}
	tm, err1 := net.ParseMAC(st.TargetMAC)
	gm, err2 := net.ParseMAC(st.GatewayMAC)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("heal ARP: %w", err)
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("heal ARP on %s: %w", st.Iface, err)
	}
	defer c.Close()
	return heal(c, Host{st.Target, tm}, Host{st.Gateway, gm})
}
