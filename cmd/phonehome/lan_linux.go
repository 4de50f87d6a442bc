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

// interception is a running ARP spoof with its kernel changes.
type interception struct {
	setup   *netctl.Setup
	spoofer *netctl.Spoofer
	cancel  context.CancelFunc
	done    chan error
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
func startInterception(ctx context.Context, o lanOpts, redirect *netctl.Redirect, stderr io.Writer) (*interception, error) {
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
	in := &interception{setup: setup}
	fail := func(err error) (*interception, error) {
		if rerr := setup.Restore(); rerr != nil {
			err = fmt.Errorf("%w (and restoring: %v)", err, rerr)
		}
		return nil, err
	}
	// the addresses first: the rules need the device's IPv6 addresses too
	sp, err := netctl.NewSpoofer(ifi, target, gateway)
	if err != nil {
		return fail(err)
	}
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
			sp.Close()
			return fail(err)
		}
	}
	if redirect != nil {
		redirect.Target, redirect.Target6 = target, sp.V6.Target
		if err := setup.Nft(netctl.Table, redirect.Ruleset()); err != nil {
			sp.Close()
			return fail(err)
		}
	}
	if err := setup.Spoofing(sp.State()); err != nil {
		sp.Heal()
		return fail(err)
	}
	in.spoofer = sp
	sctx, cancel := context.WithCancel(ctx)
	in.cancel = cancel
	in.done = make(chan error, 1)
	go func() { in.done <- sp.Run(sctx) }()
	fmt.Fprintf(stderr, "spoofing on %s (%s): device %s, gateway %s; this machine %s\n", ifi.Name, local.Masked(), sp.Target, sp.Gateway, ifi.HardwareAddr)
	if len(sp.V6.Target) > 0 {
		fmt.Fprintf(stderr, "and over IPv6 (neighbour advertisements): device %v, gateway %v\n", sp.V6.Target, sp.V6.Gateway)
	}
	return in, nil
}

// stop heals the ARP caches and undoes the kernel changes.
func (in *interception) stop(stderr io.Writer) error {
	in.cancel()
	runErr := <-in.done
	fmt.Fprintln(stderr, "telling the device and the gateway their real addresses again...")
	healErr := in.spoofer.Heal()
	if healErr == nil {
		in.setup.Healed()
	}
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

// startSpoofMode starts the transparent proxy and the QUIC catcher, then the
// interception that sends the device's traffic to them.
func startSpoofMode(ctx context.Context, o runOpts, p *proxy.Proxy, dnsPort int, emit func(*flow.Flow), wg *sync.WaitGroup, stderr io.Writer) (*interception, error) {
	ports, err := parsePorts(o.ports)
	if err != nil {
		return nil, err
	}
	tl, err := net.Listen("tcp", o.transparent)
	if err != nil {
		return nil, fmt.Errorf("run: --transparent %s: %w", o.transparent, err)
	}
	red := &netctl.Redirect{TCPPorts: ports, Proxy: listenPort(tl.Addr())}
	red.DNS = dnsPort
	var qc net.PacketConn
	if !o.lan.allowQUIC {
		if qc, err = net.ListenPacket("udp", ":0"); err != nil {
			tl.Close()
			return nil, fmt.Errorf("run: QUIC catcher: %w", err)
		}
		red.QUIC = listenPort(qc.LocalAddr())
	}
	in, err := startInterception(ctx, o.lan, red, stderr)
	if err != nil {
		tl.Close()
		if qc != nil {
			qc.Close()
		}
		return nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := transparent.Serve(ctx, tl, p, func(err error) { fmt.Fprintln(stderr, "phonehome: transparent:", err) }); err != nil {
			fmt.Fprintln(stderr, "phonehome: transparent proxy:", err)
		}
	}()
	if qc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := transparent.ServeQUIC(ctx, qc, emit); err != nil {
				fmt.Fprintln(stderr, "phonehome: QUIC catcher:", err)
			}
		}()
	}
	fmt.Fprintf(stderr, "transparent proxy on %s for TCP %s", tl.Addr(), o.ports)
	if red.DNS > 0 {
		fmt.Fprintf(stderr, "; DNS to port %d", red.DNS)
	}
	if red.QUIC > 0 {
		fmt.Fprint(stderr, "; QUIC (UDP 443) dropped")
	}
	fmt.Fprintln(stderr)
	return in, nil
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
	in, err := startInterception(ctx, o, red, stderr)
	if err != nil {
		return fmt.Errorf("spoof: %w", err)
	}
	fmt.Fprintln(stderr, "the device's traffic now passes through this machine; Ctrl-C to stop")
	<-ctx.Done()
	if err := in.stop(stderr); err != nil {
		return fmt.Errorf("spoof: restoring the network: %w", err)
	}
	fmt.Fprintln(stderr, "network restored")
	return nil
}
