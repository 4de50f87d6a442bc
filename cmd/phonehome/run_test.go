package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/store"
)

// syncBuffer is written by the program while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunProxyEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"ok":true}`)
	}))
	up.StartTLS()
	defer up.Close()
	dir := t.TempDir()
	upCA := filepath.Join(dir, "upstream.pem")
	os.WriteFile(upCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o644)
	db := filepath.Join(dir, "run.db")
	caDir := filepath.Join(dir, "ca")

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"run", "--listen", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--db", db, "--session", "live", "--ca-dir", caDir, "--upstream-ca", upCA}, strings.NewReader(""), &stdout, &stderr)
	}()
	addrRE := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		cancel()
		t.Fatalf("the proxy did not start: %s", stderr.String())
	}
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "-x", "http://"+addr, "--cacert", filepath.Join(caDir, "ca.pem"),
		"-d", "android_id=3b6f1e0a9c2d4f81&sender=com.miui.systemAdSolution", up.URL+"/track/v1").CombinedOutput()
	if err != nil || string(out) != `{"ok":true}` {
		t.Fatalf("curl through phonehome run: %v %s", err, out)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	live := stdout.String()
	if !regexp.MustCompile(`\d\d:\d\d:\d\d 127\.0\.0\.1 +127\.0\.0\.1 +sender_app=com\.miui\.systemAdSolution, android_id`).MatchString(live) {
		t.Errorf("live line missing:\n%s", live)
	}
	if !strings.Contains(live, "WHAT WAS SENT") || !strings.Contains(stderr.String(), `session "live" stored`) {
		t.Errorf("summary on exit missing:\n%s\n%s", live, stderr.String())
	}
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, err := st.SessionByName(context.Background(), "live")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	st.Flows(context.Background(), sess, func(f *flow.Flow) error {
		if f.Transport == flow.TransportHTTPS && len(f.Findings) > 0 {
			n++
		}
		return nil
	})
	if n != 1 {
		t.Errorf("%d decrypted flows with findings stored", n)
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	_, errOut, code := phonehome(t, "run", "--allow", "everyone", "--db", filepath.Join(t.TempDir(), "x.db"))
	if code != 1 || !strings.Contains(errOut, "192.168.1.0/24") {
		t.Errorf("bad --allow: %d %s", code, errOut)
	}
}

// TestLiveLineNotes: the live line reads notes by their code. A DoH lookup
// refused with --block-doh is not a host that refused the certificate.
func TestLiveLineNotes(t *testing.T) {
	doh := &flow.Flow{Start: time.Date(2026, 11, 18, 7, 44, 2, 0, time.UTC), Host: "dns.google", Transport: flow.TransportDNS,
		DNS: &flow.DNS{Name: "dns.google", Type: "A", RCode: "NXDOMAIN", Answered: true}}
	doh.Note(flow.NoteDoHRefused, "DNS-over-HTTPS endpoint: refused so the device uses plain DNS (--block-doh)")
	pinned := &flow.Flow{Start: doh.Start, Host: "pinned.example", Transport: flow.TransportTLS, TLS: &flow.TLSInfo{SNI: "pinned.example"}}
	pinned.Note(flow.NoteCertRefused, "client refused phonehome's certificate")
	for _, tc := range []struct {
		f      *flow.Flow
		pinned bool
	}{{doh, false}, {pinned, true}} {
		line := liveLine(tc.f, true)
		if strings.Contains(line, "not trusted / pinned") != tc.pinned {
			t.Errorf("%s: %q", tc.f.Host, line)
		}
	}
}

// TestRunEmpty: a run that captured nothing says so and keeps no session,
// unless asked to.
func TestRunEmpty(t *testing.T) {
	for _, keep := range []bool{false, true} {
		dir := t.TempDir()
		db := filepath.Join(dir, "empty.db")
		args := []string{"run", "--listen", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--db", db, "--session", "nothing", "--ca-dir", filepath.Join(dir, "ca")}
		if keep {
			args = append(args, "--keep-empty")
		}
		ctx, cancel := context.WithCancel(context.Background())
		var stdout, stderr syncBuffer
		done := make(chan int)
		go func() { done <- run(ctx, args, strings.NewReader(""), &stdout, &stderr) }()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), "listening on") && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		said := strings.Contains(stderr.String(), "nothing was captured, so no session was kept")
		st, err := store.Open(context.Background(), db, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.SessionByName(context.Background(), "nothing")
		st.Close()
		if kept := err == nil; kept != keep || said == keep {
			t.Errorf("--keep-empty=%v: session kept %v, said %v: %s", keep, kept, said, stderr.String())
		}
	}
}
