package wireguard

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"image/png"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestServerKeyKeptPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wireguard")
	k, err := ServerKey(dir, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("server key mode %v, want 0600", st.Mode().Perm())
	}
	again, err := ServerKey(dir, rand.Reader)
	if err != nil || again != k {
		t.Errorf("the key made on first use is kept: %v %v", err, again == k)
	}
	os.WriteFile(filepath.Join(dir, ServerKeyFile), []byte("not a key"), 0o600)
	if _, err := ServerKey(dir, rand.Reader); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("a damaged key file: %v, want an error that says what to do", err)
	}
}

// The public key must be the one wg computes, or no phone could connect.
func TestKeyMatchesWG(t *testing.T) {
	if _, err := exec.LookPath("wg"); err != nil {
		t.Skip("needs wg (Debian: wireguard-tools) to compare keys with")
	}
	k, err := NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("wg", "pubkey")
	cmd.Stdin = strings.NewReader(k.String() + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != k.Public().String() {
		t.Errorf("public key %s, wg pubkey says %s", k.Public(), got)
	}
	if _, err := ParseKey("c2hvcnQ="); err == nil {
		t.Error("a short key was accepted")
	}
}

func TestPeersAddListRemove(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	a, privA, err := AddPeer(dir, "pixel-7", rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := AddPeer(dir, "tablet", rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	if a.IPv4.String() != "10.77.0.2" || a.IPv6.String() != "fd70:686f:6e65::2" || b.IPv4.String() != "10.77.0.3" {
		t.Errorf("addresses: %s %s %s", a.IPv4, a.IPv6, b.IPv4)
	}
	if privA.Public() != a.PublicKey {
		t.Error("the peer's public key is not its private key's")
	}
	if _, _, err := AddPeer(dir, "pixel-7", rand.Reader, now); err == nil || !strings.Contains(err.Error(), "remove it first") {
		t.Errorf("same name twice: %v", err)
	}
	for _, bad := range []string{"", "-x", "7pro", "a b", "x/y", strings.Repeat("a", 65)} {
		if _, _, err := AddPeer(dir, bad, rand.Reader, now); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if err := RemovePeer(dir, "pixel-7"); err != nil {
		t.Fatal(err)
	}
	if err := RemovePeer(dir, "pixel-7"); err == nil || !strings.Contains(err.Error(), "wireguard list") {
		t.Errorf("removing twice: %v", err)
	}
	// the freed address is given again
	c, _, err := AddPeer(dir, "watch", rand.Reader, now)
	if err != nil || c.IPv4.String() != "10.77.0.2" {
		t.Errorf("reused address: %v %s", err, c.IPv4)
	}
	peers, err := LoadPeers(dir)
	if err != nil || len(peers) != 2 || peers[0].Name != "tablet" || peers[1].Name != "watch" {
		t.Fatalf("peers: %v %+v", err, peers)
	}
	if st, _ := os.Stat(filepath.Join(dir, PeersFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("peers file mode %v", st.Mode().Perm())
	}
	os.WriteFile(filepath.Join(dir, PeersFile), []byte("{"), 0o600)
	if _, err := LoadPeers(dir); err == nil || !strings.Contains(err.Error(), "fix or remove") {
		t.Errorf("damaged peers file: %v", err)
	}
}

func TestClientConfig(t *testing.T) {
	dir := t.TempDir()
	p, priv, err := AddPeer(dir, "pixel", rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	server, _ := NewKey(rand.Reader)
	c := ClientConfig{PrivateKey: priv, Peer: p, ServerKey: server.Public(), Endpoint: "192.168.1.10:51820"}
	text := c.String()
	for _, want := range []string{
		"PrivateKey = " + priv.String(),
		"Address = 10.77.0.2/32, fd70:686f:6e65::2/128",
		"DNS = 10.77.0.1, fd70:686f:6e65::1",
		"PublicKey = " + server.Public().String(),
		"AllowedIPs = 0.0.0.0/0, ::/0",
		"Endpoint = 192.168.1.10:51820",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("configuration lacks %q:\n%s", want, text)
		}
	}
	qr, err := c.QR()
	if err != nil {
		t.Fatal(err)
	}
	// a QR code of a whole configuration: dozens of rows of block characters
	if lines := strings.Split(strings.TrimSpace(qr), "\n"); len(lines) < 25 || !strings.ContainsAny(qr, "█▀▄") {
		t.Errorf("terminal QR code: %d lines", len(lines))
	}
	path := filepath.Join(dir, "pixel.png")
	if err := c.WritePNG(path, 512); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil || img.Bounds().Dx() < 256 {
		t.Errorf("PNG: %v %v", err, img)
	}
}

func TestListenPort(t *testing.T) {
	for in, want := range map[string]uint16{"": 51820, ":51820": 51820, "51821": 51821, "0.0.0.0:9000": 9000, "[::]:9001": 9001, ":0": 0} {
		if got, err := ListenPort(in); err != nil || got != want {
			t.Errorf("ListenPort(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"192.168.1.10:51820", ":x", ":70000", "host:1"} {
		if _, err := ListenPort(bad); err == nil {
			t.Errorf("ListenPort(%q) accepted", bad)
		}
	}
}

// TestAddPeerConcurrently: additions at once (two tabs of the UI, the UI and
// the command) each get their own address, and none is lost.
func TestAddPeerConcurrently(t *testing.T) {
	dir := t.TempDir()
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := AddPeer(dir, fmt.Sprintf("phone-%d", i), rand.Reader, time.Now())
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	peers, err := LoadPeers(dir)
	if err != nil || len(peers) != n {
		t.Fatalf("%d peers kept of %d: %v", len(peers), n, err)
	}
	seen := map[netip.Addr]bool{}
	for _, p := range peers {
		if seen[p.IPv4] {
			t.Errorf("address %s given twice", p.IPv4)
		}
		seen[p.IPv4] = true
	}
	if _, _, err := AddPeer(dir, "7pro", rand.Reader, time.Now()); err == nil {
		t.Error("a name that rules could not name (it starts with a digit) was taken")
	}
}
