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
