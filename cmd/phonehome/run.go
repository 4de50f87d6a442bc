package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"phonehome/internal/capture"
	"phonehome/internal/capture/dnsproxy"
	"phonehome/internal/capture/proxy"
	"phonehome/internal/capture/wireguard"
	"phonehome/internal/certs"
	"phonehome/internal/detect"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/flow"
	"phonehome/internal/live"
	"phonehome/internal/pipeline"
	"phonehome/internal/policy"
	"phonehome/internal/report"
	"phonehome/internal/store"
	"phonehome/internal/web"
)

type runOpts struct {
	listen           string
	db               string
	session          string
	sensor           string
	upstreamCA       []string
	insecureUpstream bool
	allow            []string
	ignore           []string
	intercept        []string
	caDir            string
	maxBody          int
	maxMediaBody     int
	keepEmpty        bool
	timeouts         struct{ header, handshake, idle, tunnel, dial, response time.Duration }
	debugListen      string
	detect           analyzeOpts // --profile, --trackers, --phone-region
	lan              lanOpts
	ports            string
	transparent      string
	dns              string
	dnsUpstream      string
	blockDoH         bool
	block            []string // --block patterns
	blockStatus      int
	redactFallback   string
	dnsBlockMode     string
	policyFile       string
	presets          []string
	redact, fake     []string // kinds
	ui               string   // --ui address, or "off"
	uiSet            bool     // --ui was given (a default that is taken is only warned about)
	wireguard        string   // --wireguard UDP address; "": off
	wgReachHost      bool
}

func newRunCmd(stdout, stderr io.Writer) *cobra.Command {
	var o runOpts
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the intercepting proxy and show what devices send, live",
		Long: `Run an HTTP(S) proxy that decrypts, analyses and stores what passes through it.
Point a device's proxy setting at the address phonehome listens on and install
phonehome's certificate on it (phonehome ca shows where it is); every request
the device makes is then shown as it happens, with the personal data it carries.
The web UI (http://127.0.0.1:8081/, --ui to move it, --ui off) shows the same
live, per party, and switches blocking on and off without a restart.

The proxy listens on 127.0.0.1 unless told otherwise: to let a phone on your
Wi-Fi use it, name your machine's LAN address with --listen, and limit who may
use it with --allow. Ctrl-C stops it: requests in flight are finished, the
session is stored and a summary is printed.

Devices that ignore proxy settings (TVs, speakers, many apps) are captured
with --spoof (Linux, root): phonehome tells the device that this machine is
its router and the router that this machine is the device (ARP spoofing),
turns IP forwarding on and ICMP redirects off, and redirects the device's
TCP 80 and 443 to a transparent proxy (nftables), its DNS to a resolver that
records every lookup, and drops its QUIC so apps fall back to TCP. On exit
(also Ctrl-C or SIGTERM) the real addresses are announced again and every
kernel change is undone; after a crash, the next start undoes them.
--dns ADDR alone runs the recording resolver for devices you point at it.

--wireguard runs a WireGuard server (UDP 51820, no root needed): a phone
scans a QR code in the WireGuard app and every packet it sends goes through
phonehome, on any network, recorded under the peer's name (phonehome
wireguard add NAME; with no peer yet, one named phone is made and its QR code
shown). TCP is intercepted whatever its port, DNS is answered by the
recording resolver, QUIC is dropped (--allow-quic relays it), other UDP is
relayed; peers reach only the outside, not this machine.

Blocking: --block PATTERN (repeatable) refuses what matches: a host
("tracker.example" exactly, ".example.com" for it and its subdomains,
"*.example.com" for its subdomains only, or a glob), owner:NAME or
category:NAME (from the tracker knowledge), list:FILE (a hosts file, domain
list, Adblock list or Disconnect/DuckDuckGo/Exodus JSON), kind:KIND (a
request carrying that data), device:ADDR or CIDR, method:M, path:/P*.
A blocked HTTP(S) request is answered by phonehome (--block-status, 403) and
never forwarded, also inside HTTPS (a blocked host that is passed through,
or pins its certificate, is refused at its TLS hello instead); a blocked
DNS lookup is answered without asking upstream (--dns-block-mode).
--redact KIND takes that kind of data out of every request that carries it
(wherever it sits and however it is wrapped; a request that cannot be
re-encoded is blocked instead, or with --redact-fallback forward sent
unchanged with a note), --fake KIND replaces it with a fake of the
same shape, the same for each device. --preset NAME adds a rule set built
from the tracker knowledge: block-trackers, block-ads, vendor-telemetry, or
strip-identifiers (redact device and advertising identifiers, phone numbers,
location). --policy FILE reads rules (allow, block, passthrough, redact
KIND, fake KIND) from YAML, applied before the flags' rules and the presets,
the first match deciding; SIGHUP reloads it without dropping connections:

  - action: passthrough      # never decrypt the bank
    host: .bank.example
  - action: block
    owner: Xiaomi
    device: 192.168.1.23     # this phone only
    status: 451
  - action: fake imei advertising_id
    category: analytics`,
		Example: `  phonehome run
  phonehome run --listen 192.168.1.10:8080 --allow 192.168.1.0/24
  phonehome run --db phone.db --session after-opt-out --profile me.yaml
  sudo phonehome run --spoof 192.168.1.23
  sudo phonehome run --spoof 192.168.1.23 --gateway 192.168.1.1 --iface wlan0 --block-doh
  phonehome run --dns 192.168.1.10:53
  phonehome run --wireguard              # phones join by QR code (phonehome wireguard add NAME)
  phonehome run --preset block-trackers --block owner:Xiaomi --block .app-measurement.com
  phonehome run --policy policy.yaml      # kill -HUP reloads it`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.uiSet = cmd.Flags().Changed("ui")
			return runProxy(cmd.Context(), o, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to listen on; a LAN address lets other devices use the proxy")
	f.StringVar(&o.db, "db", "", "where to store the session: "+dbHelp+"phonehome.db in the user's data directory)")
	f.StringVar(&o.sensor, "sensor", "", "name of this machine in the sessions it stores (default: the host name)")
	f.StringVar(&o.session, "session", "", "name of this run's session (default: run and the time)")
	f.StringArrayVar(&o.upstreamCA, "upstream-ca", nil, "also trust this CA (PEM file) for upstream servers; repeatable")
	f.BoolVar(&o.insecureUpstream, "insecure-upstream", false, "accept any upstream certificate (expired, self-signed, wrong name): for tests only")
	f.StringArrayVar(&o.allow, "allow", nil, "only clients in this CIDR may use the proxy (repeatable; default: anyone who can reach the address)")
	f.StringArrayVar(&o.ignore, "ignore-hosts", nil, "never decrypt hosts matching this pattern (\"*.bank.example\"); repeatable")
	f.StringArrayVar(&o.intercept, "intercept", nil, "decrypt only hosts matching this pattern; others pass through; repeatable")
	f.StringVar(&o.caDir, "ca-dir", "", "use the CA in this directory (default: the config directory, see phonehome ca)")
	f.IntVar(&o.maxBody, "max-body", 1<<20, "bytes of each body kept for analysis and storage")
	f.IntVar(&o.maxMediaBody, "max-media-body", 8<<10, "bytes kept of a response body of a media or binary type (pictures, video, audio, archives); the rest is relayed and counted")
	f.BoolVar(&o.keepEmpty, "keep-empty", false, "keep the session even when nothing was captured")
	f.DurationVar(&o.timeouts.header, "header-timeout", 20*time.Second, "time a client has to send a request head")
	f.DurationVar(&o.timeouts.handshake, "handshake-timeout", 10*time.Second, "time for a TLS handshake, with a client or with a server")
	f.DurationVar(&o.timeouts.idle, "idle-timeout", 2*time.Minute, "a connection idle between requests, or a body that stops moving, is closed after this")
	f.DurationVar(&o.timeouts.tunnel, "tunnel-idle-timeout", 10*time.Minute, "a raw or passed-through tunnel with no byte either way is closed after this")
	f.DurationVar(&o.timeouts.dial, "dial-timeout", 15*time.Second, "time to connect to a server")
	f.DurationVar(&o.timeouts.response, "response-timeout", 2*time.Minute, "a server that sends no answer within this is answered 504 for it")
	f.StringVar(&o.debugListen, "debug-listen", "", "serve Go's profiles (goroutines, memory, CPU) on this loopback address, e.g. 127.0.0.1:6060")
	f.StringVar(&o.detect.profile, "profile", "", "YAML or JSON file of your own values to find in every form (see analyze --help)")
	f.StringArrayVar(&o.detect.trackers, "trackers", nil, "also load this tracker list (see analyze --help); repeatable")
	f.StringVar(&o.detect.region, "phone-region", "", "two-letter country for phone numbers written without a country code")
	f.StringVar(&o.lan.target, "spoof", "", "capture this device (IPv4 address on the LAN) by ARP spoofing, with no set-up on it (Linux, root)")
	f.StringVar(&o.lan.gateway, "gateway", "", "with --spoof: the router's address (default: the interface's default route)")
	f.StringVar(&o.lan.iface, "iface", "", "with --spoof: the network interface (default: the one on the device's network)")
	f.StringVar(&o.ports, "ports", "80,443", "with --spoof: the device's TCP ports sent to the transparent proxy")
	f.StringVar(&o.transparent, "transparent", ":0", "with --spoof: address of the transparent proxy (redirected connections arrive there)")
	f.BoolVar(&o.lan.allowQUIC, "allow-quic", false, "with --spoof or --wireguard: let the device's QUIC (UDP 443) through instead of dropping it (it cannot be decrypted)")
	f.StringVar(&o.dns, "dns", "", "run a recording DNS resolver on this address (with --spoof: the device's DNS goes to it; default a free port)")
	f.StringVar(&o.dnsUpstream, "dns-upstream", "", "resolver the DNS resolver forwards to (default: the first nameserver of /etc/resolv.conf)")
	f.BoolVar(&o.blockDoH, "block-doh", false, "refuse known DNS-over-HTTPS endpoints so devices fall back to plain DNS")
	f.StringArrayVar(&o.block, "block", nil, "block what matches: a host pattern, owner:NAME, category:NAME, list:FILE, kind:KIND, device:CIDR; repeatable")
	f.IntVar(&o.blockStatus, "block-status", 403, "HTTP status phonehome answers a blocked request with")
	f.StringVar(&o.redactFallback, "redact-fallback", "block", "a request a redact rule matched but whose values cannot all be taken out (signed, encrypted, not captured whole): block, or forward it unchanged with a note")
	f.StringVar(&o.dnsBlockMode, "dns-block-mode", "null", "how a blocked DNS lookup is answered: null (0.0.0.0 and ::), nxdomain, nodata or refused")
	f.StringVar(&o.policyFile, "policy", "", "YAML file of rules (allow, block, passthrough); SIGHUP reloads it")
	f.StringArrayVar(&o.presets, "preset", nil, "add a preset rule set: block-trackers, block-ads, vendor-telemetry or strip-identifiers; repeatable")
	f.StringArrayVar(&o.redact, "redact", nil, "take this kind of data (imei, advertising_id, location, ...) out of every request that carries it; repeatable")
	f.StringArrayVar(&o.fake, "fake", nil, "replace this kind of data with a consistent fake of the same shape; repeatable")
	f.StringVar(&o.ui, "ui", "127.0.0.1:8081", "serve the web UI (live flows, parties, switches, markers) on this address, or off; anywhere but loopback it requires the token it prints")
	f.StringVar(&o.wireguard, "wireguard", "", "run a WireGuard server that phones join by QR code (phonehome wireguard add NAME); --wireguard alone listens on UDP :51820, --wireguard=:PORT elsewhere")
	f.Lookup("wireguard").NoOptDefVal = ":51820"
	f.BoolVar(&o.wgReachHost, "wireguard-reach-host", false, "with --wireguard: let peers reach this machine's own addresses and loopback services (by default they reach only the outside)")
	return cmd
}

// defaultDB is phonehome.db in $XDG_DATA_HOME/phonehome (or ~/.local/share/phonehome).
func defaultDB() (string, error) {
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the data directory (set $XDG_DATA_HOME or use --db): %w", err)
		}
		dir = filepath.Join(home, ".local", "share")
	}
	dir = filepath.Join(dir, "phonehome")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create the data directory: %w", err)
	}
	return filepath.Join(dir, "phonehome.db"), nil
}

func upstreamTLS(o runOpts) (*tls.Config, error) {
	cfg := &tls.Config{InsecureSkipVerify: o.insecureUpstream}
	if len(o.upstreamCA) == 0 {
		return cfg, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, path := range o.upstreamCA {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("run: --upstream-ca: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("run: --upstream-ca %s: no PEM certificate in it", path)
		}
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// liveLine is what the terminal shows for a flow as it completes.
func liveLine(f *flow.Flow, newDest bool) string {
	reported := detect.Reported(f)
	if len(reported) == 0 && !newDest {
		return ""
	}
	var who []string
	if f.Dest.Owner != "" {
		who = append(who, f.Dest.Owner)
	}
	if f.Dest.Category != "" {
		who = append(who, f.Dest.Category)
	}
	line := fmt.Sprintf("%s %-15s %s", f.Start.Format("15:04:05"), f.DeviceName(), f.HostOrAddr())
	if len(who) > 0 {
		line += " (" + strings.Join(who, ", ") + ")"
	}
	if f.Transport == flow.TransportHTTP && len(reported) > 0 {
		line += " CLEARTEXT"
	}
	if len(reported) > 0 {
		var kinds []string
		seen := map[string]bool{}
		for _, x := range reported {
			label := string(x.Kind)
			if x.Kind == "sender_app" {
				label += "=" + x.Value
			}
			if !seen[label] {
				seen[label] = true
				kinds = append(kinds, label)
			}
		}
		sort.SliceStable(kinds, func(i, j int) bool {
			return strings.HasPrefix(kinds[i], "sender_app") && !strings.HasPrefix(kinds[j], "sender_app")
		})
		line += "  " + strings.Join(kinds, ", ")
	}
	if f.Notes.Has(flow.NoteCertRefused) {
		line += "  [not trusted / pinned: " + f.HostOrAddr() + "]"
	}
	if v := f.Verdict; v.Action == flow.ActionBlock {
		line += "  STOPPED: " + v.String()
	}
	return line
}

func runProxy(ctx context.Context, o runOpts, stdout, stderr io.Writer) error {
	engine, err := newEngine(o.detect, stderr)
	if err != nil {
		return err
	}
	if _, err := dnsproxy.ParseBlockMode(o.dnsBlockMode); err != nil {
		return fmt.Errorf("run: --dns-block-mode: %w", err)
	}
	if o.wireguard != "" {
		if _, err := wireguard.ListenPort(o.wireguard); err != nil {
			return fmt.Errorf("run: --wireguard: %w", err)
		}
	}
	if o.redactFallback != "block" && o.redactFallback != "forward" {
		return fmt.Errorf("run: --redact-fallback %q: write block (the default) or forward", o.redactFallback)
	}
	if o.blockStatus < 200 || o.blockStatus > 599 {
		return fmt.Errorf("run: --block-status %d: write an HTTP status such as 403 or 451", o.blockStatus)
	}
	var known *trackers.KB
	if len(o.block) > 0 || len(o.presets) > 0 || o.policyFile != "" || len(o.redact) > 0 || len(o.fake) > 0 || o.ui != "off" {
		if known, err = trackerKB(o.detect.trackers); err != nil {
			return err
		}
	}
	pol, err := runPolicy(o, known)
	if err != nil {
		return err
	}
	if pol != nil {
		eng := pol.(*policy.Engine)
		fmt.Fprintf(stderr, "blocking: %d rules in force\n", len(eng.Rules()))
		for _, w := range eng.Warnings() {
			fmt.Fprintln(stderr, "warning:", w)
		}
	}
	var allow []netip.Prefix
	for _, a := range o.allow {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("run: --allow %q: write a network as 192.168.1.0/24: %w", a, err)
		}
		allow = append(allow, p)
	}
	up, err := upstreamTLS(o)
	if err != nil {
		return err
	}
	if o.caDir == "" {
		if o.caDir, err = certs.DefaultDir(); err != nil {
			return err
		}
	}
	ca, created, err := certs.LoadOrCreate(o.caDir, certs.Options{})
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stderr, "created a certificate authority: install %s on the device\n", ca.CertPath())
	}
	minter, err := certs.NewMinter(ca, 0, certs.Options{})
	if err != nil {
		return err
	}
	if o.db = dbOrEnv(o.db); o.db == "" {
		if o.db, err = defaultDB(); err != nil {
			return err
		}
	}
	name := o.session
	if name == "" {
		name = "run " + time.Now().Format("2006-01-02 15:04:05")
		if o.sensor != "" { // sensors sharing a database start runs at the same second
			name += " on " + o.sensor
		}
	}
	st, sess, err := openSession(ctx, o.db, name, "proxy "+o.listen, o.sensor, o.maxBody)
	if err != nil {
		return err
	}
	defer st.Close()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("run: listen on %s: %w (is another proxy running? choose another port with --listen)", o.listen, err)
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
		fmt.Fprintf(stderr, "warning: listening on %s: every device that can reach it can use this proxy", ln.Addr())
		if len(allow) == 0 {
			fmt.Fprint(stderr, " (limit it with --allow)")
		}
		fmt.Fprintln(stderr)
	}
	fmt.Fprintf(stderr, "phonehome proxy listening on %s; session %q in %s\nCA certificate: %s (SHA-256 %s)\n",
		ln.Addr(), name, st.Where(), ca.CertPath(), ca.Fingerprint())

	// Every source hands its flows to the pipeline, which decides before
	// forwarding and analyses, stores and shows them behind a queue bounded
	// in bytes: capture never waits for analysis.
	broker := live.New(live.Options{})
	summary := report.NewSummary()
	pl := pipeline.New(pipeline.Options{Engine: engine, Summary: summary, Store: st.Writer(context.Background(), sess),
		Live: broker, Queue: true, RetryStore: true, Source: "proxy", StoreAdvice: storeAdvice,
		FlushEvery: 500 * time.Millisecond, // a crash loses at most the last half second
		Policy:     pol})
	// What is started is closed, last first, through the same Close whether
	// the run ends or a later part fails to start.
	var parts stack
	plDone := make(chan error, 1)
	go func() { plDone <- pl.Run(context.Background()) }()
	termDone := make(chan struct{})
	go func() {
		defer close(termDone)
		showLive(broker.Subscribe("terminal", 4096, nil), stdout, stderr)
	}()
	parts.push(func() {
		if err := pl.Close(); err != nil {
			fmt.Fprintln(stderr, "phonehome:", err)
		}
		<-plDone
		broker.Close()
		<-termDone
	})
	fail := func(err error) error {
		ln.Close()
		parts.close()
		return err
	}
	var reload policySetter = pl
	own := newOwnServices() // what no device may reach through the proxy
	var uiWG *uiPeers       // the UI's view of the WireGuard peers, told the server's port once it listens
	if o.ui != "off" {
		uiPolicy := web.NewPolicy(pol, engineOptions(o, known), pl.SetPolicy)
		if uiWG, err = newUIPeers(o); err != nil {
			return fail(err)
		}
		stopUI, err := startUI(ctx, o, st, sess, ca, web.Options{Live: broker, Policy: uiPolicy, ProxyAddr: proxyAddrFor(ln.Addr()), WireGuard: uiWG.wireGuard()}, own, stderr)
		if err != nil {
			return fail(err)
		}
		parts.push(stopUI)
		reload = uiPolicy // a reloaded file keeps the UI's switches in front
	}
	if o.policyFile != "" {
		parts.push(reloadOnHangup(o, known, reload, stderr))
	}
	if o.debugListen != "" {
		stopDebug, err := serveDebug(o.debugListen, own, stderr)
		if err != nil {
			return fail(err)
		}
		parts.push(stopDebug)
	}
	var resolver *dnsproxy.Server
	popts := proxy.Options{Minter: minter, Upstream: up, MaxBody: o.maxBody, MaxMediaBody: o.maxMediaBody, Handler: pl, Allow: allow,
		HeaderTimeout: o.timeouts.header, HandshakeTimeout: o.timeouts.handshake, IdleTimeout: o.timeouts.idle,
		TunnelIdleTimeout: o.timeouts.tunnel, DialTimer: o.timeouts.dial, ResponseHeaderTimeout: o.timeouts.response,
		Ignore: o.ignore, Intercept: o.intercept, Own: own.has, Name: func(a netip.Addr) string {
			if resolver != nil {
				return resolver.Name(a)
			}
			return ""
		}}
	p := proxy.New(popts)
	var dnsPort int
	if o.dns != "" || o.lan.target != "" || o.wireguard != "" {
		if resolver, err = startResolver(o, pl, stderr); err != nil {
			return fail(err)
		}
		dnsPort = listenPortUDP(resolver.Addr())
		parts.push(runPart(ctx, resolver.Run, resolver.Close, "DNS resolver", stderr))
	}
	if o.lan.target != "" {
		in, err := startSpoofMode(o, p, dnsPort, pl.Done, stderr)
		if err != nil {
			return fail(err)
		}
		parts.push(runPart(ctx, in.Run, func() error {
			err := in.Close()
			if err == nil {
				fmt.Fprintln(stderr, "network restored: ARP caches healed, nftables rules removed, sysctls back")
			}
			return err
		}, "restoring the network", stderr))
	}
	if o.wireguard != "" {
		stop, err := startWireGuard(ctx, o, popts, resolver, uiWG, stdout, stderr)
		if err != nil {
			return fail(err)
		}
		parts.push(stop)
	}
	serveErr := p.Serve(ctx, ln)
	parts.close()
	stats := pl.Stats()
	if stats.Flows == 0 && !o.keepEmpty {
		if err := st.DeleteSession(context.Background(), sess); err != nil {
			fmt.Fprintln(stderr, "phonehome:", err)
		}
		fmt.Fprintf(stderr, "nothing was captured, so no session was kept (--keep-empty keeps it): is the device's proxy set to %s, and does it trust the CA?\n", ln.Addr())
		if serveErr != nil {
			return fmt.Errorf("run: %w", serveErr)
		}
		return pl.Err()
	}
	fmt.Fprintln(stdout)
	if err := summary.WriteText(stdout); err != nil {
		return err
	}
	if stats.Shed > 0 {
		fmt.Fprintf(stderr, "analysis fell behind: %d flows were stored with part of their bodies not kept or analysed (%s); each says so in a note, and every request head was analysed\n",
			stats.Shed, report.Bytes(stats.ShedBytes))
	}
	if stats.Lost > 0 {
		fmt.Fprintf(stderr, "%d flows could not be stored\n", stats.Lost)
	}
	fmt.Fprintf(stderr, "session %q stored in %s (%d flows)\n", name, st.Where(), stats.Stored)
	if serveErr != nil {
		return fmt.Errorf("run: %w", serveErr)
	}
	return pl.Err()
}

// engineOptions are the policy engine's options from the flags, the same for
// the rules of the flags and files and for the web UI's switches.
func engineOptions(o runOpts, known *trackers.KB) policy.Options {
	fallback := flow.ActionBlock
	if o.redactFallback == "forward" {
		fallback = flow.ActionAllow
	}
	return policy.Options{Known: known, Status: o.blockStatus, RedactFallback: fallback}
}

// runPolicy builds the rules the flags ask for, in the order they apply:
// the policy file, --block, --redact, --fake, the presets. Nil when there are none: everything
// is allowed, and nothing waits for a decision.
func runPolicy(o runOpts, known *trackers.KB) (policy.Policy, error) {
	var rules []policy.Rule
	if o.policyFile != "" {
		b, err := os.ReadFile(o.policyFile)
		if err != nil {
			return nil, fmt.Errorf("run: --policy: %w", err)
		}
		rs, err := policy.ParseFile(o.policyFile, b, nil)
		if err != nil {
			return nil, fmt.Errorf("run: --policy: %w", err)
		}
		rules = append(rules, rs...)
	}
	for _, p := range o.block {
		r, err := policy.ParseRule(flow.ActionBlock, p, nil)
		if err != nil {
			return nil, fmt.Errorf("run: --block: %w", err)
		}
		rules = append(rules, r)
	}
	for _, k := range []struct {
		kinds []string
		fake  bool
		flag  string
	}{{o.redact, false, "--redact"}, {o.fake, true, "--fake"}} {
		if len(k.kinds) == 0 {
			continue
		}
		r, err := policy.RedactRule(k.kinds, k.fake)
		if err != nil {
			return nil, fmt.Errorf("run: %s: %w", k.flag, err)
		}
		rules = append(rules, r)
	}
	for _, name := range o.presets {
		rs, err := policy.Preset(name)
		if err != nil {
			return nil, fmt.Errorf("run: --preset: %w", err)
		}
		rules = append(rules, rs...)
	}
	if len(rules) == 0 {
		return nil, nil
	}
	return policy.NewEngine(rules, engineOptions(o, known)), nil
}

// trackerKB is the tracker knowledge owner: and category: rules read: the
// built-in one and the lists of --trackers.
func trackerKB(paths []string) (*trackers.KB, error) {
	kb := trackers.Builtin()
	for _, p := range paths {
		fh, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("run: --trackers: %w", err)
		}
		_, err = kb.Load(fh, filepath.Base(p))
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("run: --trackers %s: %w", p, err)
		}
	}
	return kb, nil
}

// policySetter puts a policy in force: the pipeline, or the web UI's
// switches in front of it.
type policySetter interface{ SetPolicy(policy.Policy) }

// reloadOnHangup reads the policy file again on SIGHUP and puts it in force;
// a file that is refused leaves the rules in force as they were. The
// function returned stops listening.
func reloadOnHangup(o runOpts, known *trackers.KB, pl policySetter, stderr io.Writer) func() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-hup:
				pol, err := runPolicy(o, known)
				if err != nil {
					fmt.Fprintf(stderr, "phonehome: policy not reloaded, the rules in force stay: %v\n", err)
					continue
				}
				pl.SetPolicy(pol)
				n := 0
				var warnings []string
				if pol != nil {
					eng := pol.(*policy.Engine)
					n, warnings = len(eng.Rules()), eng.Warnings()
				}
				fmt.Fprintf(stderr, "phonehome: policy reloaded from %s: %d rules in force\n", o.policyFile, n)
				for _, w := range warnings {
					fmt.Fprintln(stderr, "warning:", w)
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(stop)
		<-done
	}
}

// showLive prints a line per new destination or finding, and the notices,
// until the subscription ends.
func showLive(sub *live.Subscription, stdout, stderr io.Writer) {
	seen := map[string]bool{}
	for ev := range sub.C() {
		switch ev.Kind {
		case live.EventFlow:
			host := ev.Flow.HostOrAddr()
			if ev.Flow.Verdict.Action == flow.ActionBlock {
				// the first block of each host is shown even when nothing
				// was found in it: the user asked for it to stop
				host = "blocked " + host
			}
			if line := liveLine(ev.Flow, !seen[host]); line != "" {
				fmt.Fprintln(stdout, line)
			}
			seen[host] = true
		case live.EventNotice:
			fmt.Fprintf(stderr, "%s phonehome: %s\n", ev.Time.Format("15:04:05"), ev.Text)
		}
	}
	if err := sub.Err(); err != nil {
		fmt.Fprintln(stderr, "phonehome: live lines stopped (the terminal could not keep up); capture and storage go on:", err)
	}
}

// storeAdvice says what to do when the store fails (the store's own message
// names the file and the fix for the causes it knows).
func storeAdvice(err error) string {
	switch {
	case errors.Is(err, store.ErrFull), errors.Is(err, store.ErrReadOnly), errors.Is(err, store.ErrLocked), errors.Is(err, store.ErrUnavailable):
		return "do as the message says; nothing needs restarting"
	}
	return "check the database file and the disk it is on, or restart with --db naming another file"
}

// serveDebug serves Go's profiles on addr (loopback only: they show memory).
func serveDebug(addr string, own *ownServices, stderr io.Writer) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("run: --debug-listen %s: %w", addr, err)
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("run: --debug-listen %s: give a loopback address such as 127.0.0.1:6060 (profiles show what is in memory)", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	own.add(ln.Addr())
	fmt.Fprintf(stderr, "profiles on http://%s/debug/pprof/\n", ln.Addr())
	return func() { srv.Close() }, nil
}

// startResolver opens the recording DNS resolver (--dns, or for --spoof).
func startResolver(o runOpts, h capture.Handler, stderr io.Writer) (*dnsproxy.Server, error) {
	upstream := o.dnsUpstream
	if upstream == "" {
		var err error
		if upstream, err = dnsproxy.SystemUpstream(); err != nil {
			return nil, err
		}
	} else if _, _, err := net.SplitHostPort(upstream); err != nil {
		upstream = net.JoinHostPort(upstream, "53")
	}
	addr := o.dns
	if addr == "" {
		addr = ":0"
	}
	mode, err := dnsproxy.ParseBlockMode(o.dnsBlockMode)
	if err != nil {
		return nil, fmt.Errorf("run: --dns-block-mode: %w", err)
	}
	s, err := dnsproxy.Listen(addr, dnsproxy.Options{Upstream: upstream, Handler: h, BlockDoH: o.blockDoH, BlockMode: mode})
	if err != nil {
		return nil, fmt.Errorf("run: --dns %s: %w", addr, err)
	}
	fmt.Fprintf(stderr, "DNS resolver on %s, forwarding to %s\n", s.Addr(), upstream)
	return s, nil
}

// stack is what a run started, closed last first.
type stack []func()

func (s *stack) push(f func()) { *s = append(*s, f) }

// close closes everything, once.
func (s *stack) close() {
	for i := len(*s) - 1; i >= 0; i-- {
		(*s)[i]()
	}
	*s = nil
}

// runPart runs a part until it is closed (or ctx ends) and returns its
// Close, which also waits for Run to return.
func runPart(ctx context.Context, run func(context.Context) error, closeFn func() error, what string, stderr io.Writer) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := run(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintf(stderr, "phonehome: %s: %v\n", what, err)
		}
	}()
	return func() {
		cancel()
		<-done
		if err := closeFn(); err != nil {
			fmt.Fprintf(stderr, "phonehome: %s: %v\n", what, err)
		}
	}
}

func listenPortUDP(a net.Addr) int {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return int(ap.Port())
	}
	return 0
}

// ownServices are phonehome's own listening services on this machine (the
// web UI, the debug listener): the proxy refuses to connect a device to
// them, by any address of this machine.
type ownServices struct {
	mu    sync.Mutex
	ports map[uint16]bool
	local map[netip.Addr]bool // this machine's interface addresses
}

func newOwnServices() *ownServices {
	o := &ownServices{ports: map[uint16]bool{}, local: map[netip.Addr]bool{}}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if pf, err := netip.ParsePrefix(a.String()); err == nil {
				o.local[pf.Addr().Unmap()] = true
			}
		}
	}
	return o
}

// add records a service's listening address (its port, on this machine).
func (o *ownServices) add(a net.Addr) {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		o.mu.Lock()
		o.ports[ap.Port()] = true
		o.mu.Unlock()
	}
}

// has reports whether ap reaches one of the services: their port on
// loopback, an unspecified address, or an address of this machine.
func (o *ownServices) has(ap netip.AddrPort) bool {
	a := ap.Addr().Unmap()
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ports[ap.Port()] && (a.IsLoopback() || a.IsUnspecified() || o.local[a])
}
