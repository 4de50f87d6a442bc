//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"phonehome/internal/flow"
	"phonehome/internal/nstest"
	"phonehome/internal/store"
)

// The LAN of the first seed, made of network namespaces: a phone, its
// router, the auditor's laptop on one bridge, and a server behind the router.
//
//	phone 10.77.1.23 ─┐
//	auditor 10.77.1.10 ├─ bridge ─ gateway 10.77.1.1 │ 10.77.2.1 ─ server 10.77.2.2
//
// phonehome runs in the auditor; curl runs in the phone; the server (HTTP,
// HTTPS, DNS, a UDP 443 socket) runs in this test process, its sockets opened
// inside the server's namespace.

const (
	phone6  = "fd77:1::23"
	gw6     = "fd77:1::1"
	srv6    = "fd77:2::2"
	phoneIP = "10.77.1.23"
	gwIP    = "10.77.1.1"
	audIP   = "10.77.1.10"
	srvIP   = "10.77.2.2"
)

type lan struct {
	t      testing.TB
	prefix string
	ns     map[string]string // role → namespace name
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, ARP spoofing and nftables (CI runs as root)")
	}
	for _, tool := range []string{"ip", "nft", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: iproute2, nftables, curl)", tool)
		}
	}
}

func (l *lan) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// in runs a command in a role's namespace.
func (l *lan) in(role string, args ...string) string {
	l.t.Helper()
	return l.run(append([]string{"ip", "netns", "exec", l.ns[role]}, args...)...)
}

func newLAN(t testing.TB) *lan {
	needRoot(t)
	l := &lan{t: t, prefix: fmt.Sprintf("ph%d", os.Getpid()%10000), ns: map[string]string{}}
	for _, role := range []string{"sw", "phone", "gw", "aud", "srv"} {
		l.ns[role] = l.prefix + "-" + role
		l.run("ip", "netns", "add", l.ns[role])
	}
	t.Cleanup(func() {
		for _, n := range l.ns {
			exec.Command("ip", "netns", "del", n).Run()
		}
	})
	l.in("sw", "ip", "link", "add", "br0", "type", "bridge")
	l.in("sw", "ip", "link", "set", "br0", "up")
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		l.sysctl("sw", "net/bridge/bridge-nf-call-iptables", "0")
	}
	for role, ip := range map[string]string{"phone": phoneIP, "gw": gwIP, "aud": audIP} {
		host, port := l.prefix+role[:1]+"h", l.prefix+role[:1]+"s"
		l.run("ip", "link", "add", host, "type", "veth", "peer", "name", port)
		l.run("ip", "link", "set", host, "netns", l.ns[role])
		l.run("ip", "link", "set", port, "netns", l.ns["sw"])
		l.in(role, "ip", "link", "set", host, "name", "eth0")
		l.in(role, "ip", "addr", "add", ip+"/24", "dev", "eth0")
		l.in(role, "ip", "link", "set", "eth0", "up")
		l.in(role, "ip", "link", "set", "lo", "up")
		l.in("sw", "ip", "link", "set", port, "master", "br0")
		l.in("sw", "ip", "link", "set", port, "up")
	}
	l.run("ip", "link", "add", l.prefix+"gw1", "type", "veth", "peer", "name", l.prefix+"sv0")
	l.run("ip", "link", "set", l.prefix+"gw1", "netns", l.ns["gw"])
	l.run("ip", "link", "set", l.prefix+"sv0", "netns", l.ns["srv"])
	l.in("gw", "ip", "link", "set", l.prefix+"gw1", "name", "eth1")
	l.in("gw", "ip", "addr", "add", "10.77.2.1/24", "dev", "eth1")
	l.in("gw", "ip", "link", "set", "eth1", "up")
	l.sysctl("gw", "net/ipv4/ip_forward", "1")
	l.in("srv", "ip", "link", "set", l.prefix+"sv0", "name", "eth0")
	l.in("srv", "ip", "addr", "add", srvIP+"/24", "dev", "eth0")
	l.in("srv", "ip", "link", "set", "eth0", "up")
	l.in("srv", "ip", "link", "set", "lo", "up")
	l.in("srv", "ip", "route", "add", "default", "via", "10.77.2.1")
	l.in("phone", "ip", "route", "add", "default", "via", gwIP)
	l.in("aud", "ip", "route", "add", "default", "via", gwIP)
	// IPv6 beside IPv4, as on most home networks
	for role, ip := range map[string]string{"phone": phone6, "gw": gw6, "aud": "fd77:1::10"} {
		l.in(role, "ip", "-6", "addr", "add", ip+"/64", "dev", "eth0", "nodad")
	}
	l.in("gw", "ip", "-6", "addr", "add", "fd77:2::1/64", "dev", "eth1", "nodad")
	l.sysctl("gw", "net/ipv6/conf/all/forwarding", "1")
	l.in("srv", "ip", "-6", "addr", "add", srv6+"/64", "dev", "eth0", "nodad")
	l.in("srv", "ip", "-6", "route", "add", "default", "via", "fd77:2::1")
	l.in("phone", "ip", "-6", "route", "add", "default", "via", gw6)
	l.in("aud", "ip", "-6", "route", "add", "default", "via", gw6)
	time.Sleep(200 * time.Millisecond) // link-local addresses come up
	// the phone must know the gateway before a spoof can replace it (arp_accept=0)
	l.poke("phone", srvIP)
	l.poke("phone", srv6)
	l.poke("aud", phoneIP)
	time.Sleep(300 * time.Millisecond)
	return l
}

// poke sends one UDP datagram from a role to ip (discard port): enough for
// the kernel to resolve the next hop and use its ARP entry.
func (l *lan) poke(role, ip string) {
	l.inNS(role, func() {
		if c, err := net.Dial("udp", net.JoinHostPort(ip, "9")); err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	})
}

// sysctl sets a kernel parameter in a role's namespace (no procps needed).
func (l *lan) sysctl(role, name, value string) {
	l.in(role, "sh", "-c", "echo "+value+" > /proc/sys/"+name)
}

// inNS runs fn with this goroutine's thread in a role's namespace: sockets
// it opens stay there.
func (l *lan) inNS(role string, fn func()) {
	l.t.Helper()
	nstest.Enter(l.t, l.ns[role], fn)
}

func (l *lan) mac(role, dev string) string {
	out := l.in(role, "cat", "/sys/class/net/"+dev+"/address")
	return strings.TrimSpace(out)
}

// gatewayMAC is what the phone's ARP cache says the gateway is.
func (l *lan) gatewayMAC() string {
	out, err := exec.Command("ip", "netns", "exec", l.ns["phone"], "ip", "neigh", "show", gwIP).CombinedOutput()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// waitMAC waits until the phone believes the gateway is at want.
func (l *lan) waitMAC(want string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if l.gatewayMAC() == want {
			return true
		}
		l.poke("phone", srvIP) // traffic makes the phone use (and confirm) its entry
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// testCA makes a CA and a server certificate for names and srvIP.
func testCA(t testing.TB, dir string, names ...string) (caPath string, cert tls.Certificate) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "phonehome test server CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	caPath = filepath.Join(dir, "server-ca.pem")
	os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	lkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		IPAddresses: []net.IP{net.ParseIP(srvIP)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	lder, err := x509.CreateCertificate(rand.Reader, leaf, ca, &lkey.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return caPath, tls.Certificate{Certificate: [][]byte{lder}, PrivateKey: lkey}
}

// servers starts, in the server's namespace, HTTP on 80, HTTPS on 443, DNS
// on 53 and a UDP socket on 443 that counts what reaches it.
func (l *lan) servers(cert tls.Certificate) (udp443 *int64) {
	var count int64
	var mu sync.Mutex
	var hl, tl net.Listener
	var dl, ul net.PacketConn
	l.inNS("srv", func() {
		var err error
		if hl, err = net.Listen("tcp4", srvIP+":80"); err != nil {
			l.t.Fatal(err)
		}
		if tl, err = net.Listen("tcp4", srvIP+":443"); err != nil {
			l.t.Fatal(err)
		}
		if dl, err = net.ListenPacket("udp4", srvIP+":53"); err != nil {
			l.t.Fatal(err)
		}
		if ul, err = net.ListenPacket("udp4", srvIP+":443"); err != nil {
			l.t.Fatal(err)
		}
	})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, `{"ok":true,"path":%q}`, r.URL.Path)
	})
	hs := &http.Server{Handler: h}
	ts := &http.Server{Handler: h}
	go hs.Serve(hl)
	go ts.Serve(tls.NewListener(tl, &tls.Config{Certificates: []tls.Certificate{cert}}))
	ds := &dns.Server{PacketConn: dl, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(srvIP)})
		w.WriteMsg(m)
	})}
	go ds.ActivateAndServe()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := ul.ReadFrom(buf); err != nil {
				return
			}
			mu.Lock()
			count++
			mu.Unlock()
		}
	}()
	l.t.Cleanup(func() { hs.Close(); ts.Close(); ds.Shutdown(); ul.Close() })
	return &count
}

// phonehomeProc is phonehome running in the auditor's namespace.
type phonehomeProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
	stderr *strings.Builder
	mu     *sync.Mutex
	lines  chan string
}

func (l *lan) start(bin, config string, wait string, args ...string) *phonehomeProc {
	l.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns["aud"], bin}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+config, "NO_COLOR=1")
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = io.Discard
	p := &phonehomeProc{cmd: cmd, exited: make(chan struct{}), stderr: &strings.Builder{}, mu: &sync.Mutex{}, lines: make(chan string, 100)}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() { cmd.Wait(); pw.Close(); close(p.exited) }()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line := <-p.lines:
			if strings.Contains(line, wait) {
				return p
			}
		case <-deadline:
			cmd.Process.Kill()
			l.t.Fatalf("phonehome did not start (waiting for %q):\n%s", wait, p.log())
		}
	}
}

func (p *phonehomeProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// stop sends sig and waits for phonehome to exit.
func (p *phonehomeProc) stop(t testing.TB, sig os.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("phonehome did not stop:\n%s", p.log())
	}
	time.Sleep(300 * time.Millisecond) // the pipe drains
}

func buildPhonehome(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "phonehome")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// auditorState is what phonehome must leave as it found it.
func (l *lan) auditorState() string {
	var b strings.Builder
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/send_redirects", "net/ipv4/conf/default/send_redirects", "net/ipv4/conf/eth0/send_redirects", "net/ipv6/conf/all/forwarding"} {
		b.WriteString(k + "=" + strings.TrimSpace(l.in("aud", "cat", "/proc/sys/"+k)) + "\n")
	}
	b.WriteString(l.in("aud", "nft", "list", "ruleset"))
	return b.String()
}

func TestSpoofLAN(t *testing.T) {
	l := newLAN(t)
	bin := buildPhonehome(t)
	dir := t.TempDir()
	serverCA, cert := testCA(t, dir, "server.test", "pinned.test")
	udp443 := l.servers(cert)
	realMAC, audMAC := l.mac("gw", "eth0"), l.mac("aud", "eth0")
	if got := l.gatewayMAC(); got != realMAC {
		t.Fatalf("before: the phone has %q for the gateway, want %s", got, realMAC)
	}
	before := l.auditorState()
	config := filepath.Join(dir, "config")
	db := filepath.Join(dir, "lan.db")
	p := l.start(bin, config, "transparent proxy on", "run", "--spoof", phoneIP, "--gateway", gwIP, "--listen", "127.0.0.1:0",
		"--db", db, "--session", "lan", "--upstream-ca", serverCA, "--dns-upstream", srvIP+":53")
	defer func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
		}
	}()
	if !l.waitMAC(audMAC, 5*time.Second) {
		t.Fatalf("the phone still has %s for the gateway, want the auditor's %s:\n%s", l.gatewayMAC(), audMAC, p.log())
	}
	phoneCA := filepath.Join(config, "phonehome", "ca.pem")
	curl := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", l.ns["phone"], "curl", "-sS", "--max-time", "10"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := curl("http://" + srvIP + "/track?android_id=3b6f1e0a9c2d4f81&event=open"); err != nil || !strings.Contains(out, `"ok":true`) {
		t.Fatalf("cleartext through the auditor: %v %s\n%s", err, out, p.log())
	}
	if out, err := curl("--cacert", phoneCA, "--resolve", "server.test:443:"+srvIP, "https://server.test/v1/collect",
		"-H", "Content-Type: application/json", "-d", `{"gaid":"d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90","model":"Pixel 7"}`); err != nil || !strings.Contains(out, `"ok":true`) {
		t.Fatalf("HTTPS with phonehome's CA: %v %s\n%s", err, out, p.log())
	}
	// a client that does not trust phonehome fails cleanly; after its second
	// refusal the host is passed through for it
	for i := 0; i < 2; i++ {
		if out, err := curl("--cacert", serverCA, "--resolve", "pinned.test:443:"+srvIP, "https://pinned.test/"); err == nil {
			t.Fatalf("a client without phonehome's CA must refuse it: %s", out)
		}
	}
	if out, err := curl("--cacert", serverCA, "--resolve", "pinned.test:443:"+srvIP, "https://pinned.test/again"); err != nil || !strings.Contains(out, `"ok":true`) {
		t.Fatalf("the refused host must pass through untouched next time: %v %s\n%s", err, out, p.log())
	}
	// the phone's DNS goes to phonehome's resolver, which asks the real one
	var answer *dns.Msg
	l.inNS("phone", func() {
		c, err := net.Dial("udp4", gwIP+":53")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m := new(dns.Msg)
		m.SetQuestion("tracker.test.", dns.TypeA)
		dc := &dns.Client{Timeout: 5 * time.Second}
		answer, _, err = dc.ExchangeWithConn(m, &dns.Conn{Conn: c})
		if err != nil {
			t.Fatalf("DNS from the phone: %v\n%s", err, p.log())
		}
	})
	if len(answer.Answer) != 1 {
		t.Fatalf("DNS answer: %v", answer)
	}
	// QUIC is dropped, and who tried it is recorded
	sent := sendQUIC(t, l)
	time.Sleep(500 * time.Millisecond)
	if *udp443 != 0 {
		t.Errorf("%d of %d QUIC datagrams reached the server: UDP 443 must be dropped", *udp443, sent)
	}
	p.stop(t, os.Interrupt)
	if !l.waitMAC(realMAC, 5*time.Second) {
		t.Errorf("5 s after phonehome stopped, the phone still has %s for the gateway (real: %s)", l.gatewayMAC(), realMAC)
	}
	if after := l.auditorState(); after != before {
		t.Errorf("the auditor's kernel state changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !strings.Contains(p.log(), "network restored") {
		t.Errorf("no word of restoring the network:\n%s", p.log())
	}
	checkRecorded(t, db)
}

// sendQUIC sends the Initial packets of a real Chromium QUIC handshake from
// the phone to the server's UDP 443.
func sendQUIC(t testing.TB, l *lan) int {
	payloads := nstest.QUICInitials(t)
	nstest.SendUDP(t, l.ns["phone"], srvIP+":443", payloads)
	return len(payloads)
}

// checkRecorded reads the session back: the phone's requests with their data.
func checkRecorded(t testing.TB, db string) {
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, err := st.SessionByName(context.Background(), "lan")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var all []string
	err = st.Flows(context.Background(), sess, func(f *flow.Flow) error {
		all = append(all, fmt.Sprintf("%s %s %s ↑%d ↓%d %v", f.Transport, f.Client, f.HostOrAddr(), f.BytesUp, f.BytesDown, f.Notes))
		if f.Client.Addr.String() != phoneIP && f.Transport != flow.TransportTLS {
			t.Errorf("flow from %s, not the phone: %s", f.Client.Addr, f.HostOrAddr())
		}
		for _, x := range f.Findings {
			seen[f.Transport.String()+" "+string(x.Kind)] = true
		}
		switch {
		case f.Transport == flow.TransportDNS && f.DNS.Name == "tracker.test" && len(f.DNS.Answers) == 1:
			seen["dns"] = true
		case f.Transport == flow.TransportQUIC && f.TLS.SNI == "quic.phonehome.test":
			seen["quic"] = true
		case f.Transport == flow.TransportTLS && f.Host == "pinned.test" && f.Notes.Has(flow.NoteCertRefused):
			seen["refused"] = true
		case f.Transport == flow.TransportTLS && f.Host == "pinned.test" && f.BytesDown > 0:
			seen["passthrough"] = true
		case f.Transport == flow.TransportHTTPS && f.Host == "server.test" && f.Server.Addr.String() == srvIP:
			seen["https"] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"http android_id", "https advertising_id", "https", "dns", "quic", "refused", "passthrough"} {
		if !seen[want] {
			t.Errorf("the session lacks %q (has %v); flows:\n%s", want, seen, strings.Join(all, "\n"))
		}
	}
}

// After kill -9 the kernel changes and the spoof stay; the next start finds
// the record, heals the caches and undoes the rules before anything else.
func TestSpoofRecoversAfterKill(t *testing.T) {
	l := newLAN(t)
	bin := buildPhonehome(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "config")
	realMAC, audMAC := l.mac("gw", "eth0"), l.mac("aud", "eth0")
	before := l.auditorState()
	p := l.start(bin, config, "transparent proxy on", "run", "--spoof", phoneIP, "--gateway", gwIP, "--listen", "127.0.0.1:0",
		"--db", filepath.Join(dir, "k.db"), "--dns-upstream", srvIP+":53")
	if !l.waitMAC(audMAC, 5*time.Second) {
		t.Fatalf("not spoofed:\n%s", p.log())
	}
	p.stop(t, os.Kill)
	if !strings.Contains(l.auditorState(), "table inet phonehome") {
		t.Fatal("after kill -9 the rules are still there: this test needs them to be")
	}
	// the next start: phonehome spoof, stopped at once with SIGTERM
	q := l.start(bin, config, "passes through this machine", "spoof", "--target", phoneIP, "--gateway", gwIP)
	if !strings.Contains(q.log(), "restored after an earlier run that did not finish") {
		t.Errorf("the next start must say what it restored:\n%s", q.log())
	}
	q.stop(t, syscall.SIGTERM)
	if !l.waitMAC(realMAC, 5*time.Second) {
		t.Errorf("5 s after the next run stopped, the phone still has %s for the gateway (real: %s)", l.gatewayMAC(), realMAC)
	}
	if after := l.auditorState(); after != before {
		t.Errorf("kernel state not restored:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Stat(filepath.Join(config, "phonehome", "state", "netstate.json")); !os.IsNotExist(err) {
		t.Errorf("the state file must be gone: %v", err)
	}
}

// dsniff's arpspoof is the reference: phonehome must leave the phone's cache
// in the same state it does (the gateway at the auditor's address), and both
// must heal it.
func TestSpoofMatchesArpspoof(t *testing.T) {
	arpspoof, err := exec.LookPath("arpspoof")
	if err != nil {
		t.Skip("dsniff's arpspoof is not installed (Debian: dsniff): it is the reference this test compares with")
	}
	l := newLAN(t)
	bin := buildPhonehome(t)
	realMAC, audMAC := l.mac("gw", "eth0"), l.mac("aud", "eth0")
	ref := exec.Command("ip", "netns", "exec", l.ns["aud"], arpspoof, "-i", "eth0", "-t", phoneIP, gwIP)
	if err := ref.Start(); err != nil {
		t.Fatal(err)
	}
	withRef := l.waitMAC(audMAC, 5*time.Second)
	refGot := l.gatewayMAC()
	ref.Process.Signal(os.Interrupt) // arpspoof re-announces the real address on exit
	ref.Wait()
	if !withRef {
		t.Fatalf("arpspoof did not poison the phone's cache (it has %s): the set-up is wrong, not phonehome", refGot)
	}
	if !l.waitMAC(realMAC, 15*time.Second) {
		t.Fatalf("the cache did not heal after arpspoof: %s", l.gatewayMAC())
	}
	p := l.start(bin, filepath.Join(t.TempDir(), "config"), "passes through this machine", "spoof", "--target", phoneIP, "--gateway", gwIP)
	withUs := l.waitMAC(audMAC, 5*time.Second)
	got := l.gatewayMAC()
	p.stop(t, os.Interrupt)
	if !withUs || got != refGot {
		t.Errorf("the same effect: with arpspoof the phone had %s for the gateway, with phonehome %s", refGot, got)
	}
	if !l.waitMAC(realMAC, 5*time.Second) {
		t.Errorf("phonehome did not heal the cache within 5 s: %s (real %s)\n%s", l.gatewayMAC(), realMAC, p.log())
	}
}

// BenchmarkSpoofThroughput downloads 100 MB over HTTP from the server to the
// phone, in one run: directly through the gateway; with phonehome spoofing
// the phone and the auditor's kernel forwarding port 80 (goal: 80% of
// direct); and with port 80 through the transparent proxy, which reads,
// records and relays it.
// bench/spoof-throughput.sh runs it.
func BenchmarkSpoofThroughput(b *testing.B) {
	l := newLAN(b)
	bin := buildPhonehome(b)
	const size = 100 << 20
	var hl net.Listener
	l.inNS("srv", func() {
		var err error
		if hl, err = net.Listen("tcp4", srvIP+":80"); err != nil {
			b.Fatal(err)
		}
	})
	chunk := make([]byte, 1<<20)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := 0; i < size/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})}
	go srv.Serve(hl)
	defer srv.Close()
	download := func() float64 {
		out, err := exec.Command("ip", "netns", "exec", l.ns["phone"], "curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}",
			"http://"+srvIP+"/big.bin").CombinedOutput()
		if err != nil {
			b.Fatalf("download: %v %s", err, out)
		}
		var bps float64
		fmt.Sscan(string(out), &bps)
		return bps
	}
	through := func(ports string) float64 {
		dir := b.TempDir()
		p := l.start(bin, filepath.Join(dir, "config"), "transparent proxy on", "run", "--spoof", phoneIP, "--gateway", gwIP,
			"--listen", "127.0.0.1:0", "--db", filepath.Join(dir, "b.db"), "--dns-upstream", srvIP+":53", "--ports", ports)
		if !l.waitMAC(l.mac("aud", "eth0"), 5*time.Second) {
			b.Fatalf("not spoofed:\n%s", p.log())
		}
		defer p.stop(b, os.Interrupt)
		return max(download(), download())
	}
	for b.Loop() {
		direct := max(download(), download())
		forwarded := through("443")  // port 80 is only forwarded by the auditor's kernel
		intercepted := through("80") // port 80 goes through the transparent proxy
		b.ReportMetric(direct/(1<<20), "direct-MiB/s")
		b.ReportMetric(100*forwarded/direct, "%forwarded")
		b.ReportMetric(100*intercepted/direct, "%intercepted")
	}
}

// gatewayMAC6 is what the phone's neighbour table says the gateway's IPv6
// address is at.
func (l *lan) gatewayMAC6() string {
	out, _ := exec.Command("ip", "netns", "exec", l.ns["phone"], "ip", "-6", "neigh", "show", gw6).CombinedOutput()
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

func (l *lan) waitMAC6(want string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if l.gatewayMAC6() == want {
			return true
		}
		l.poke("phone", srv6)
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// Over IPv6 the phone learns its router from neighbour advertisements:
// phonehome's make it send its traffic through the auditor, and true ones
// send it back on exit.
func TestSpoofLANIPv6(t *testing.T) {
	l := newLAN(t)
	bin := buildPhonehome(t)
	dir := t.TempDir()
	var hl net.Listener
	l.inNS("srv", func() {
		var err error
		if hl, err = net.Listen("tcp6", "["+srv6+"]:80"); err != nil {
			t.Fatal(err)
		}
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"ok":true}`) })}
	go srv.Serve(hl)
	defer srv.Close()
	realMAC, audMAC := l.mac("gw", "eth0"), l.mac("aud", "eth0")
	if !l.waitMAC6(realMAC, 3*time.Second) {
		t.Fatalf("before: the phone has %q for the gateway's IPv6 address, want %s", l.gatewayMAC6(), realMAC)
	}
	before := l.auditorState()
	db := filepath.Join(dir, "v6.db")
	p := l.start(bin, filepath.Join(dir, "config"), "transparent proxy on", "run", "--spoof", phoneIP, "--gateway", gwIP,
		"--listen", "127.0.0.1:0", "--db", db, "--session", "v6", "--dns-upstream", srvIP+":53")
	defer func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
		}
	}()
	if !strings.Contains(p.log(), "over IPv6") {
		t.Fatalf("the phone's IPv6 addresses were not found:\n%s", p.log())
	}
	if !l.waitMAC6(audMAC, 5*time.Second) {
		t.Fatalf("the phone has %s for the gateway's IPv6 address, want the auditor's %s:\n%s", l.gatewayMAC6(), audMAC, p.log())
	}
	out, err := exec.Command("ip", "netns", "exec", l.ns["phone"], "curl", "-sS", "--max-time", "10", "-6",
		"http://["+srv6+"]/v6/track?android_id=3b6f1e0a9c2d4f81").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"ok":true`) {
		t.Fatalf("IPv6 request through the auditor: %v %s\n%s", err, out, p.log())
	}
	p.stop(t, os.Interrupt)
	if !l.waitMAC6(realMAC, 5*time.Second) {
		t.Errorf("5 s after phonehome stopped, the phone still has %s for the gateway's IPv6 address (real %s)", l.gatewayMAC6(), realMAC)
	}
	if after := l.auditorState(); after != before {
		t.Errorf("the auditor's kernel state changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, _ := st.SessionByName(context.Background(), "v6")
	found := false
	st.Flows(context.Background(), sess, func(f *flow.Flow) error {
		if f.Client.Addr.String() == phone6 && f.Request != nil && strings.Contains(f.Request.URL, "/v6/track") {
			for _, x := range f.Findings {
				found = found || x.Kind == "android_id"
			}
		}
		return nil
	})
	if !found {
		t.Error("the phone's IPv6 request was not recorded with its Android ID")
	}
}
