package netctl

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Table is the nftables table phonehome creates (and deletes whole): inet,
// for IPv4 and IPv6.
const Table = "inet phonehome"

// LocalNet finds the interface (named, or any) whose IPv4 network holds
// target, and our address there.
func LocalNet(target netip.Addr, name string) (*net.Interface, netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, netip.Prefix{}, err
	}
	var seen []string
	for i := range ifs {
		ifi := &ifs[i]
		if name != "" && ifi.Name != name {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			ip, _ := netip.AddrFromSlice(ipn.IP.To4())
			ones, _ := ipn.Mask.Size()
			pfx := netip.PrefixFrom(ip, ones)
			seen = append(seen, ifi.Name+" "+pfx.String())
			if pfx.Contains(target) {
				return ifi, pfx, nil
			}
		}
	}
	if name != "" {
		if len(seen) == 0 {
			return nil, netip.Prefix{}, fmt.Errorf("interface %s has no IPv4 address (or does not exist): see ip addr", name)
		}
		return nil, netip.Prefix{}, fmt.Errorf("%s is not on %s's network (%s): name a device on the same network", target, name, strings.Join(seen, ", "))
	}
	return nil, netip.Prefix{}, fmt.Errorf("%s is on none of this machine's networks (%s): name a device on the same Wi-Fi or LAN", target, strings.Join(seen, ", "))
}

// DefaultGateway reads the IPv4 default route of an interface from /proc/net/route.
func DefaultGateway(iface string) (netip.Addr, error) {
	fh, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find the gateway (name it with --gateway): %w", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != iface || f[1] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		var ip [4]byte
		binary.LittleEndian.PutUint32(ip[:], binary.BigEndian.Uint32(b))
		return netip.AddrFrom4(ip), nil
	}
	return netip.Addr{}, fmt.Errorf("no default route through %s: name the gateway with --gateway", iface)
}

// Check refuses what would not work or would cut the network off.
func Check(target, gateway netip.Addr, local netip.Prefix) error {
	switch {
	case !target.IsValid():
		return fmt.Errorf("name the device to intercept with --spoof IP")
	case target == local.Addr():
		return fmt.Errorf("%s is this machine: name the phone or gadget to intercept", target)
	case target == gateway:
		return fmt.Errorf("%s is the gateway: spoofing it against itself would cut the network off; name a device instead", target)
	case !local.Contains(gateway):
		return fmt.Errorf("gateway %s is not on %s: name the router of that network with --gateway", gateway, local.Masked())
	case gateway == local.Addr():
		return fmt.Errorf("this machine (%s) is the gateway already: no spoofing is needed, redirect with the firewall instead", gateway)
	}
	return nil
}

// Redirect says where a device's traffic goes on this machine.
type Redirect struct {
	Target   netip.Addr
	Target6  []netip.Addr // the device's IPv6 addresses, when it has some
	TCPPorts []int        // to the transparent proxy (with SYN only: connections open before are left alone)
	Proxy    int
	DNS      int // 0: DNS not redirected
	QUIC     int // UDP 443 is sent here and never answered (a device falls back to TCP); 0: QUIC allowed
}

// Ruleset is the nftables script for r.
func (r Redirect) Ruleset() string {
	var b strings.Builder
	ports := make([]string, len(r.TCPPorts))
	for i, p := range r.TCPPorts {
		ports[i] = strconv.Itoa(p)
	}
	fmt.Fprintf(&b, "table %s {\n  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n", Table)
	sources := []string{"ip saddr " + r.Target.String()}
	if len(r.Target6) > 0 {
		v6 := make([]string, len(r.Target6))
		for i, a := range r.Target6 {
			v6[i] = a.String()
		}
		sources = append(sources, "ip6 saddr { "+strings.Join(v6, ", ")+" }")
	}
	for _, src := range sources {
		fmt.Fprintf(&b, "    %s tcp dport { %s } tcp flags & (fin|syn|rst|ack) == syn redirect to :%d\n", src, strings.Join(ports, ", "), r.Proxy)
		if r.DNS > 0 {
			fmt.Fprintf(&b, "    %s udp dport 53 redirect to :%d\n", src, r.DNS)
			fmt.Fprintf(&b, "    %s tcp dport 53 redirect to :%d\n", src, r.DNS)
		}
		if r.QUIC > 0 {
			fmt.Fprintf(&b, "    %s udp dport 443 redirect to :%d\n", src, r.QUIC)
		}
	}
	b.WriteString("  }\n}\n")
	return b.String()
}
