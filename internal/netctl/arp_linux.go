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
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
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
	raw      *sender
	V6       Hosts6     // the device's and the router's IPv6 addresses, when they have some
	ll       netip.Addr // our link-local address, the source of neighbour advertisements
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
	if s.raw, err = newSender(ifi); err != nil {
		c.Close()
		return nil, err
	}
	if ll, ok := linkLocal(ifi); ok {
		s.ll = ll
		if s.V6, err = discover6(s.raw, ifi, s.Target.MAC, s.Gateway.MAC); err != nil {
			s.raw.Close()
			c.Close()
			return nil, err
		}
		if len(s.V6.Target) == 0 || len(s.V6.Gateway) == 0 {
			s.V6 = Hosts6{} // one side without IPv6: nothing to spoof there
		}
	}
	return s, nil
}

// poison6 and heal6 do for IPv6 what the ARP replies do for IPv4.
func (s *sender) spoof6(ll netip.Addr, v6 Hosts6, target, gateway Host, targetAt, gatewayAt net.HardwareAddr) error {
	if len(v6.Target) == 0 || !ll.IsValid() {
		return nil
	}
	return errors.Join(s.advertise(ll, v6.Target, target.MAC, v6.Gateway, gatewayAt, true),
		s.advertise(ll, v6.Gateway, gateway.MAC, v6.Target, targetAt, false))
}

// sender writes whole Ethernet frames: the frame's source is always this
// machine's address, whatever the ARP packet inside claims. A frame with the
// gateway's (or the device's) address as its source would teach the switch
// that the gateway is on our port, and the device would stop receiving.
type sender struct {
	conn *packet.Conn
	me   net.HardwareAddr
}

func newSender(ifi *net.Interface) (*sender, error) {
	conn, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
	if err != nil {
		return nil, fmt.Errorf("raw socket on %s (run as root or with CAP_NET_RAW): %w", ifi.Name, err)
	}
	return &sender{conn: conn, me: ifi.HardwareAddr}, nil
}

func (s *sender) send(to net.HardwareAddr, p *arp.Packet) error {
	pb, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	f := &ethernet.Frame{Destination: to, Source: s.me, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = s.conn.WriteTo(fb, &packet.Addr{HardwareAddr: to})
	return err
}

// sendFrame writes a whole Ethernet frame.
func (s *sender) sendFrame(to net.HardwareAddr, frame []byte) error {
	_, err := s.conn.WriteTo(frame, &packet.Addr{HardwareAddr: to})
	return err
}

func (s *sender) Close() error { return s.conn.Close() }

// Close lets the spoofer go without healing (it never spoofed).
func (s *Spoofer) Close() {
	s.raw.Close()
	s.c.Close()
}

// State is what must be healed if this spoofer is never stopped properly.
func (s *Spoofer) State() SpoofState {
	return SpoofState{Iface: s.Iface.Name, Target: s.Target.IP, TargetMAC: s.Target.MAC.String(), Gateway: s.Gateway.IP, GatewayMAC: s.Gateway.MAC.String(),
		Target6: s.V6.Target, Gateway6: s.V6.Gateway, LinkLocal: s.ll}
}

// tell sends to whom an ARP reply saying that ip is at mac.
func tell(s *sender, whom Host, ip netip.Addr, mac net.HardwareAddr) error {
	p, err := arp.NewPacket(arp.OperationReply, mac, ip, whom.MAC, whom.IP)
	if err != nil {
		return err
	}
	return s.send(whom.MAC, p)
}

// Run poisons both caches every Interval until ctx ends, then heals them.
func (s *Spoofer) Run(ctx context.Context) error {
	me := s.raw.me
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		if err := errors.Join(tell(s.raw, s.Target, s.Gateway.IP, me), tell(s.raw, s.Gateway, s.Target.IP, me),
			s.raw.spoof6(s.ll, s.V6, s.Target, s.Gateway, me, me)); err != nil {
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
	defer s.raw.Close()
	return heal(s.raw, s.Target, s.Gateway, s.ll, s.V6)
}

func heal(c *sender, target, gateway Host, ll netip.Addr, v6 Hosts6) error {
	start := time.Now()
	var errs []error
	for _, at := range healSchedule {
		time.Sleep(time.Until(start.Add(at)))
		errs = append(errs, tell(c, target, gateway.IP, gateway.MAC), tell(c, gateway, target.IP, target.MAC),
			announce(c, target, gateway), announce(c, gateway, target),
			c.spoof6(ll, v6, target, gateway, target.MAC, gateway.MAC))
	}
	return errors.Join(errs...)
}

// announce sends whom a gratuitous ARP (sender and target address both
// owner's) with owner's real hardware address. Linux takes a gratuitous ARP
// even within the locktime of the entry's last change, when a plain reply
// can be ignored: the entry changes state on its own timers, and each change
// restarts the locktime.
func announce(c *sender, whom, owner Host) error {
	p, err := arp.NewPacket(arp.OperationReply, owner.MAC, owner.IP, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, owner.IP)
	if err != nil {
		return err
	}
	return c.send(whom.MAC, p)
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
	c, err := newSender(ifi)
	if err != nil {
		return fmt.Errorf("heal ARP: %w", err)
	}
	defer c.Close()
	return heal(c, Host{st.Target, tm}, Host{st.Gateway, gm}, st.LinkLocal, Hosts6{Target: st.Target6, Gateway: st.Gateway6})
}
