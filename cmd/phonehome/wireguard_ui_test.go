//go:build unix

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"phonehome/internal/capture/wireguard"
)

// TestUIAddsWireGuardPeers: with run --wireguard, the web UI's set-up page
// adds a phone: the API answers its configuration and QR code once, the new
// peer is in the server's peers file, and the Devices page lists it.
func TestUIAddsWireGuardPeers(t *testing.T) {
	if _, err := wireguard.LANAddress(); err != nil {
		t.Skipf("this machine has no LAN address to name as the endpoint: %v", err)
	}
	rp := startRun(t, "--wireguard=:0", "--ui", "127.0.0.1:0")
	base := uiBase(t, rp)
	wgRE := regexp.MustCompile(`WireGuard on UDP port (\d+)`)
	for deadline := time.Now().Add(10 * time.Second); !wgRE.MatchString(rp.stderr.String()) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond) // the UI may answer before the server listens
	}
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := call("POST", "/api/wireguard/peers", `{"name":"anna-phone"}`)
	var p struct {
		Name string `json:"name"`
		Conf string `json:"conf"`
		QR   string `json:"qr_png"`
	}
	json.Unmarshal([]byte(body), &p)
	if code != http.StatusCreated || !strings.Contains(p.Conf, "PrivateKey = ") || !strings.Contains(p.Conf, "AllowedIPs = 0.0.0.0/0, ::/0") ||
		!strings.HasPrefix(p.QR, "data:image/png;base64,") {
		t.Fatalf("add a peer: %d %s", code, body)
	}
	port := wgRE.FindStringSubmatch(rp.stderr.String())
	if port == nil || !strings.Contains(p.Conf, ":"+port[1]+"\n") {
		t.Errorf("the endpoint must name the port the server listens on (%v):\n%s", port, p.Conf)
	}
	if code, body := call("POST", "/api/wireguard/peers", `{"name":"anna-phone"}`); code != http.StatusBadRequest {
		t.Errorf("the same name again: %d %s", code, body)
	}
	code, body = call("GET", "/api/wireguard/peers", "")
	if code != http.StatusOK || !strings.Contains(body, `"name":"anna-phone"`) || !strings.Contains(body, `"name":"phone"`) || strings.Contains(body, "PrivateKey") {
		t.Errorf("peers: %d %s", code, body)
	}
	for _, page := range []string{"/devices", "/setup"} {
		if code, body := call("GET", page, ""); code != http.StatusOK || !strings.Contains(body, "anna-phone") {
			t.Errorf("%s does not list the new peer: %d", page, code)
		}
	}
	if code := rp.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, rp.stderr.String())
	}
}

// TestProxyRefusesItsOwnUI: a device using the proxy cannot reach
// phonehome's own web UI through it (an app could otherwise change the
// rules or read what was captured), by any name of this machine; this
// machine's own browser still can.
func TestProxyRefusesItsOwnUI(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	rp := startRun(t, "--ui", "127.0.0.1:0")
	_, port, _ := strings.Cut(uiBase(t, rp), "127.0.0.1:")
	for _, target := range []string{"http://127.0.0.1:" + port + "/api/rules", "http://localhost:" + port + "/api/rules", "http://0.0.0.0:" + port + "/api/rules"} {
		out, _ := curl("-x", "http://"+rp.addr, "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/json", "-d", `{"action":"allow","host":".example.com"}`, target)
		if strings.HasSuffix(out, "201") || !strings.Contains(out, "phonehome's own service") {
			t.Errorf("%s through the proxy: %q", target, out)
		}
		// inside a CONNECT tunnel too
		if out, _ := curl("-x", "http://"+rp.addr, "-p", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/json", "-d", `{"action":"allow","host":".example.org"}`, target); strings.HasSuffix(out, "201") {
			t.Errorf("%s through a CONNECT tunnel: %q", target, out)
		}
	}
	if out, err := curl("http://127.0.0.1:" + port + "/api/rules"); err != nil || strings.Contains(out, "example.com") || strings.Contains(out, "example.org") {
		t.Errorf("a rule got in through the proxy, or the UI does not answer this machine: %v %q", err, out)
	}
	if code := rp.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, rp.stderr.String())
	}
}

// uiBase waits for the web UI of a run and returns its base URL.
func uiBase(t *testing.T, rp *runningProxy) string {
	t.Helper()
	uiRE := regexp.MustCompile(`web UI on (http://127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := uiRE.FindStringSubmatch(rp.stderr.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no web UI: %s", rp.stderr.String())
	return ""
}
