package dnsproxy

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
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

// blockHost blocks one name, as a policy would.
type blockHost struct {
	capture.Observer
	name string
}

func (b blockHost) Request(_ context.Context, f *flow.Flow) (flow.Verdict, *flow.Request) {
	if f.Host == b.name {
		return flow.Verdict{Action: flow.ActionBlock, Rule: b.name}, nil
	}
	return flow.Verdict{}, nil
}

// TestBlockModes: a blocked lookup is answered without asking upstream, in
// each mode.
func TestBlockModes(t *testing.T) {
	var asked atomic.Int64
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		asked.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	for _, c := range []struct {
		mode  string
		qtype uint16
		rcode int
		addr  string
	}{
		{"null", dns.TypeA, dns.RcodeSuccess, "0.0.0.0"},
		{"null", dns.TypeAAAA, dns.RcodeSuccess, "::"},
		{"nxdomain", dns.TypeA, dns.RcodeNameError, ""},
		{"nodata", dns.TypeA, dns.RcodeSuccess, ""},
		{"refused", dns.TypeAAAA, dns.RcodeRefused, ""},
	} {
		mode, err := ParseBlockMode(c.mode)
		if err != nil {
			t.Fatal(err)
		}
		var got []*flow.Flow
		s := New(Options{Upstream: pc.LocalAddr().String(), BlockMode: mode,
			Handler: blockHost{Observer: func(f *flow.Flow) { got = append(got, f) }, name: "tracker.example"}})
		lpc, _ := net.ListenPacket("udp", "127.0.0.1:0")
		lln, _ := net.Listen("tcp", "127.0.0.1:0")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.ServeOn(ctx, lpc, lln) }()
		m := new(dns.Msg)
		m.SetQuestion("tracker.example.", c.qtype)
		r, _, err := (&dns.Client{}).Exchange(m, lpc.LocalAddr().String())
		cancel()
		<-done
		if err != nil {
			t.Fatalf("%s: %v", c.mode, err)
		}
		if r.Rcode != c.rcode {
			t.Errorf("%s: rcode %s", c.mode, dns.RcodeToString[r.Rcode])
		}
		var addr string
		for _, rr := range r.Answer {
			switch v := rr.(type) {
			case *dns.A:
				addr = v.A.String()
			case *dns.AAAA:
				addr = v.AAAA.String()
			}
		}
		if addr != c.addr || (c.addr == "" && len(r.Answer) != 0) {
			t.Errorf("%s: answer %v", c.mode, r.Answer)
		}
		if len(got) != 1 || !got[0].Notes.Has(flow.NoteBlocked) {
			t.Errorf("%s: flows %+v", c.mode, got)
		}
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("upstream asked %d times about a blocked name", n)
	}
	if _, err := ParseBlockMode("sinkhole"); err == nil || !strings.Contains(err.Error(), "nxdomain") {
		t.Errorf("bad mode: %v", err)
	}
}

func TestServeDeviceNamesTheDevice(t *testing.T) {
	got := make(chan *flow.Flow, 1)
	s := New(Options{Upstream: upstream(t), Handler: capture.Observer(func(f *flow.Flow) { got <- f })})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// the source (a WireGuard peer's netstack) knows who asked
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) { s.ServeDevice(w, r, "pixel") })}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	m := new(dns.Msg)
	m.SetQuestion("app-measurement.com.", dns.TypeA)
	r, _, err := new(dns.Client).Exchange(m, pc.LocalAddr().String())
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("query: %v %v", err, r)
	}
	if f := <-got; f.Device != "pixel" || f.DNS.Name != "app-measurement.com" || f.DeviceName() != "pixel" {
		t.Errorf("flow: device %q name %q, want pixel and the name asked", f.Device, f.DNS.Name)
	}
}
