package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"phonehome/internal/capture/proxy"
	"phonehome/internal/capture/wireguard"
)

func TestWireGuardCommands(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	out, errOut, code := phonehome(t, "wireguard", "add", "pixel", "--endpoint", "192.168.1.10:51820", "--conf")
	if code != 0 || !strings.Contains(out, "Endpoint = 192.168.1.10:51820\n") || !strings.Contains(out, "AllowedIPs = 0.0.0.0/0, ::/0\n") ||
		!strings.Contains(errOut, "peer pixel: 10.77.0.2 and fd70:686f:6e65::2") {
		t.Fatalf("add --conf: %d\n%s\n%s", code, out, errOut)
	}
	png := filepath.Join(t.TempDir(), "tablet.png")
	out, errOut, code = phonehome(t, "wireguard", "add", "tablet", "--endpoint", "192.168.1.10:51820", "--png", png)
	if code != 0 || !strings.Contains(out, "█") || !strings.Contains(out, "WireGuard app") {
		t.Fatalf("add with a QR code: %d\n%s\n%s", code, out, errOut)
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Errorf("--png: %v", err)
	}
	key := filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "phonehome", "wireguard", "server.key")
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("server key: %v", err)
	}
	out, _, code = phonehome(t, "wireguard", "list")
	if code != 0 || !strings.Contains(out, "pixel") || !strings.Contains(out, "10.77.0.3") {
		t.Errorf("list: %d %s", code, out)
	}
	if _, errOut, code = phonehome(t, "wireguard", "add", "pixel", "--endpoint", "192.168.1.10:51820"); code != 1 || !strings.Contains(errOut, "remove it first") {
		t.Errorf("a name twice: %d %s", code, errOut)
	}
	if _, errOut, code = phonehome(t, "wireguard", "add", "watch", "--endpoint", "nowhere"); code != 1 || !strings.Contains(errOut, "HOST:PORT") {
		t.Errorf("a bad endpoint: %d %s", code, errOut)
	}
	if _, _, code = phonehome(t, "wireguard", "remove", "pixel"); code != 0 {
		t.Errorf("remove: %d", code)
	}
	out, _, _ = phonehome(t, "wireguard", "list")
	if strings.Contains(out, "pixel") || !strings.Contains(out, "tablet") {
		t.Errorf("list after remove: %s", out)
	}
	if _, errOut, code = phonehome(t, "wireguard", "remove", "pixel"); code != 1 || !strings.Contains(errOut, "no peer named") {
		t.Errorf("remove twice: %d %s", code, errOut)
	}
	for _, sub := range []string{"add", "list", "remove"} {
		if out, _, code := phonehome(t, "wireguard", sub, "--help"); code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("wireguard %s --help: %d", sub, code)
		}
	}
	if _, errOut, code = phonehome(t, "run", "--listen", "127.0.0.1:0", "--ui", "off", "--wireguard=192.168.1.10:51820", "--db", filepath.Join(t.TempDir(), "x.db")); code != 1 || !strings.Contains(errOut, "give only a port") {
		t.Errorf("run --wireguard with a host: %d %s", code, errOut)
	}
}

// run --wireguard with no peer yet makes one, named phone, and shows its QR
// code; the next start finds it and makes none.
func TestRunWireGuardMakesAFirstPeer(t *testing.T) {
	if _, err := wireguard.LANAddress(); err != nil {
		t.Skipf("this machine has no LAN address to name as the endpoint: %v", err)
	}
	o := runOpts{caDir: t.TempDir(), wireguard: ":0"}
	var out, errOut bytes.Buffer
	stop, err := startWireGuard(context.Background(), o, proxy.Options{}, nil, nil, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if !strings.Contains(out.String(), "█") || !strings.Contains(errOut.String(), "peer phone: 10.77.0.2") || !strings.Contains(errOut.String(), "LAN address") {
		t.Errorf("first start:\n%s\n%s", out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if stop, err = startWireGuard(context.Background(), o, proxy.Options{}, nil, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	stop()
	if out.Len() != 0 || !strings.Contains(errOut.String(), "peers: 1") {
		t.Errorf("second start made another peer:\n%s\n%s", out.String(), errOut.String())
	}
}
