package wireguard

import (
	"net"
	"net/netip"
	"testing"
)

// A peer reaches only the outside: never the tunnel's own addresses, and
// this machine only when ReachHost says so.
func TestRefused(t *testing.T) {
	var own netip.Addr
	if list, err := net.InterfaceAddrs(); err == nil {
		for _, a := range list {
			if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLoopback() {
				own = p.Addr()
			}
		}
	}
	strict, open := &Server{}, &Server{opts: Options{ReachHost: true}}
	for _, c := range []struct {
		dst            string
		strict, opened bool // refused by each
	}{
		{"10.77.0.1:80", true, true},
		{"10.77.0.3:22", true, true},
		{"[fd70:686f:6e65::1]:443", true, true},
		{"127.0.0.1:8080", true, false},
		{"[::1]:8080", true, false},
		{"0.0.0.0:80", true, false},
		{"203.0.113.9:443", false, false},
		{"[2001:db8::9]:443", false, false},
		{"169.254.169.254:80", true, false}, // a cloud's metadata service
		{"[fe80::1]:80", true, false},
		{"224.0.0.251:5353", true, true}, // multicast reaches this machine's networks
		{"[ff02::fb]:5353", true, true},
		{"255.255.255.255:67", true, true},
	} {
		dst := netip.MustParseAddrPort(c.dst)
		if got := strict.refused(dst) != ""; got != c.strict {
			t.Errorf("%s: refused %v, want %v", dst, got, c.strict)
		}
		if got := open.refused(dst) != ""; got != c.opened {
			t.Errorf("%s with ReachHost: refused %v, want %v", dst, got, c.opened)
		}
	}
	if own.IsValid() {
		dst := netip.AddrPortFrom(own, 22)
		if strict.refused(dst) == "" || open.refused(dst) != "" {
			t.Errorf("this machine's %s: refused unless ReachHost", own)
		}
	}
}

// One peer cannot hold more than its share; what it gives back it can take
// again; another peer is not held back by it.
func TestPeerLimits(t *testing.T) {
	var l peerLimits
	a, b := netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")
	for i := range 3 {
		if !l.take(a, openUDP, 3) {
			t.Fatalf("take %d refused under the limit", i)
		}
	}
	if l.take(a, openUDP, 3) {
		t.Error("a fourth association past a limit of 3")
	}
	if !l.take(a, openDNS, 3) || !l.take(b, openUDP, 3) {
		t.Error("lookups and other peers are counted apart")
	}
	l.give(a, openUDP)
	if !l.take(a, openUDP, 3) {
		t.Error("one given back can be taken again")
	}
	for range 3 {
		l.give(a, openUDP)
	}
	l.give(a, openDNS)
	l.give(b, openUDP)
	if len(l.open) != 0 {
		t.Errorf("counts left: %v", l.open)
	}
}
