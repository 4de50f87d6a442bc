package netctl

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckRefuses(t *testing.T) {
	local := netip.MustParsePrefix("192.168.1.10/24")
	a := netip.MustParseAddr
	for _, c := range []struct {
		target, gateway string
		want            string
	}{
		{"192.168.1.1", "192.168.1.1", "is the gateway"},
		{"192.168.1.10", "192.168.1.1", "is this machine"},
		{"192.168.1.23", "10.0.0.1", "not on 192.168.1.0/24"},
		{"192.168.1.23", "192.168.1.10", "is the gateway already"},
	} {
		err := Check(a(c.target), a(c.gateway), local)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s via %s: %v, want %q", c.target, c.gateway, err, c.want)
		}
	}
	if err := Check(netip.Addr{}, a("192.168.1.1"), local); err == nil || !strings.Contains(err.Error(), "--spoof") {
		t.Errorf("no target: %v", err)
	}
	if err := Check(a("192.168.1.23"), a("192.168.1.1"), local); err != nil {
		t.Errorf("a device on the network: %v", err)
	}
}

func TestRuleset(t *testing.T) {
	r := Redirect{Target: netip.MustParseAddr("10.9.0.2"), TCPPorts: []int{80, 443}, Proxy: 8081, DNS: 5353, QUIC: 8443}
	r.Target6 = []netip.Addr{netip.MustParseAddr("fd77::23")}
	got := r.Ruleset()
	for _, want := range []string{"table inet phonehome", "ip6 saddr { fd77::23 } tcp dport { 80, 443 }", "ip saddr 10.9.0.2 tcp dport { 80, 443 } tcp flags & (fin|syn|rst|ack) == syn redirect to :8081",
		"udp dport 53 redirect to :5353", "udp dport 443 redirect to :8443"} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
}
