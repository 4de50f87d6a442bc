//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"phonehome/internal/capture/wireguard"
	"phonehome/internal/capture/wireguard/wgtest"
	"phonehome/internal/flow"
	"phonehome/internal/store"
)

// addPeerConf runs phonehome wireguard add in config and returns the
// configuration it printed, as a phone would import it.
func addPeerConf(t testing.TB, bin, config, name string) string {
	t.Helper()
	cmd := exec.Command(bin, "wireguard", "add", name, "--endpoint", audIP+":51820", "--conf")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+config)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wireguard add: %v %s", err, out)
	}
	return string(out)
}

// TestRunWireGuard: phonehome run --wireguard on the auditor's machine, a
// phone that joined with the configuration phonehome wireguard add printed;
// what the phone sends is recorded from its tunnel address.
func TestRunWireGuard(t *testing.T) {
	wgtest.Skip(t)
	l := newLAN(t)
	bin := buildPhonehome(t)
	dir := t.TempDir()
	serverCA, cert := testCA(t, dir, "server.test")
	udp443 := l.servers(cert)
	config := filepath.Join(dir, "config")
	conf := addPeerConf(t, bin, config, "pixel")
	db := filepath.Join(dir, "wg.db")
	// a rule for this peer alone, by its name
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte("- action: block\n  host: blocked.test\n  device: pixel\n- action: block\n  host: other.test\n  device: tablet\n"), 0o644)
	p := l.start(bin, config, "WireGuard on UDP port 51820", "run", "--wireguard", "--listen", "127.0.0.1:0", "--policy", pol,
		"--db", db, "--session", "wg", "--upstream-ca", serverCA, "--dns-upstream", srvIP+":53")
	defer func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
		}
	}()
	client := wgtest.Up(t, l.ns["phone"], wgtest.Name("r"), conf)
	phoneCA := filepath.Join(config, "phonehome", "ca.pem")
	curl := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", l.ns["phone"], "curl", "-sS", "--max-time", "10"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := curl("http://" + srvIP + "/track?android_id=3b6f1e0a9c2d4f81"); err != nil || !strings.Contains(out, `"ok":true`) {
		t.Fatalf("HTTP through the tunnel: %v %s\n%s\n%s", err, out, p.log(), client.Log())
	}
	if out, err := curl("--cacert", phoneCA, "--resolve", "server.test:443:"+srvIP, "https://server.test/v1/collect",
		"-H", "Content-Type: application/json", "-d", `{"gaid":"d8f1c2a4-7b3e-4e59-9a0c-5e2f6b1d7c90"}`); err != nil || !strings.Contains(out, `"ok":true`) {
		t.Fatalf("HTTPS through the tunnel with phonehome's CA: %v %s\n%s", err, out, p.log())
	}
	if out := l.in("phone", "dig", "+short", "+time=3", "@"+wireguard.Server4.String(), "tracker.test", "A"); strings.TrimSpace(out) != srvIP {
		t.Errorf("DNS to the tunnel's resolver: %q", out)
	}
	if out, _ := curl("-w", " %{http_code}", "-H", "Host: blocked.test", "http://"+srvIP+"/"); !strings.HasSuffix(out, " 403") {
		t.Errorf("a device:pixel rule must block the peer's request: %q", out)
	}
	if out := l.in("phone", "dig", "+short", "+time=3", "@"+wireguard.Server4.String(), "blocked.test", "A"); strings.TrimSpace(out) != "0.0.0.0" {
		t.Errorf("a device:pixel rule must block the peer's lookup: %q", out)
	}
	if out, err := curl("-H", "Host: other.test", "http://"+srvIP+"/"); err != nil || !strings.Contains(out, `"ok":true`) {
		t.Errorf("another device's rule must not block this peer: %v %q", err, out)
	}
	sendQUIC(t, l)
	time.Sleep(300 * time.Millisecond)
	if *udp443 != 0 {
		t.Errorf("%d QUIC datagrams reached the server: UDP 443 must be dropped", *udp443)
	}
	client.Stop()
	p.stop(t, os.Interrupt)

	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, err := st.SessionByName(context.Background(), "wg")
	if err != nil {
		t.Fatalf("%v\n%s", err, p.log())
	}
	seen := map[string]bool{}
	var all []string
	st.Flows(context.Background(), sess, func(f *flow.Flow) error {
		all = append(all, fmt.Sprintf("%s %s %s %v", f.Transport, f.Client, f.HostOrAddr(), f.Notes))
		if f.Client.Addr.String() != "10.77.0.2" {
			t.Errorf("flow from %s, not the phone's tunnel address: %s", f.Client.Addr, f.HostOrAddr())
		}
		for _, x := range f.Findings {
			seen[f.Transport.String()+" "+string(x.Kind)] = true
		}
		switch {
		case f.Transport == flow.TransportDNS && f.DNS.Name == "tracker.test":
			seen["dns"] = true
		case f.Transport == flow.TransportQUIC && f.Notes.Has(flow.NoteQUICDropped):
			seen["quic"] = true
		}
		return nil
	})
	for _, want := range []string{"http android_id", "https advertising_id", "dns", "quic"} {
		if !seen[want] {
			t.Errorf("the session lacks %q (has %v); flows:\n%s\n%s", want, seen, strings.Join(all, "\n"), p.log())
		}
	}
}

// BenchmarkWireGuardThroughput measures, in one run, a 20 MB HTTPS download
// from the server to the phone: directly; through a plain wireguard-go ↔
// wireguard-go tunnel to the auditor, forwarded by its kernel (the
// reference); and through phonehome run --wireguard, decrypted, analysed
// and stored. The goal: at least 50% of the same download through a tunnel
// without phonehome (the reference); direct is shown beside.
func BenchmarkWireGuardThroughput(b *testing.B) {
	wgtest.Skip(b)
	l := newLAN(b)
	bin := buildPhonehome(b)
	dir := b.TempDir()
	serverCA, cert := testCA(b, dir, "server.test")
	const size = 20 << 20
	var tl net.Listener
	l.inNS("srv", func() {
		var err error
		if tl, err = net.Listen("tcp4", srvIP+":443"); err != nil {
			b.Fatal(err)
		}
	})
	chunk := make([]byte, 1<<20)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := 0; i < size/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})}
	go srv.Serve(tls.NewListener(tl, &tls.Config{Certificates: []tls.Certificate{cert}}))
	defer srv.Close()
	download := func(ca string) float64 {
		out, err := exec.Command("ip", "netns", "exec", l.ns["phone"], "curl", "-sS", "--cacert", ca, "--resolve", "server.test:443:"+srvIP,
			"-o", "/dev/null", "-w", "%{speed_download}", "https://server.test/big.bin").CombinedOutput()
		if err != nil {
			b.Fatalf("download: %v %s", err, out)
		}
		var bps float64
		fmt.Sscan(string(out), &bps)
		return bps
	}
	best := func(ca string) float64 { return max(download(ca), download(ca), download(ca)) }

	// the reference: the auditor is a plain WireGuard server that forwards
	l.sysctl("aud", "net/ipv4/ip_forward", "1")
	l.in("gw", "ip", "route", "add", "10.88.0.0/24", "via", audIP)
	srvKey, _ := wireguard.NewKey(rand.Reader)
	phoneKey, _ := wireguard.NewKey(rand.Reader)
	wgtest.Up(b, l.ns["aud"], wgtest.Name("s"), fmt.Sprintf("[Interface]\nPrivateKey = %s\nListenPort = 51821\nAddress = 10.88.0.1/24\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.88.0.2/32\n",
		srvKey, phoneKey.Public()))
	for b.Loop() {
		direct := best(serverCA)
		ref := wgtest.Up(b, l.ns["phone"], wgtest.Name("p"), fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = 10.88.0.2/32\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 0.0.0.0/0, ::/0\nEndpoint = %s:51821\n",
			phoneKey, srvKey.Public(), audIP))
		reference := best(serverCA)
		ref.Stop()

		config := filepath.Join(b.TempDir(), "config")
		conf := addPeerConf(b, bin, config, "bench")
		p := l.start(bin, config, "WireGuard on UDP port 51820", "run", "--wireguard", "--listen", "127.0.0.1:0",
			"--db", filepath.Join(b.TempDir(), "b.db"), "--upstream-ca", serverCA, "--dns-upstream", srvIP+":53")
		c := wgtest.Up(b, l.ns["phone"], wgtest.Name("b"), conf)
		phonehome := best(filepath.Join(config, "phonehome", "ca.pem"))
		c.Stop()
		p.stop(b, os.Interrupt)

		b.ReportMetric(direct/(1<<20), "direct-MiB/s")
		b.ReportMetric(reference/(1<<20), "wireguard-go-MiB/s")
		b.ReportMetric(phonehome/(1<<20), "phonehome-MiB/s")
		b.ReportMetric(100*phonehome/direct, "%direct")
		b.ReportMetric(100*phonehome/reference, "%wireguard-go")
	}
}
