//go:build linux

package wireguard

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"phonehome/internal/capture"
	"phonehome/internal/capture/dnsproxy"
	"phonehome/internal/capture/proxy"
	"phonehome/internal/capture/wireguard/wgtest"
	"phonehome/internal/flow"
	"phonehome/internal/nstest"
)

// The network of the end-to-end test, made of namespaces:
//
//	phone1 10.99.1.2 ── 10.99.1.1 ┐
//	                              gate (phonehome) 10.99.2.1 ── server 10.99.2.2, fd99:2::2
//	phone2 10.99.3.2 ── 10.99.3.1 ┘
//
// Each phone runs a real wireguard-go configured by wg setconf, with its
// default routes (IPv4 and IPv6) into the tunnel. phonehome's server runs
// in the gate's namespace: the test binary runs itself again there, so that
// every socket it opens (WireGuard's, the upstream dials, the interface
// list) is the gate's. The server's sockets are opened in its namespace.
const (
	gateEnv  = "PHONEHOME_WG_GATE" // set in the run inside the gate: the namespaces' prefix
	srvIP    = "10.99.2.2"
	srvIP6   = "fd99:2::2"
	gateUpIP = "10.99.2.1"
)

type netns struct {
	t      testing.TB
	prefix string
}

func (n netns) name(role string) string { return n.prefix + "-" + role }

func (n netns) run(args ...string) string {
	n.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (n netns) in(role string, args ...string) string {
	n.t.Helper()
	return n.run(append([]string{"ip", "netns", "exec", n.name(role)}, args...)...)
}

// enter runs fn on a thread in a role's namespace: sockets it opens stay there.
func (n netns) enter(role string, fn func()) {
	n.t.Helper()
	nstest.Enter(n.t, n.name(role), fn)
}

// makeNet creates the namespaces and links, removed when the test ends.
func makeNet(t testing.TB) netns {
	n := netns{t: t, prefix: fmt.Sprintf("phwg%d", os.Getpid()%100000)}
	for _, role := range []string{"phone1", "phone2", "gate", "srv"} {
		n.run("ip", "netns", "add", n.name(role))
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n.name(role)).Run() })
		n.in(role, "ip", "link", "set", "lo", "up")
	}
	link := func(id, a, aIP, b, bIP string) {
		ea, eb := n.prefix+id+"a", n.prefix+id+"b"
		n.run("ip", "link", "add", ea, "type", "veth", "peer", "name", eb)
		n.run("ip", "link", "set", ea, "netns", n.name(a))
		n.run("ip", "link", "set", eb, "netns", n.name(b))
		for _, e := range []struct{ role, dev, ip string }{{a, ea, aIP}, {b, eb, bIP}} {
			n.in(e.role, "ip", "addr", "add", e.ip, "dev", e.dev)
			n.in(e.role, "ip", "link", "set", e.dev, "up")
		}
	}
	link("p", "phone1", "10.99.1.2/24", "gate", "10.99.1.1/24")
	link("q", "phone2", "10.99.3.2/24", "gate", "10.99.3.1/24")
	link("s", "srv", srvIP+"/24", "gate", gateUpIP+"/24")
	srvDev := n.prefix + "sa"
	n.in("srv", "ip", "-6", "addr", "add", srvIP6+"/64", "dev", srvDev, "nodad")
	n.in("gate", "ip", "-6", "addr", "add", "fd99:2::1/64", "dev", n.prefix+"sb", "nodad")
	n.in("srv", "ip", "route", "add", "default", "via", gateUpIP)
	n.in("srv", "ip", "-6", "route", "add", "default", "via", "fd99:2::1")
	return n
}

// TestTunnelEndToEnd: two phones join, each by its own peer configuration,
// and everything they send ends in phonehome under their names.
func TestTunnelEndToEnd(t *testing.T) {
	if os.Getenv(gateEnv) != "" {
		insideGate(t, netns{t: t, prefix: os.Getenv(gateEnv)})
		return
	}
	wgtest.Skip(t)
	for _, tool := range []string{"curl", "dig"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: curl, bind9-dnsutils)", tool)
		}
	}
	n := makeNet(t)
	// the same test, run again inside the gate's namespace
	args := []string{"netns", "exec", n.name("gate"), os.Args[0], "-test.run", "^TestTunnelEndToEnd$", "-test.v", "-test.count", "1"}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), gateEnv+"="+n.prefix)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestTunnelEndToEnd") {
		t.Fatalf("inside the gate: %v\n%s", err, out)
	}
	t.Logf("inside the gate:\n%s", out)
}

// gate is phonehome's side of the test: the server, its resolver and what
// it recorded.
type gate struct {
	n        netns
	dir      string
	caPath   string // phonehome's CA, as the phones trust it
	srv      *Server
	mu       sync.Mutex
	flows    []*flow.Flow
	udp443   atomic.Int64 // QUIC datagrams that reached the server
	closeAll func()
}

func (g *gate) got() []*flow.Flow {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*flow.Flow(nil), g.flows...)
}

// find waits up to 5 s for a flow that matches.
func (g *gate) find(match func(*flow.Flow) bool) *flow.Flow {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, f := range g.got() {
			if match(f) {
				return f
			}
		}
	}
	return nil
}

func (g *gate) dump() string {
	var b strings.Builder
	for _, f := range g.got() {
		fmt.Fprintf(&b, "%s %q %s→%s %s %v\n", f.Transport, f.Device, f.Client, f.Server, f.HostOrAddr(), f.Notes)
	}
	return b.String()
}

// serverCA is the server's own CA (another phonehome CA serves as one) and
// what its certificates are minted by.
func serverCA(t testing.TB, dir string) (*x509.CertPool, func(*tls.ClientHelloInfo) (*tls.Certificate, error)) {
	ca, m := newMinter(t, dir)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool, m.GetCertificate("server.test")
}

const (
	bigSize = 20 << 20
	bigTXT  = 20 // records in a TXT answer
)

// upstream starts, in the server's namespace, HTTP on 80 and HTTPS on 443
// (IPv4 and IPv6), DNS on 53 (every name is the server), a UDP 443 socket
// that counts what reaches it and a UDP echo on 7.
func (g *gate) upstream(cert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) {
	t := g.n.t
	var lns []net.Listener
	var dnsPC, quicPC, echoPC net.PacketConn
	var dnsLn, rawLn net.Listener // rawLn: a TCP echo that speaks neither TLS nor HTTP
	g.n.enter("srv", func() {
		// plain HTTP first, then TLS (on 443 and on a port of its own)
		for _, a := range []string{srvIP + ":80", "[" + srvIP6 + "]:80", srvIP + ":443", "[" + srvIP6 + "]:443", srvIP + ":8443"} {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				t.Fatal(err)
			}
			lns = append(lns, ln)
		}
		var err error
		if rawLn, err = net.Listen("tcp", srvIP+":7"); err != nil {
			t.Fatal(err)
		}
		if dnsPC, err = net.ListenPacket("udp", srvIP+":53"); err != nil {
			t.Fatal(err)
		}
		if dnsLn, err = net.Listen("tcp", srvIP+":53"); err != nil {
			t.Fatal(err)
		}
		if quicPC, err = net.ListenPacket("udp", srvIP+":443"); err != nil {
			t.Fatal(err)
		}
		if echoPC, err = net.ListenPacket("udp", srvIP+":7"); err != nil {
			t.Fatal(err)
		}
	})
	chunk := make([]byte, 1<<20)
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(bigSize))
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := 0; i < bigSize/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, `{"ok":true,"path":%q}`, r.URL.Path)
	})
	hs := &http.Server{Handler: mux}
	for i, ln := range lns {
		if i >= 2 {
			ln = tls.NewListener(ln, &tls.Config{GetCertificate: cert})
		}
		go hs.Serve(ln)
	}
	go func() {
		for {
			c, err := rawLn.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	answer := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 60}
		switch q.Qtype {
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(srvIP)})
		case dns.TypeAAAA:
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP(srvIP6)})
		case dns.TypeTXT: // too big for a UDP answer of 512 bytes
			for i := 0; i < bigTXT; i++ {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{fmt.Sprintf("%03d %s", i, strings.Repeat("x", 200))}})
			}
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			m.Truncate(udpSize(r)) // as a real server does: the rest over TCP
		}
		w.WriteMsg(m)
	})
	ds := &dns.Server{PacketConn: dnsPC, Handler: answer}
	dts := &dns.Server{Listener: dnsLn, Handler: answer}
	go ds.ActivateAndServe()
	go dts.ActivateAndServe()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := quicPC.ReadFrom(buf); err != nil {
				return
			}
			g.udp443.Add(1)
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echoPC.ReadFrom(buf)
			if err != nil {
				return
			}
			echoPC.WriteTo(buf[:n], from)
		}
	}()
	prev := g.closeAll
	g.closeAll = func() {
		hs.Close()
		rawLn.Close()
		ds.Shutdown()
		dts.Shutdown()
		quicPC.Close()
		echoPC.Close()
		if prev != nil {
			prev()
		}
	}
}

// startServer runs phonehome's WireGuard server with its proxy and resolver.
func (g *gate) startServer(roots *x509.CertPool) {
	t := g.n.t
	ca, minter := newMinter(t, filepath.Join(g.dir, "ca"))
	g.caPath = ca.CertPath()
	h := capture.Observer(func(f *flow.Flow) { g.mu.Lock(); g.flows = append(g.flows, f); g.mu.Unlock() })
	resolver := dnsproxy.New(dnsproxy.Options{Upstream: srvIP + ":53", Handler: h})
	var err error
	g.srv, err = New(Options{Listen: ":0", Dir: filepath.Join(g.dir, "wireguard"), DNS: resolver, ReloadEvery: 100 * time.Millisecond,
		Proxy: proxy.Options{Minter: minter, Upstream: &tls.Config{RootCAs: roots}, Handler: h, Name: resolver.Name}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.srv.Run(ctx) }()
	prev := g.closeAll
	g.closeAll = func() {
		cancel()
		<-done
		g.srv.Close()
		if prev != nil {
			prev()
		}
	}
}

// join adds a peer, and brings its configuration up in a phone's namespace
// as a user's phone would.
func (g *gate) join(role, name string) *wgtest.Client {
	t := g.n.t
	peer, priv, err := AddPeer(filepath.Join(g.dir, "wireguard"), name, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	gateIP := map[string]string{"phone1": "10.99.1.1", "phone2": "10.99.3.1"}[role]
	conf := ClientConfig{PrivateKey: priv, Peer: peer, ServerKey: g.srv.PublicKey(),
		Endpoint: net.JoinHostPort(gateIP, strconv.Itoa(int(g.srv.Port())))}.String()
	return wgtest.Up(t, g.n.name(role), wgtest.Name(role[len(role)-1:]), conf)
}

func (g *gate) curl(role string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", g.n.name(role), "curl", "-sS", "--max-time", "20"}, args...)...).CombinedOutput()
	return string(out), err
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// fdList names what the open descriptors are, for a failure message.
func fdList() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		to, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fmt.Fprintf(&b, "%s → %s\n", e.Name(), to)
	}
	return b.String()
}

// insideGate is the test proper, run in the gate's namespace.
func insideGate(t *testing.T, n netns) {
	n.t = t
	// the runtime's network poller opens its descriptors on first use: count after
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	goroutines, fds := runtime.NumGoroutine(), openFDs()
	g := &gate{n: n, dir: t.TempDir()}
	roots, cert := serverCA(t, filepath.Join(g.dir, "server-ca"))
	g.upstream(cert)
	g.startServer(roots)
	defer func() {
		if g.closeAll != nil {
			g.closeAll()
		}
	}()
	pixel := g.join("phone1", "pixel")

	// HTTP, to an address, over IPv4 and IPv6
	if out, err := g.curl("phone1", "http://"+srvIP+"/track?gaid=38400000-8cf0-11bd-b23e-10b96e40000d"); err != nil || !strings.Contains(out, `"ok":true`) {
		t.Fatalf("HTTP through the tunnel: %v %s\nwireguard-go: %s", err, out, pixel.Log())
	}
	if f := g.find(func(f *flow.Flow) bool {
		return f.Transport == flow.TransportHTTP && f.Request != nil && strings.Contains(f.Request.URL, "gaid=")
	}); f == nil || f.Device != "pixel" || f.Server.Addr.String() != srvIP {
		t.Errorf("HTTP flow recorded under the peer's name, to the original destination: %+v\n%s", f, g.dump())
	}
	if out, err := g.curl("phone1", "-6", "http://["+srvIP6+"]/v6"); err != nil || !strings.Contains(out, `"path":"/v6"`) {
		t.Fatalf("HTTP over IPv6 through the tunnel: %v %s", err, out)
	}
	if f := g.find(func(f *flow.Flow) bool { return f.Request != nil && strings.HasSuffix(f.Request.URL, "/v6") }); f == nil || f.Device != "pixel" || !f.Client.Addr.Is6() {
		t.Errorf("IPv6 flow: %+v\n%s", f, g.dump())
	}
	// where this machine has no route, the phone is refused at once (its
	// apps fall back to another address) rather than left hanging
	start := time.Now()
	_, err := g.curl("phone1", "--max-time", "5", "http://[2001:db8::1]/")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 || time.Since(start) > 3*time.Second {
		t.Errorf("a destination this machine cannot reach: curl %v after %s, want refused at once (exit 7)", err, time.Since(start))
	}
	// HTTPS with phonehome's CA trusted on the phone, IPv4 and IPv6
	for _, at := range []string{srvIP, "[" + srvIP6 + "]"} {
		if out, err := g.curl("phone1", "--cacert", g.caPath, "--resolve", "server.test:443:"+at, "https://server.test/collect",
			"-H", "Content-Type: application/json", "-d", `{"imei":"356938035643809"}`); err != nil || !strings.Contains(out, `"path":"/collect"`) {
			t.Fatalf("HTTPS to %s through the tunnel: %v %s", at, err, out)
		}
	}
	if f := g.find(func(f *flow.Flow) bool { return f.Transport == flow.TransportHTTPS && f.Host == "server.test" }); f == nil || f.Device != "pixel" || f.Request == nil || !strings.Contains(string(f.Request.Body.Data), "356938035643809") {
		t.Errorf("HTTPS flow decrypted under the peer's name: %+v\n%s", f, g.dump())
	}
	// DNS to the resolver inside the tunnel, over IPv4 and IPv6
	for _, server := range []string{Server4.String(), Server6.String()} {
		out := n.in("phone1", "dig", "+short", "+time=3", "+tries=2", "@"+server, "tracker.test", "A")
		if strings.TrimSpace(out) != srvIP {
			t.Fatalf("dig @%s: %q, want the upstream's answer %s", server, out, srvIP)
		}
	}
	// an answer too big for UDP is cut (TC), and asked again over TCP
	out := n.in("phone1", "dig", "+noedns", "+short", "+time=3", "+tries=2", "@"+Server4.String(), "big.test", "TXT")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != bigTXT {
		t.Errorf("a big answer through the tunnel's resolver (over TCP after a cut UDP one): %d records, want %d\n%s\n%s", len(lines), bigTXT, out, n.in("phone1", "dig", "+noedns", "@"+Server4.String(), "big.test", "TXT"))
	}
	if f := g.find(func(f *flow.Flow) bool { return f.Transport == flow.TransportDNS && f.DNS.Name == "tracker.test" }); f == nil || f.Device != "pixel" {
		t.Errorf("DNS lookup recorded under the peer's name: %+v\n%s", f, g.dump())
	}
	// QUIC is dropped (apps fall back to TCP) and who tried is recorded
	nstest.SendUDP(t, n.name("phone1"), srvIP+":443", nstest.QUICInitials(t))
	if f := g.find(func(f *flow.Flow) bool { return f.Transport == flow.TransportQUIC }); f == nil || f.Device != "pixel" || !f.Notes.Has(flow.NoteQUICDropped) || f.Host == "" {
		t.Errorf("QUIC attempt recorded with its server name: %+v\n%s", f, g.dump())
	}
	if got := g.udp443.Load(); got != 0 {
		t.Errorf("%d QUIC datagrams reached the server: UDP 443 must be dropped", got)
	}
	// TLS is recognised by its first bytes on any port; other TCP is relayed raw and recorded
	if out, err := g.curl("phone1", "--cacert", g.caPath, "--resolve", "server.test:8443:"+srvIP, "https://server.test:8443/odd-port"); err != nil || !strings.Contains(out, `"path":"/odd-port"`) {
		t.Errorf("HTTPS on port 8443 through the tunnel: %v %s", err, out)
	}
	if f := g.find(func(f *flow.Flow) bool { return f.Request != nil && strings.HasSuffix(f.Request.URL, "/odd-port") }); f == nil || f.Transport != flow.TransportHTTPS || f.Device != "pixel" {
		t.Errorf("HTTPS on another port decrypted: %+v", f)
	}
	n.enter("phone1", func() {
		c, err := net.Dial("tcp4", srvIP+":7")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("EHLO phone\r\n"))
		buf := make([]byte, 64)
		if k, err := io.ReadAtLeast(c, buf, 12); err != nil || string(buf[:k]) != "EHLO phone\r\n" {
			t.Errorf("raw TCP relayed: %q %v", buf[:k], err)
		}
	})
	if f := g.find(func(f *flow.Flow) bool { return f.Transport == flow.TransportTCP && f.Server.Port == 7 }); f == nil || f.Device != "pixel" || !f.Notes.Has(flow.NoteTunnel) || f.BytesUp != 12 || f.BytesDown != 12 {
		t.Errorf("raw TCP recorded with its bytes under the peer's name: %+v\n%s", f, g.dump())
	}
	// other UDP is relayed
	n.enter("phone1", func() {
		c, err := net.Dial("udp4", srvIP+":7")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("echo me"))
		buf := make([]byte, 64)
		if k, err := c.Read(buf); err != nil || string(buf[:k]) != "echo me" {
			t.Errorf("UDP relayed to the server and back: %q %v", buf[:k], err)
		}
	})
	// phonehome's own host is out of reach: a service on the gate itself
	own, err := net.Listen("tcp", gateUpIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(own, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "host service") }))
	if out, err := g.curl("phone1", "--max-time", "5", "http://"+own.Addr().String()+"/"); err == nil {
		t.Errorf("a peer reached phonehome's own host: %s", out)
	}
	own.Close()
	// a 20 MB download, decrypted and recorded on the way
	out, err = g.curl("phone1", "--cacert", g.caPath, "--resolve", "server.test:443:"+srvIP, "-o", "/dev/null", "-w", "%{size_download}", "https://server.test/big")
	if err != nil || strings.TrimSpace(out) != strconv.Itoa(bigSize) {
		t.Fatalf("20 MB download: %v %s", err, out)
	}
	if f := g.find(func(f *flow.Flow) bool { return f.Request != nil && strings.HasSuffix(f.Request.URL, "/big") }); f == nil || f.BytesDown < bigSize {
		t.Errorf("download flow: %+v", f)
	}

	// a second phone at once, under its own name; then its peer is removed
	tablet := g.join("phone2", "tablet")
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, role := range []string{"phone1", "phone2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := g.curl(role, "http://"+srvIP+"/both/"+role); err != nil {
				errs <- fmt.Errorf("%s: %v %s", role, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for role, name := range map[string]string{"phone1": "pixel", "phone2": "tablet"} {
		if f := g.find(func(f *flow.Flow) bool { return f.Request != nil && strings.HasSuffix(f.Request.URL, "/both/"+role) }); f == nil || f.Device != name {
			t.Errorf("%s's flow under %q: %+v\n%s", role, name, f, g.dump())
		}
	}
	if err := RemovePeer(filepath.Join(g.dir, "wireguard"), "tablet"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); len(g.srv.Peers()) != 1 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := g.curl("phone2", "--max-time", "3", "http://"+srvIP+"/after-removal"); err == nil {
		t.Errorf("a removed peer still gets through: %s", out)
	}
	if out, err := g.curl("phone1", "http://"+srvIP+"/still"); err != nil {
		t.Errorf("the remaining peer lost its tunnel when another was removed: %v %s", err, out)
	}

	// everything is released once the peers leave and the server closes
	pixel.Stop()
	tablet.Stop()
	g.closeAll()
	g.closeAll = nil
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	var nowG, nowFD int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if nowG, nowFD = runtime.NumGoroutine(), openFDs(); nowG <= goroutines && nowFD <= fds {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Errorf("after the server closed: %d goroutines (at start %d), %d descriptors (at start %d)\n%s\n%s",
		nowG, goroutines, nowFD, fds, fdList(), buf[:runtime.Stack(buf, true)])
}
