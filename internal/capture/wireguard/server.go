package wireguard

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"phonehome/internal/capture/dnsproxy"
	"phonehome/internal/capture/proxy"
	"phonehome/internal/capture/transparent"
	"phonehome/internal/flow"
)

// DefaultPort is WireGuard's usual port.
const DefaultPort = 51820

// maxUDP bounds the UDP associations served at once, for all peers; a
// datagram that would start one more is dropped.
const maxUDP = 4096

// What one peer may hold open at once, so that one peer (an app spraying
// ports, a phone gone wrong) cannot use up what the server gives all: TCP
// connections (each may buffer megabytes), relayed UDP associations (each a
// host socket), and DNS associations, counted apart so that lookups go on.
const (
	maxPeerTCP = 1024
	maxPeerUDP = 512
	maxPeerDNS = 128
)

// The kinds of what peerLimits counts.
const (
	openTCP = iota
	openUDP
	openDNS
)

// peerLimits counts, per peer, what it holds open.
type peerLimits struct {
	mu   sync.Mutex
	open map[peerOpen]int
}

type peerOpen struct {
	peer netip.Addr
	kind int
}

// take counts one more of kind for peer, unless it holds max already.
func (l *peerLimits) take(peer netip.Addr, kind, max int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := peerOpen{peer, kind}
	if l.open[k] >= max {
		return false
	}
	if l.open == nil {
		l.open = map[peerOpen]int{}
	}
	l.open[k]++
	return true
}

// give counts one of kind fewer for peer.
func (l *peerLimits) give(peer netip.Addr, kind int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := peerOpen{peer, kind}
	if l.open[k]--; l.open[k] <= 0 {
		delete(l.open, k)
	}
}

// Options configure a server.
type Options struct {
	// Listen is the UDP address peers send to: ":51820" (the default),
	// "51820", or ":0" for a free port. wireguard-go listens on every
	// address of the port, so a host other than the unspecified one is
	// refused rather than silently widened.
	Listen string
	// Dir keeps the server's key and the peers (see AddPeer); a running
	// server reads the peers again when the file changes.
	Dir string
	// Proxy configures the proxy that every TCP connection from a peer
	// enters; the server sets its Device to name each peer. Its Handler
	// also receives the QUIC attempts and the refused connections.
	Proxy proxy.Options
	// DNS answers the peers' DNS (UDP 53, to the tunnel's resolver or to
	// any other): recorded under the peer's name. nil relays it instead.
	DNS *dnsproxy.Server
	// AllowQUIC relays UDP 443 instead of dropping it (dropped, apps fall
	// back to TCP, which can be read; who tried is recorded either way
	// only when dropped).
	AllowQUIC bool
	// ReachHost lets peers reach this machine's own addresses and its
	// loopback services; by default a peer reaches only the outside.
	ReachHost bool
	// UDPIdleTimeout ends a relayed UDP association (and a dropped QUIC
	// one) after this long without a datagram either way; default 2 min.
	UDPIdleTimeout time.Duration
	// ReloadEvery is how often the peers file is checked; default 2 s.
	ReloadEvery time.Duration
	Logger      *slog.Logger
	Rand        io.Reader // keys; default crypto/rand
}

// Server is a WireGuard endpoint whose tunnel ends in phonehome.
type Server struct {
	opts  Options
	key   Key
	port  uint16
	dev   *device.Device
	tun   *netTun
	proxy *proxy.Proxy
	quic  transparent.QUICTries

	names   atomic.Pointer[map[netip.Addr]string] // tunnel address → peer name
	udpOpen atomic.Int32                          // UDP associations being served
	limits  peerLimits                            // what each peer holds open

	ctx    context.Context // ends at Close: connections being served end
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	wg      sync.WaitGroup // connections and associations being served
	peers   []Peer
	peersAt fileStamp
	own     ownAddrs
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// New starts listening: peers in Dir can connect as soon as it returns.
// Close releases everything, also after a failed New.
func New(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("wireguard: no directory for the server key and the peers")
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.UDPIdleTimeout <= 0 {
		opts.UDPIdleTimeout = 2 * time.Minute
	}
	if opts.ReloadEvery <= 0 {
		opts.ReloadEvery = 2 * time.Second
	}
	port, err := ListenPort(opts.Listen)
	if err != nil {
		return nil, err
	}
	key, err := ServerKey(opts.Dir, opts.Rand)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, key: key}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	empty := map[netip.Addr]string{}
	s.names.Store(&empty)
	popts := opts.Proxy
	popts.Device = s.Device
	popts.Source = "wireguard"
	s.proxy = proxy.New(popts)
	if s.tun, err = newNetTun(); err != nil {
		s.Close()
		return nil, fmt.Errorf("wireguard: %w", err)
	}
	tcpFwd := tcp.NewForwarder(s.tun.stack, 0, 4096, s.serveTCP)
	s.tun.stack.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpFwd.HandlePacket)
	udpFwd := udp.NewForwarder(s.tun.stack, s.serveUDP)
	s.tun.stack.SetTransportProtocolHandler(udp.ProtocolNumber, udpFwd.HandlePacket)

	log := opts.Logger
	s.dev = device.NewDevice(s.tun, conn.NewDefaultBind(), &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf:   func(format string, args ...any) { log.Debug("wireguard: " + fmt.Sprintf(format, args...)) },
	})
	if err := s.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", key.hex(), port)); err != nil {
		s.Close()
		return nil, fmt.Errorf("wireguard: listen on UDP port %d (is another WireGuard using it? choose another with --wireguard :PORT): %w", port, err)
	}
	if err := s.reload(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.dev.Up(); err != nil {
		s.Close()
		return nil, fmt.Errorf("wireguard: listen on UDP port %d (is another WireGuard using it? choose another with --wireguard :PORT): %w", port, err)
	}
	s.port = port
	if conf, err := s.dev.IpcGet(); err == nil {
		for _, line := range strings.Split(conf, "\n") {
			if v, ok := strings.CutPrefix(line, "listen_port="); ok {
				if n, err := strconv.Atoi(v); err == nil {
					s.port = uint16(n)
				}
			}
		}
	}
	return s, nil
}

// ListenPort reads the port of a --wireguard address.
func ListenPort(addr string) (uint16, error) {
	if addr == "" {
		return DefaultPort, nil
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		host, portStr = "", addr
	}
	if host != "" {
		if a, err := netip.ParseAddr(host); err != nil || !a.IsUnspecified() {
			return 0, fmt.Errorf("wireguard: %q: give only a port (:51820): WireGuard listens on every address of this machine", addr)
		}
	}
	n, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("wireguard: %q: write a UDP port such as :51820", addr)
	}
	return uint16(n), nil
}

// Port is the UDP port peers send to.
func (s *Server) Port() uint16 { return s.port }

// PublicKey is the server's public key, which every peer's configuration names.
func (s *Server) PublicKey() Key { return s.key.Public() }

// Device is the name of the peer that a tunnel address belongs to, or "".
func (s *Server) Device(a netip.Addr) string { return (*s.names.Load())[a.Unmap()] }

// Peers is the peers in force.
func (s *Server) Peers() []Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Peer(nil), s.peers...)
}

// Run reads the peers file again whenever it changes, until ctx ends: a peer
// added is let in, a peer removed is refused from then on.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.ReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.ctx.Done():
			return nil
		case <-t.C:
			if err := s.reload(); err != nil {
				s.opts.Logger.Warn("wireguard: the peers in force stay", "err", err)
			}
		}
	}
}

// reload puts the peers of the file in force if it changed.
func (s *Server) reload() error {
	st, err := os.Stat(filepath.Join(s.opts.Dir, PeersFile))
	stamp := fileStamp{}
	if err == nil {
		stamp = fileStamp{st.ModTime(), st.Size()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peers != nil && stamp == s.peersAt {
		return nil
	}
	peers, err := LoadPeers(s.opts.Dir)
	if err != nil {
		return err
	}
	var b strings.Builder
	keep := map[Key]bool{}
	for _, p := range peers {
		keep[p.PublicKey] = true
	}
	for _, p := range s.peers {
		if !keep[p.PublicKey] {
			fmt.Fprintf(&b, "public_key=%s\nremove=true\n", p.PublicKey.hex())
		}
	}
	names := map[netip.Addr]string{}
	for _, p := range peers {
		fmt.Fprintf(&b, "public_key=%s\nreplace_allowed_ips=true\nallowed_ip=%s/32\nallowed_ip=%s/128\n", p.PublicKey.hex(), p.IPv4, p.IPv6)
		names[p.IPv4], names[p.IPv6] = p.Name, p.Name
	}
	if b.Len() > 0 {
		if err := s.dev.IpcSet(b.String()); err != nil {
			return fmt.Errorf("wireguard: put the peers in force: %w", err)
		}
	}
	s.names.Store(&names)
	if peers == nil {
		peers = []Peer{}
	}
	s.peers, s.peersAt = peers, stamp
	return nil
}

// Close stops the tunnel and waits for every connection it served.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	if s.dev != nil {
		s.dev.Close() // closes the stack too: its connections end
	} else if s.tun != nil {
		s.tun.Close()
	}
	s.wg.Wait()
	if s.proxy != nil {
		s.proxy.Close()
	}
	return nil
}

// enter counts a connection in, unless the server is closing.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}

// serveTCP takes a connection a peer opened, to anywhere, into the proxy.
func (s *Server) serveTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst, src := addrPort(id.LocalAddress, id.LocalPort), addrPort(id.RemoteAddress, id.RemotePort)
	if !s.enter() {
		r.Complete(true)
		return
	}
	defer s.wg.Done()
	// DNS over TCP to the tunnel's resolver: what a client asks again with
	// when an answer was too big for UDP
	resolver := dst.Port() == 53 && s.opts.DNS != nil && (dst.Addr() == Server4 || dst.Addr() == Server6)
	if why := s.refused(dst); why != "" && !resolver {
		r.Complete(true)
		s.record(src, dst, flow.TransportTCP, why)
		return
	}
	if !resolver && !routable(dst) {
		// refused at once, as the phone's own network would: an app that
		// tries IPv6 where this machine has no IPv6 route falls back to
		// IPv4 instead of getting a connection that then goes nowhere
		r.Complete(true)
		return
	}
	if !s.limits.take(src.Addr(), openTCP, maxPeerTCP) {
		r.Complete(true) // reset: the peer holds its share of connections
		return
	}
	defer s.limits.give(src.Addr(), openTCP)
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		r.Complete(true)
		return
	}
	r.Complete(false)
	c := gonet.NewTCPConn(&wq, ep)
	if resolver {
		defer c.Close()
		stop := context.AfterFunc(s.ctx, func() { c.Close() })
		defer stop()
		s.serveDNSTCP(c, src)
		return
	}
	s.proxy.ServeIntercepted(s.ctx, c, dst)
}

// serveUDP takes a datagram that starts an association: DNS is answered,
// QUIC dropped (and recorded), the rest relayed. It runs on the stack's
// goroutine, so the serving goes on in one of its own.
func (s *Server) serveUDP(r *udp.ForwarderRequest) {
	id := r.ID()
	dst, src := addrPort(id.LocalAddress, id.LocalPort), addrPort(id.RemoteAddress, id.RemotePort)
	var serve func(c *gonet.UDPConn)
	kind, most := openUDP, maxPeerUDP
	switch {
	case dst.Port() == 53 && s.opts.DNS != nil:
		serve = func(c *gonet.UDPConn) { s.serveDNS(c, src) }
		kind, most = openDNS, maxPeerDNS
	case s.refused(dst) != "":
		return
	case dst.Port() == 443 && !s.opts.AllowQUIC:
		serve = func(c *gonet.UDPConn) { s.dropQUIC(c, src) }
	default:
		serve = func(c *gonet.UDPConn) { s.relayUDP(c, dst) }
	}
	if !s.enter() {
		return
	}
	// each association holds a goroutine and, relayed, a host socket: a
	// peer that sprays datagrams to new ports must not exhaust them
	if s.udpOpen.Add(1) > maxUDP {
		s.udpOpen.Add(-1)
		s.wg.Done()
		return
	}
	if !s.limits.take(src.Addr(), kind, most) {
		s.udpOpen.Add(-1)
		s.wg.Done()
		return
	}
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		s.limits.give(src.Addr(), kind)
		s.udpOpen.Add(-1)
		s.wg.Done()
		return
	}
	c := gonet.NewUDPConn(&wq, ep)
	go func() {
		defer s.wg.Done()
		defer s.udpOpen.Add(-1)
		defer s.limits.give(src.Addr(), kind)
		defer c.Close()
		stop := context.AfterFunc(s.ctx, func() { c.Close() })
		defer stop()
		serve(c)
	}()
}

// refused says why a peer may not reach dst, or "": the tunnel's own
// addresses (phonehome, other peers) always, this machine and its loopback
// unless ReachHost.
func (s *Server) refused(dst netip.AddrPort) string {
	a := dst.Addr()
	if Prefix4.Contains(a) || Prefix6.Contains(a) {
		return "inside the tunnel: phonehome answers only DNS there, and peers do not reach each other"
	}
	if a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return "multicast or broadcast: it would reach this machine's networks, not the outside"
	}
	if s.opts.ReachHost {
		return ""
	}
	if a.IsLinkLocalUnicast() {
		return "link-local: this machine's own link (cloud metadata services live there), not the outside"
	}
	if a.IsLoopback() || a.IsUnspecified() || s.own.has(a) {
		return "phonehome's own host: refused so that a peer reaches only the outside (--wireguard-reach-host lets it)"
	}
	return ""
}

// record hands the Handler a flow that never got to the proxy.
func (s *Server) record(src, dst netip.AddrPort, t flow.Transport, why string) {
	if s.opts.Proxy.Handler == nil {
		return
	}
	now := time.Now()
	f := &flow.Flow{Start: now, End: now, Transport: t, Device: s.Device(src.Addr()),
		Client: flow.Endpoint{Addr: src.Addr(), Port: src.Port()}, Server: flow.Endpoint{Addr: dst.Addr(), Port: dst.Port()}}
	f.Note(flow.NoteBlocked, "connection refused: "+why)
	s.opts.Proxy.Handler.Done(f)
}

// serveDNS answers the queries of one association with the recording
// resolver, under the peer's name, until it falls idle.
func (s *Server) serveDNS(c *gonet.UDPConn, src netip.AddrPort) {
	name := s.Device(src.Addr())
	buf := make([]byte, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a resolver's client uses a port per query
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if q := parseQuery(buf[:n]); q != nil {
			s.opts.DNS.ServeDevice(&dnsWriter{c: c, max: udpSize(q)}, q, name)
		}
	}
}

// serveDNSTCP answers the queries of one TCP connection (each framed by its
// length) until the client closes it or falls idle.
func (s *Server) serveDNSTCP(c *gonet.TCPConn, src netip.AddrPort) {
	name := s.Device(src.Addr())
	w := &dnsWriter{c: c, framed: true}
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := readFramed(c)
		if err != nil {
			return
		}
		if q := parseQuery(b); q != nil {
			s.opts.DNS.ServeDevice(w, q, name)
		}
	}
}

// dropQUIC reads a peer's QUIC and answers nothing, recording who tried.
func (s *Server) dropQUIC(c *gonet.UDPConn, src netip.AddrPort) {
	name := s.Device(src.Addr())
	buf := make([]byte, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(s.opts.UDPIdleTimeout))
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if f := s.quic.Add(src, name, buf[:n]); f != nil && s.opts.Proxy.Handler != nil {
			s.opts.Proxy.Handler.Done(f)
		}
	}
}

// relayUDP relays an association through a host socket until no datagram
// moved either way for UDPIdleTimeout.
func (s *Server) relayUDP(c *gonet.UDPConn, dst netip.AddrPort) {
	up, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return
	}
	defer up.Close()
	stop := context.AfterFunc(s.ctx, func() { up.Close() })
	defer stop()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	idle := s.opts.UDPIdleTimeout
	// copy moves datagrams one way; a read that times out while the other
	// way moved recently waits again
	copyOne := func(from, to net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			from.SetReadDeadline(time.Now().Add(idle))
			n, err := from.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < idle {
					continue
				}
				from.Close()
				to.Close()
				return
			}
			last.Store(time.Now().UnixNano())
			to.Write(buf[:n])
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); copyOne(up, c) }()
	copyOne(c, up)
	<-done
}

// routable reports whether this machine has a route to dst: connecting a
// UDP socket only looks the route up, it sends nothing.
func routable(dst netip.AddrPort) bool {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ownAddrs are this machine's addresses, read again every few seconds
// (interfaces come and go).
type ownAddrs struct {
	mu    sync.Mutex
	at    time.Time
	addrs map[netip.Addr]bool
}

func (o *ownAddrs) has(a netip.Addr) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if time.Since(o.at) > 5*time.Second {
		o.at = time.Now()
		o.addrs = map[netip.Addr]bool{}
		if list, err := net.InterfaceAddrs(); err == nil {
			for _, x := range list {
				if p, err := netip.ParsePrefix(x.String()); err == nil {
					o.addrs[p.Addr().Unmap()] = true
				}
			}
		}
	}
	return o.addrs[a]
}
