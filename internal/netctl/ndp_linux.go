//go:build linux

package netctl

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// IPv6 has no ARP: a device learns where its router is from neighbour
// advertisements (NDP). The equivalent of ARP spoofing is an unsolicited
// advertisement with the override flag, for each of the router's addresses
// to the device and for each of the device's addresses to the router.

// Hosts6 are the IPv6 addresses of the device and of its router on the link.
type Hosts6 struct {
	Target  []netip.Addr
	Gateway []netip.Addr
}

// discover6 asks every node on the link to answer (an echo request to
// all-nodes, from our link-local and from each global address, so nodes
// answer from theirs) and reads which addresses belong to the two hardware
// addresses from the kernel's neighbour table.
func discover6(s *sender, ifi *net.Interface, target, gateway net.HardwareAddr) (Hosts6, error) {
	srcs := ownIPv6(ifi)
	if len(srcs) == 0 {
		return Hosts6{}, nil
	}
	allNodes := netip.MustParseAddr("ff02::1")
	allNodesMAC := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	for round := 0; round < 2; round++ {
		for _, src := range srcs {
			echo := []byte{128, 0, 0, 0, 0x70, 0x68, 0, byte(round)} // echo request, id "ph"
			s.sendIPv6(allNodesMAC, src, allNodes, 1, echo)
		}
		time.Sleep(300 * time.Millisecond)
	}
	out, err := exec.Command("ip", "-6", "neigh", "show", "dev", ifi.Name).Output()
	if err != nil {
		return Hosts6{}, fmt.Errorf("read the IPv6 neighbours (ip -6 neigh): %w", err)
	}
	var h Hosts6
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for i := 1; i+1 < len(f); i++ {
			if f[i] != "lladdr" {
				continue
			}
			switch f[i+1] {
			case target.String():
				h.Target = append(h.Target, a)
			case gateway.String():
				h.Gateway = append(h.Gateway, a)
			}
		}
	}
	return h, nil
}

// ownIPv6 lists our link-local address first, then global ones.
func ownIPv6(ifi *net.Interface) []netip.Addr {
	addrs, _ := ifi.Addrs()
	var ll, global []netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() != nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP)
		switch {
		case ip.IsLinkLocalUnicast():
			ll = append(ll, ip)
		case ip.IsGlobalUnicast():
			global = append(global, ip)
		}
	}
	return append(ll, global...)
}

// linkLocal is our link-local address, the source of advertisements.
func linkLocal(ifi *net.Interface) (netip.Addr, bool) {
	for _, a := range ownIPv6(ifi) {
		if a.IsLinkLocalUnicast() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// advertise sends whom (at whomMAC) neighbour advertisements saying that
// each of addrs is at mac; router marks a router's addresses.
func (s *sender) advertise(src netip.Addr, whom []netip.Addr, whomMAC net.HardwareAddr, addrs []netip.Addr, mac net.HardwareAddr, router bool) error {
	var firstErr error
	for _, dst := range whom {
		for _, target := range addrs {
			na := make([]byte, 32)
			na[0] = 136 // neighbour advertisement
			flags := byte(0x20)
			if router {
				flags |= 0x80
			}
			na[4] = flags
			t16 := target.As16()
			copy(na[8:24], t16[:])
			na[24], na[25] = 2, 1 // option: target link-layer address, 8 bytes
			copy(na[26:32], mac)
			if err := s.sendIPv6(whomMAC, src, dst, 255, na); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// sendIPv6 sends an ICMPv6 message in an IPv6 packet in an Ethernet frame.
func (s *sender) sendIPv6(to net.HardwareAddr, src, dst netip.Addr, hopLimit byte, icmp []byte) error {
	pkt := make([]byte, 14+40+len(icmp))
	copy(pkt[0:6], to)
	copy(pkt[6:12], s.me)
	binary.BigEndian.PutUint16(pkt[12:14], 0x86dd)
	ip := pkt[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6], ip[7] = 58, hopLimit
	s16, d16 := src.As16(), dst.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])
	body := ip[40:]
	copy(body, icmp)
	body[2], body[3] = 0, 0
	binary.BigEndian.PutUint16(body[2:4], icmpv6Checksum(s16, d16, body))
	return s.sendFrame(to, pkt)
}

func icmpv6Checksum(src, dst [16]byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	var l [8]byte
	binary.BigEndian.PutUint32(l[0:4], uint32(len(msg)))
	l[7] = 58
	add(l[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
