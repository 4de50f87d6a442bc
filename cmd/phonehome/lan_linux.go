//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"phonehome/internal/capture/proxy"
	"phonehome/internal/capture/transparent"
	"phonehome/internal/certs"
	"phonehome/internal/flow"
	"phonehome/internal/netctl"
)

// interception is a running ARP spoof with its kernel changes. It spoofs
// from the moment it is started until Close, which heals and undoes
// everything; a start that fails undoes what it did through the same Close.
type interception struct {
	setup   *netctl.Setup
	spoofer *netctl.Spoofer
	cancel  context.CancelFunc
	done    chan error
	stderr  io.Writer
	spoofed bool // replies may have gone out: the caches need healing
}

// stateDir holds the record of kernel changes, next to the CA.
func stateDir() (string, error) {
	dir, err := certs.DefaultDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "state"), nil
}

// startInterception checks the plan, records and makes the kernel changes,
// and starts spoofing. redirect describes where the device's traffic goes on
// this machine (its Target is filled in here); nil only forwards.
func startInterception(o lanOpts, redirect *netctl.Redirect, stderr io.Writer) (*interception, error) {
	target, err := netip.ParseAddr(o.target)
	if err != nil || !target.Is4() {
		return nil, fmt.Errorf("--spoof %q: name the device by its IPv4 address on this network (see your router's list of devices)", o.target)
	}
	ifi, local, err := netctl.LocalNet(target, o.iface)
	if err != nil {
		return nil, err
	}
	var gateway netip.Addr
	if o.gateway != "" {
		if gateway, err = netip.ParseAddr(o.gateway); err != nil {
			return nil, fmt.Errorf("--gateway %q: not an IPv4 address", o.gateway)
		}
	} else if gateway, err = netctl.DefaultGateway(ifi.Name); err != nil {
		return nil, err
	}
	if err := netctl.Check(target, gateway, local); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "warning: not running as root: spoofing needs CAP_NET_ADMIN and CAP_NET_RAW")
	}
	dir, err := stateDir()
	if err != nil {
		return nil, err
	}
	setup, restored, err := netctl.Begin(dir)
	for _, r := range restored {
		fmt.Fprintln(stderr, "restored after an earlier run that did not finish:", r)
	}
	if err != nil {
		return nil, err
	}
	in := &interception{setup: setup, stderr: stderr}
	fail := func(err error) (*interception, error) {
		if rerr := in.Close(); rerr != nil {
			err = fmt.Errorf("%w (and restoring: %v)", err, rerr)
		}
		return nil, err
	}
	// the addresses first: the rules need the device's IPv6 addresses too
	sp, err := netctl.NewSpoofer(ifi, target, gateway)
	if err != nil {
		return fail(err)
	}
	in.spoofer = sp
	sysctls := [][2]string{{"net/ipv4/ip_forward", "1"}}
	for _, c := range []string{"all", "default", ifi.Name} {
		// redirects would tell the device to bypass us; the effective value is all OR interface
		sysctls = append(sysctls, [2]string{"net/ipv4/conf/" + c + "/send_redirects", "0"})
	}
	if len(sp.V6.Target) > 0 {
		sysctls = append(sysctls, [2]string{"net/ipv6/conf/all/forwarding", "1"})
	}
	for _, s := range sysctls {
		if err := setup.Sysctl(s[0], s[1]); err != nil {
			return fail(err)
		}
	}
	if redirect != nil {
		redirect.Target, redirect.Target6 = target, sp.V6.Target
		if err := setup.Nft(netctl.Table, redirect.Ruleset()); err != nil {
			return fail(err)
		}
	}
	in.spoofed = true
	if err := setup.Spoofing(sp.State()); err != nil {
		return fail(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	in.done = make(chan error, 1)
	go func() { in.done <- sp.Run(sctx) }()
	fmt.Fprintf(stderr, "spoofing on %s (%s): device %s, gateway %s; this machine %s\n", ifi.Name, local.Masked(), sp.Target, sp.Gateway, ifi.HardwareAddr)
	if len(sp.V6.Target) > 0 {
		fmt.Fprintf(stderr, "and over IPv6 (neighbour advertisements): device %v, gateway %v\n", sp.V6.Target, sp.V6.Gateway)
	}
	return in, nil
}

// Close stops spoofing, heals the ARP caches and undoes the kernel changes,
// as far as they were made.
func (in *interception) Close() error {
	var runErr, healErr error
	if in.cancel != nil {
		in.cancel()
		runErr = <-in.done
		in.cancel = nil
	}
	switch {
	case in.spoofer != nil && in.spoofed:
		fmt.Fprintln(in.stderr, "telling the device and the gateway their real addresses again...")
		if healErr = in.spoofer.Heal(); healErr == nil {
			in.setup.Healed()
		}
	case in.spoofer != nil:
		in.spoofer.Close()
	}
	in.spoofer = nil
	err := in.setup.Restore()
	for _, e := range []error{runErr, healErr} {
		if e != nil && err == nil {
			err = e
		}
	}
	return err
}

// parsePorts reads "80,443,8080".
func parsePorts(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("--ports %q: write ports as 80,443", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// listenPort is the port a listener got.
func listenPort(a net.Addr) int {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return 0
	}
	return int(ap.Port())
}

// spoofMode is run --spoof: the transparent proxy and the QUIC catcher, and
// the interception that sends the device's traffic to them.
type spoofMode struct {
	in     *interception
	tl     net.Listener
	qc     net.PacketConn // nil with --allow-quic
	p      *proxy.Proxy
	done   func(*flow.Flow)
	stderr io.Writer
}

// startSpoofMode opens the transparent proxy's and the QUIC catcher's
// sockets and starts the interception; Run serves them, Close undoes it all.
func startSpoofMode(o runOpts, p *proxy.Proxy, dnsPort int, done func(*flow.Flow), stderr io.Writer) (*spoofMode, error) {
	ports, err := parsePorts(o.ports)
	if err != nil {
		return nil, err
	}
	m := &spoofMode{p: p, done: done, stderr: stderr}
	if m.tl, err = net.Listen("tcp", o.transparent); err != nil {
		return nil, fmt.Errorf("run: --transparent %s: %w", o.transparent, err)
	}
	red := &netctl.Redirect{TCPPorts: ports, Proxy: listenPort(m.tl.Addr())}
	red.DNS = dnsPort
	if !o.lan.allowQUIC {
		if m.qc, err = net.ListenPacket("udp", ":0"); err != nil {
			m.Close()
			return nil, fmt.Errorf("run: QUIC catcher: %w", err)
		}
		red.QUIC = listenPort(m.qc.LocalAddr())
	}
	if m.in, err = startInterception(o.lan, red, stderr); err != nil {
		m.Close()
		return nil, err
	}
	fmt.Fprintf(stderr, "transparent proxy on %s for TCP %s", m.tl.Addr(), o.ports)
	if red.DNS > 0 {
		fmt.Fprintf(stderr, "; DNS to port %d", red.DNS)
	}
	if red.QUIC > 0 {
		fmt.Fprint(stderr, "; QUIC (UDP 443) dropped")
	}
	fmt.Fprintln(stderr)
	return m, nil
}

// Run serves redirected connections and QUIC until ctx ends.
func (m *spoofMode) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if m.qc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := transparent.ServeQUIC(ctx, m.qc, m.done); err != nil {
				fmt.Fprintln(m.stderr, "phonehome: QUIC catcher:", err)
			}
		}()
	}
	err := transparent.Serve(ctx, m.tl, m.p, func(err error) { fmt.Fprintln(m.stderr, "phonehome: transparent:", err) })
	wg.Wait()
	return err
}

// Close heals the network and closes the sockets, as far as they were made.
func (m *spoofMode) Close() error {
	var err error
	if m.in != nil {
		err = m.in.Close()
	}
	if m.tl != nil {
		m.tl.Close()
	}
	if m.qc != nil {
		m.qc.Close()
	}
	return err
}

// spoofOnly runs phonehome spoof until ctx ends.
func spoofOnly(ctx context.Context, o lanOpts, ports string, stderr io.Writer) error {
	var red *netctl.Redirect
	if o.redirect > 0 {
		ps, err := parsePorts(ports)
		if err != nil {
			return err
		}
		red = &netctl.Redirect{TCPPorts: ps, Proxy: o.redirect}
	}
	in, err := startInterception(o, red, stderr)
	if err != nil {
		return fmt.Errorf("spoof: %w", err)
	}
	fmt.Fprintln(stderr, "the device's traffic now passes through this machine; Ctrl-C to stop")
	<-ctx.Done()
	if err := in.Close(); err != nil {
		return fmt.Errorf("spoof: restoring the network: %w", err)
	}
	fmt.Fprintln(stderr, "network restored")
	return nil
}
