// Package dnsproxy is a forwarding DNS resolver that records every query per
// client, remembers which name each answered address belongs to (so that
// encrypted connections can be named), reports known DNS-over-HTTPS
// endpoints, and can refuse them so a device falls back to plain DNS.
package dnsproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"phonehome/internal/capture"
	"phonehome/internal/flow"
)

// Options configure a resolver.
type Options struct {
	Upstream string // host:port of the resolver to forward to
	// Handler decides on each lookup before it is forwarded (ActionBlock
	// answers it with no address) and receives it when answered; nil records
	// nothing.
	Handler  capture.Handler
	BlockDoH bool // answer NXDOMAIN for known DNS-over-HTTPS endpoints
	// BlockMode is how a blocked lookup is answered (default BlockNull).
	BlockMode BlockMode
	Now       func() time.Time
}

// Server forwards and records DNS.
type Server struct {
	opts   Options
	client *dns.Client
	mu     sync.Mutex
	names  map[netip.Addr]string
	pc     net.PacketConn // opened by Listen
	ln     net.Listener
}

// New returns a resolver.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Handler == nil {
		opts.Handler = capture.Observer(func(*flow.Flow) {})
	}
	return &Server{opts: opts, client: &dns.Client{Timeout: 5 * time.Second}, names: map[netip.Addr]string{}}
}

// SystemUpstream returns the first nameserver of /etc/resolv.conf.
func SystemUpstream() (string, error) {
	fh, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return "", fmt.Errorf("find the system's DNS server (name one with --dns-upstream): %w", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			return net.JoinHostPort(fields[1], "53"), nil
		}
	}
	return "", errors.New("no nameserver in /etc/resolv.conf: name one with --dns-upstream")
}

// dohHosts are well-known DNS-over-HTTPS endpoints: a device using them hides
// its lookups from the network (and from this resolver).
var dohHosts = map[string]bool{
	"dns.google": true, "dns.google.com": true, "8888.google": true, "cloudflare-dns.com": true,
	"mozilla.cloudflare-dns.com": true, "one.one.one.one": true, "1dot1dot1dot1.cloudflare-dns.com": true,
	"security.cloudflare-dns.com": true, "family.cloudflare-dns.com": true, "dns.quad9.net": true,
	"dns9.quad9.net": true, "dns10.quad9.net": true, "dns11.quad9.net": true, "doh.opendns.com": true,
	"doh.familyshield.opendns.com": true, "dns.adguard.com": true, "dns.adguard-dns.com": true,
	"doh.cleanbrowsing.org": true, "dns.nextdns.io": true, "doh.dns.sb": true, "dns.alidns.com": true,
	"doh.pub": true, "dns.twnic.tw": true, "doh.mullvad.net": true, "dns.mullvad.net": true,
	"use-application-dns.net": true, // Firefox's canary: an NXDOMAIN here turns its DoH off
}

// IsDoH reports whether name is a known DNS-over-HTTPS endpoint.
func IsDoH(name string) bool { return dohHosts[strings.TrimSuffix(strings.ToLower(name), ".")] }

// Name returns the name an address was last given in an answer, or "".
func (s *Server) Name(a netip.Addr) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[a.Unmap()]
}

// ServeDNS answers one query by asking the upstream, and records it.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) { s.ServeDevice(w, r, "") }

// ServeDevice is ServeDNS for a query whose source knows the device that
// asked (a WireGuard peer): the lookup is recorded, and decided on, under
// that device's name.
func (s *Server) ServeDevice(w dns.ResponseWriter, r *dns.Msg, device string) {
	start := s.opts.Now()
	f := &flow.Flow{Start: start, Transport: flow.TransportDNS, DNS: &flow.DNS{ID: r.Id}, Device: device}
	if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
		f.Client = flow.Endpoint{Addr: ap.Addr().Unmap(), Port: ap.Port()}
	}
	if len(r.Question) > 0 {
		q := r.Question[0]
		f.DNS.Name = strings.TrimSuffix(q.Name, ".")
		f.DNS.Type = dns.TypeToString[q.Qtype]
		f.Host = f.DNS.Name
	}
	var resp *dns.Msg
	v, _ := s.opts.Handler.Request(context.Background(), f)
	f.Verdict = v
	switch {
	case v.Action == flow.ActionBlock:
		resp = blocked(r, s.opts.BlockMode)
		f.Note(flow.NoteBlocked, "answered "+s.opts.BlockMode.String()+" without asking upstream: blocked by "+v.String())
	case len(r.Question) == 1 && IsDoH(r.Question[0].Name) && s.opts.BlockDoH:
		f.Note(flow.NoteDoHRefused, "DNS-over-HTTPS endpoint: refused so the device uses plain DNS (--block-doh)")
		resp = new(dns.Msg)
		resp.SetRcode(r, dns.RcodeNameError)
	default:
		if len(r.Question) == 1 && IsDoH(r.Question[0].Name) {
			f.Note(flow.NoteDoH, "DNS-over-HTTPS endpoint: lookups sent there are hidden from this resolver (--block-doh refuses it)")
		}
		// UDP upstream whatever the client used; TCP when the answer is too big
		c := *s.client
		var err error
		resp, _, err = c.Exchange(r, s.opts.Upstream)
		if err == nil && resp.Truncated {
			c.Net = "tcp"
			resp, _, err = c.Exchange(r, s.opts.Upstream)
		}
		if err != nil {
			f.Note(flow.NoteUpstream, "upstream "+s.opts.Upstream+": "+err.Error())
			resp = new(dns.Msg)
			resp.SetRcode(r, dns.RcodeServerFailure)
		}
	}
	f.DNS.Answered = true
	f.DNS.RCode = dns.RcodeToString[resp.Rcode]
	for _, rr := range resp.Answer {
		var a netip.Addr
		switch v := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(v.AAAA)
		case *dns.CNAME:
			f.DNS.Answers = append(f.DNS.Answers, strings.TrimSuffix(v.Target, "."))
		}
		if a.IsValid() && !a.IsUnspecified() {
			f.DNS.Answers = append(f.DNS.Answers, a.String())
			s.mu.Lock()
			s.names[a] = f.DNS.Name
			s.mu.Unlock()
		}
	}
	f.End = s.opts.Now()
	s.opts.Handler.Done(f) // before answering: lookups are recorded in the order they were asked
	w.WriteMsg(resp)
}

// BlockMode is how a blocked lookup is answered.
type BlockMode uint8

const (
	// BlockNull answers the unspecified address for A and AAAA, as DNS
	// sinkholes do (Pi-hole's NULL mode): the app fails at once, without
	// retrying elsewhere; other types get NXDOMAIN.
	BlockNull BlockMode = iota
	// BlockNXDomain answers that the name does not exist.
	BlockNXDomain
	// BlockNoData answers that the name has no record of the type asked.
	BlockNoData
	// BlockRefused answers that the resolver refuses to answer.
	BlockRefused
)

var blockModeNames = [...]string{"null", "nxdomain", "nodata", "refused"}

func (m BlockMode) String() string {
	if int(m) < len(blockModeNames) {
		return blockModeNames[m]
	}
	return "null"
}

// ParseBlockMode reads a mode by its name (null, nxdomain, nodata, refused).
func ParseBlockMode(s string) (BlockMode, error) {
	for i, n := range blockModeNames {
		if strings.EqualFold(s, n) {
			return BlockMode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown DNS block mode %q: write null, nxdomain, nodata or refused", s)
}

// blocked is the answer to a blocked lookup, in the mode asked for.
func blocked(r *dns.Msg, mode BlockMode) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	switch mode {
	case BlockNXDomain:
		m.SetRcode(r, dns.RcodeNameError)
		return m
	case BlockRefused:
		m.SetRcode(r, dns.RcodeRefused)
		return m
	case BlockNoData:
		return m
	}
	if len(r.Question) != 1 {
		m.SetRcode(r, dns.RcodeNameError)
		return m
	}
	q := r.Question[0]
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 10}
	switch q.Qtype {
	case dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4zero})
	case dns.TypeAAAA:
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.IPv6zero})
	default:
		m.SetRcode(r, dns.RcodeNameError)
	}
	return m
}

// Listen opens a resolver on addr, over UDP and TCP on the same port; Run
// serves it and Close closes it (also when Run never ran).
func Listen(addr string, opts Options) (*Server, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("listen on %s (TCP): %w", pc.LocalAddr(), err)
	}
	s := New(opts)
	s.pc, s.ln = pc, ln
	return s, nil
}

// Addr is where a resolver opened by Listen answers.
func (s *Server) Addr() net.Addr {
	if s.pc == nil {
		return nil
	}
	return s.pc.LocalAddr()
}

// Run answers on the sockets Listen opened until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.pc == nil {
		return errors.New("DNS: Run without Listen")
	}
	return s.ServeOn(ctx, s.pc, s.ln)
}

// Close closes the sockets Listen opened.
func (s *Server) Close() error {
	if s.pc == nil {
		return nil
	}
	s.pc.Close()
	if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Serve answers on addr over UDP and TCP until ctx ends.
func (s *Server) Serve(ctx context.Context, addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("DNS: listen on %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return fmt.Errorf("DNS: listen on %s/tcp: %w", addr, err)
	}
	return s.ServeOn(ctx, pc, ln)
}

// ServeOn answers on the given sockets until ctx ends.
func (s *Server) ServeOn(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: ln, Handler: s}
	errc := make(chan error, 2)
	go func() { errc <- udp.ActivateAndServe() }()
	go func() { errc <- tcp.ActivateAndServe() }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		udp.Shutdown()
		tcp.Shutdown()
		return fmt.Errorf("DNS: %w", err)
	}
	udp.Shutdown()
	tcp.Shutdown()
	return nil
}
