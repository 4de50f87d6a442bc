//go:build unix

package main

import (
	"encoding/json"
	"io"
	"net/http"
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
	var base string
	uiRE := regexp.MustCompile(`web UI on (http://127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(10 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := uiRE.FindStringSubmatch(rp.stderr.String()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		t.Fatalf("no web UI: %s", rp.stderr.String())
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
	port := regexp.MustCompile(`WireGuard on UDP port (\d+)`).FindStringSubmatch(rp.stderr.String())
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
