//go:build unix

package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"phonehome/internal/flow"
	"phonehome/internal/store"
)

// runningProxy is phonehome run, in-process, until stop.
type runningProxy struct {
	addr, dnsAddr, caPEM, db string
	stdout, stderr           *syncBuffer
	stop                     func() int
}

func startRun(t *testing.T, args ...string) *runningProxy {
	t.Helper()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	ctx, cancel := context.WithCancel(context.Background())
	rp := &runningProxy{caPEM: filepath.Join(caDir, "ca.pem"), db: filepath.Join(dir, "run.db"), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	done := make(chan int, 1)
	all := append([]string{"run", "--listen", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--db", rp.db, "--session", "blocking", "--ca-dir", caDir}, args...)
	go func() { done <- run(ctx, all, strings.NewReader(""), rp.stdout, rp.stderr) }()
	addrRE := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	dnsRE := regexp.MustCompile(`DNS resolver on (127\.0\.0\.1:\d+)`)
	wantDNS := strings.Contains(strings.Join(args, " "), "--dns ")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addrRE.FindStringSubmatch(rp.stderr.String()); m != nil {
			rp.addr = m[1]
		}
		if m := dnsRE.FindStringSubmatch(rp.stderr.String()); m != nil {
			rp.dnsAddr = m[1]
		}
		if rp.addr != "" && (!wantDNS || rp.dnsAddr != "") {
			break
		}
	}
	stopped := false
	var code int
	rp.stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			code = <-done
		}
		return code
	}
	t.Cleanup(func() { rp.stop() })
	if rp.addr == "" || wantDNS && rp.dnsAddr == "" {
		rp.stop()
		t.Fatalf("the proxy or its resolver did not start: %s", rp.stderr.String())
	}
	return rp
}

// countingUpstream is a server that counts what reaches it, by host.
type countingUpstream struct {
	*httptest.Server
	hits atomic.Int64
}

func newCountingUpstream(tls bool) *countingUpstream {
	u := &countingUpstream{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		fmt.Fprint(w, "upstream answered")
	})
	u.Server = httptest.NewUnstartedServer(h)
	if tls {
		u.StartTLS()
	} else {
		u.Start()
	}
	return u
}

func curl(args ...string) (string, error) {
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestRunBlocks: a blocked host never reaches the server; the client gets
// phonehome's answer naming the rule; other hosts pass.
func TestRunBlocks(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	plain, secure := newCountingUpstream(false), newCountingUpstream(true)
	defer plain.Close()
	defer secure.Close()
	upCA := filepath.Join(t.TempDir(), "upstream.pem")
	os.WriteFile(upCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw}), 0o644)
	rp := startRun(t, "--upstream-ca", upCA, "--block", "localhost", "--block", "path:/track/*", "--block-status", "451")

	_, plainPort, _ := net.SplitHostPort(plain.Listener.Addr().String())
	out, err := curl("-x", "http://"+rp.addr, "-w", "\n%{http_code}", "http://localhost:"+plainPort+"/x")
	if err != nil || !strings.Contains(out, "blocked by phonehome: block (localhost)") || !strings.HasSuffix(out, "451") {
		t.Errorf("blocked host: %v %q", err, out)
	}
	out, err = curl("-x", "http://"+rp.addr, "-w", "\n%{http_code}", "-d", "a=1", "http://127.0.0.1:"+plainPort+"/track/v1")
	if err != nil || !strings.Contains(out, "block (path:/track/*)") {
		t.Errorf("blocked path: %v %q", err, out)
	}
	if n := plain.hits.Load(); n != 0 {
		t.Errorf("the server received %d blocked requests", n)
	}
	out, err = curl("-x", "http://"+rp.addr, "http://127.0.0.1:"+plainPort+"/ok")
	if err != nil || out != "upstream answered" || plain.hits.Load() != 1 {
		t.Errorf("allowed host: %v %q, %d hits", err, out, plain.hits.Load())
	}

	// HTTPS: a blocked name is answered by phonehome too, inside the TLS it
	// intercepts, so the user reads why (nothing is dialled)
	_, securePort, _ := net.SplitHostPort(secure.Listener.Addr().String())
	out, err = curl("-x", "http://"+rp.addr, "--cacert", rp.caPEM, "-w", "\n%{http_code}", "https://localhost:"+securePort+"/")
	if err != nil || !strings.Contains(out, "blocked by phonehome: block (localhost)") || !strings.HasSuffix(out, "451") {
		t.Errorf("blocked TLS host: %v %q", err, out)
	}
	out, err = curl("-x", "http://"+rp.addr, "--cacert", rp.caPEM, "https://127.0.0.1:"+securePort+"/ok")
	if err != nil || out != "upstream answered" {
		t.Errorf("allowed TLS host: %v %q", err, out)
	}
	if n := secure.hits.Load(); n != 1 {
		t.Errorf("the TLS server received %d requests, want the allowed one", n)
	}
	time.Sleep(300 * time.Millisecond)
	if code := rp.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, rp.stderr.String())
	}
	if live := rp.stdout.String(); !strings.Contains(live, "STOPPED: block (localhost)") || !strings.Contains(live, "WHAT WAS STOPPED") {
		t.Errorf("the live line and the summary must say what was stopped:\n%s", live)
	}
	st, err := store.Open(context.Background(), rp.db, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, err := st.SessionByName(context.Background(), "blocking")
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]int{}
	st.Flows(context.Background(), sess, func(f *flow.Flow) error {
		verdicts[f.Verdict.String()+" "+fmt.Sprint(f.Verdict.Status)]++
		return nil
	})
	if verdicts["block (localhost) 451"] != 2 || // the plain request, and the one inside TLS
		verdicts["block (path:/track/*) 451"] != 1 {
		t.Errorf("stored verdicts: %v", verdicts)
	}
}

// TestRunBlocksPassedThroughHost: a blocked host phonehome would not
// decrypt (here --ignore-hosts; the same for a pinning app) cannot be
// answered inside its TLS, so its connection is refused at the hello.
func TestRunBlocksPassedThroughHost(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	secure := newCountingUpstream(true)
	defer secure.Close()
	rp := startRun(t, "--ignore-hosts", "localhost", "--block", "localhost")
	_, port, _ := net.SplitHostPort(secure.Listener.Addr().String())
	if out, err := curl("-x", "http://"+rp.addr, "-k", "https://localhost:"+port+"/"); err == nil {
		t.Errorf("a blocked, passed-through host answered: %q", out)
	}
	if n := secure.hits.Load(); n != 0 {
		t.Errorf("the server received %d requests", n)
	}
	if code := rp.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, rp.stderr.String())
	}
	if live := rp.stdout.String(); !strings.Contains(live, "STOPPED: block (localhost)") {
		t.Errorf("the live line must say what was stopped:\n%s", live)
	}
}

// TestDiffTellsBlockedFromStopped: the opt-out experiment with phonehome's
// own switch. Before, an app sends its IMEI to a host; after, the host is
// blocked and the app still tries: diff says phonehome kept it back, not that
// the app stopped sending it.
func TestDiffTellsBlockedFromStopped(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	plain := newCountingUpstream(false)
	defer plain.Close()
	_, port, _ := net.SplitHostPort(plain.Listener.Addr().String())
	db := filepath.Join(t.TempDir(), "phone.db")
	for _, sess := range []string{"before", "after"} {
		args := []string{"--db", db, "--session", sess}
		if sess == "after" {
			args = append(args, "--block", "localhost")
		}
		rp := startRun(t, args...)
		for range 2 {
			if _, err := curl("-x", "http://"+rp.addr, "http://localhost:"+port+"/ad?imei=356938035643809&ts=1"); err != nil {
				t.Fatal(err)
			}
		}
		if code := rp.stop(); code != 0 {
			t.Fatalf("%s: exit %d: %s", sess, code, rp.stderr.String())
		}
	}
	if n := plain.hits.Load(); n != 2 {
		t.Errorf("the server received %d requests, want the 2 made before the block", n)
	}
	out, errOut, code := phonehome(t, "diff", "--db", db, "before", "after")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	i := strings.Index(out, "STOPPED BY PHONEHOME")
	if i < 0 || !strings.Contains(out[i:], "localhost") || !strings.Contains(out[i:], "imei") || !strings.Contains(out[i:], "2 → 2 tried") ||
		strings.Contains(out, "STILL SENT") || strings.Contains(out, "STOPPED BY THE APP") {
		t.Errorf("diff:\n%s", out)
	}
}

// TestRunBlocksDNS: a blocked name is answered by phonehome's resolver,
// which never asks upstream about it.
func TestRunBlocksDNS(t *testing.T) {
	var asked atomic.Int64
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		asked.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 7)})
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	for _, c := range []struct {
		mode  string
		rcode int
		addr  string
	}{{"null", dns.RcodeSuccess, "0.0.0.0"}, {"nxdomain", dns.RcodeNameError, ""}, {"refused", dns.RcodeRefused, ""}} {
		asked.Store(0)
		rp := startRun(t, "--dns", "127.0.0.1:0", "--dns-upstream", pc.LocalAddr().String(), "--dns-block-mode", c.mode,
			"--block", ".tracker.example", "--preset", "vendor-telemetry")
		for _, name := range []string{"a.tracker.example", "tracking.intl.miui.com"} {
			var got string
			var rcode int
			if path, err := exec.LookPath("dig"); err == nil {
				out, err := exec.Command(path, "+tries=1", "+time=5", "-p", portOf(rp.dnsAddr), "@127.0.0.1", name, "A").CombinedOutput()
				if err != nil {
					t.Fatalf("dig: %v %s", err, out)
				}
				m := regexp.MustCompile(`status: ([A-Z]+)`).FindStringSubmatch(string(out))
				rcode = dns.StringToRcode[m[1]]
				// an answer line has a TTL; the question line above it does not
				if a := regexp.MustCompile(`(?m)^[^;\s]\S*\s+\d+\s+IN\s+A\s+(\S+)`).FindStringSubmatch(string(out)); a != nil {
					got = a[1]
				}
			} else {
				t.Log("dig is not installed: asking with a DNS client library")
				q := new(dns.Msg)
				q.SetQuestion(dns.Fqdn(name), dns.TypeA)
				r, _, err := (&dns.Client{}).Exchange(q, rp.dnsAddr)
				if err != nil {
					t.Fatal(err)
				}
				rcode = r.Rcode
				for _, rr := range r.Answer {
					if a, ok := rr.(*dns.A); ok {
						got = a.A.String()
					}
				}
			}
			if rcode != c.rcode || got != c.addr {
				t.Errorf("%s %s: %s %q", c.mode, name, dns.RcodeToString[rcode], got)
			}
		}
		if n := asked.Load(); n != 0 {
			t.Errorf("%s: upstream asked %d times about blocked names", c.mode, n)
		}
		q := new(dns.Msg)
		q.SetQuestion("allowed.example.", dns.TypeA)
		if r, _, err := (&dns.Client{}).Exchange(q, rp.dnsAddr); err != nil || len(r.Answer) != 1 || asked.Load() != 1 {
			t.Errorf("%s: allowed name: %v %v", c.mode, err, r)
		}
		rp.stop()
	}
}

func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// TestRunPolicyFile: a policy file is refused at start with its line and
// what to write instead; SIGHUP reloads it.
func TestRunPolicyFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("- action: block\n  host: .ok.example\n- action: block\n  kind: imie\n"), 0o644)
	_, errOut, code := phonehome(t, "run", "--policy", bad, "--db", filepath.Join(dir, "x.db"), "--ca-dir", filepath.Join(dir, "ca"))
	if code != 1 || !strings.Contains(errOut, "bad.yaml:4") || !strings.Contains(errOut, "write a kind phonehome reports") {
		t.Errorf("bad policy: %d %s", code, errOut)
	}
	_, errOut, code = phonehome(t, "run", "--preset", "block-all", "--db", filepath.Join(dir, "x.db"))
	if code != 1 || !strings.Contains(errOut, "block-trackers") {
		t.Errorf("bad preset: %d %s", code, errOut)
	}

	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	plain := newCountingUpstream(false)
	defer plain.Close()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte("- action: block\n  host: localhost\n  name: no-localhost\n"), 0o644)
	rp := startRun(t, "--policy", pol)
	url := "http://localhost:" + portOf(plain.Listener.Addr().String()) + "/x"
	if out, _ := curl("-x", "http://"+rp.addr, url); !strings.Contains(out, "block (no-localhost)") {
		t.Fatalf("before reload: %q", out)
	}
	os.WriteFile(pol, []byte("- action: allow\n  host: localhost\n"), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(rp.stderr.String(), "policy reloaded") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if out, err := curl("-x", "http://"+rp.addr, url); err != nil || out != "upstream answered" {
		t.Errorf("after reload: %v %q", err, out)
	}
	os.WriteFile(pol, []byte("- action: block\n  hots: localhost\n"), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(rp.stderr.String(), "not reloaded") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(rp.stderr.String(), "policy.yaml:2") {
		t.Errorf("a refused reload names the line: %s", rp.stderr.String())
	}
	if out, err := curl("-x", "http://"+rp.addr, url); err != nil || out != "upstream answered" {
		t.Errorf("a refused reload keeps the rules in force: %v %q", err, out)
	}
}

// TestRunRedacts: --redact takes the IMEI out of what the server receives
// and leaves the rest of the form; --fake puts a fake of the same shape.
func TestRunRedacts(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	const imei = "356938035643809"
	var got atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		got.Store(r.Form)
		fmt.Fprint(w, "ok")
	}))
	defer up.Close()
	for _, flag := range []string{"--redact", "--fake"} {
		rp := startRun(t, flag, "imei")
		out, err := curl("-x", "http://"+rp.addr, "-d", "imei="+imei+"&v=1", up.URL+"/batch")
		if err != nil || out != "ok" {
			t.Fatalf("%s: %v %q", flag, err, out)
		}
		form, _ := got.Load().(url.Values)
		if form.Get("v") != "1" || strings.Contains(fmt.Sprint(form), imei) {
			t.Errorf("%s: the server received %v", flag, form)
		}
		if fake := form.Get("imei"); (flag == "--fake") != (len(fake) == 15 && fake != imei) {
			t.Errorf("%s: imei=%q", flag, fake)
		}
		rp.stop()
	}
	// a body longer than what is kept cannot be redacted whole: blocked by
	// default, or with --redact-fallback forward sent as it is, with a note
	long := "imei=" + imei + "&pad=" + strings.Repeat("x", 4000)
	for _, fallback := range []string{"block", "forward"} {
		got.Store(url.Values{})
		rp := startRun(t, "--redact", "imei", "--max-body", "1024", "--redact-fallback", fallback)
		out, err := curl("-x", "http://"+rp.addr, "-w", "\n%{http_code}", "-d", long, up.URL+"/batch")
		form, _ := got.Load().(url.Values)
		switch fallback {
		case "block":
			if err != nil || !strings.HasSuffix(out, "403") || form.Get("imei") != "" {
				t.Errorf("block fallback: %v %q, server got imei=%q", err, out, form.Get("imei"))
			}
		case "forward":
			if err != nil || !strings.HasPrefix(out, "ok") || form.Get("imei") != imei {
				t.Errorf("forward fallback: %v %q, server got imei=%q", err, out, form.Get("imei"))
			}
		}
		if code := rp.stop(); code != 0 {
			t.Fatalf("exit %d: %s", code, rp.stderr.String())
		}
	}
}
