package dnsproxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"phonehome/internal/capture"
	"phonehome/internal/flow"
)

// upstream answers every A query with 192.0.2.7.
func upstream(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 7)})
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestResolverRecordsAndNames(t *testing.T) {
	var mu sync.Mutex
	var flows []*flow.Flow
	s := New(Options{Upstream: upstream(t), BlockDoH: true, Handler: capture.Observer(func(f *flow.Flow) { mu.Lock(); flows = append(flows, f); mu.Unlock() })})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.ServeOn(ctx, pc, ln) }()
	ask := func(network, addr, name string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		c := &dns.Client{Net: network}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s query for %s: %v", network, name, err)
		}
		return r
	}
	if r := ask("udp", pc.LocalAddr().String(), "tracking.intl.miui.com"); len(r.Answer) != 1 {
		t.Fatalf("answer: %v", r)
	}
	if r := ask("tcp", ln.Addr().String(), "api.example.com"); len(r.Answer) != 1 {
		t.Fatalf("answer over TCP: %v", r)
	}
	if r := ask("udp", pc.LocalAddr().String(), "dns.google"); r.Rcode != dns.RcodeNameError {
		t.Errorf("a DoH endpoint must be refused with --block-doh: %v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := s.Name(netip.MustParseAddr("192.0.2.7")); got != "api.example.com" {
		t.Errorf("the address is named by the last answer: %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(flows) != 3 || flows[0].DNS.Name != "tracking.intl.miui.com" || flows[0].DNS.Answers[0] != "192.0.2.7" ||
		flows[0].Client.Addr != netip.MustParseAddr("127.0.0.1") || flows[2].DNS.RCode != "NXDOMAIN" || len(flows[2].Notes) == 0 {
		t.Errorf("flows: %+v", flows)
	}
}
