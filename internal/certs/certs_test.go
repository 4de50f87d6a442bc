package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 18, 7, 0, 0, 0, time.UTC)

func testCA(t testing.TB) *CA {
	ca, created, err := LoadOrCreate(filepath.Join(t.TempDir(), "phonehome"), Options{Now: func() time.Time { return t0 }})
	if err != nil || !created {
		t.Fatal(created, err)
	}
	return ca
}

func TestCreateAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cfg", "phonehome")
	ca, created, err := LoadOrCreate(dir, Options{})
	if err != nil || !created {
		t.Fatalf("first run must create the CA: %v", err)
	}
	for name, mode := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o644, DERFile: 0o644, CRTFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v mode %v", name, err, fi.Mode())
		}
	}
	if !ca.Cert.IsCA || ca.Cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("not an ECDSA CA: %+v", ca.Cert)
	}
	again, created, err := LoadOrCreate(dir, Options{})
	if err != nil || created || again.Fingerprint() != ca.Fingerprint() {
		t.Fatalf("second run must load the same CA: %v %v", created, err)
	}
	der, _ := os.ReadFile(filepath.Join(dir, DERFile))
	if c, err := x509.ParseCertificate(der); err != nil || !c.Equal(ca.Cert) {
		t.Errorf("DER export: %v", err)
	}
}

func TestRefuseExposedKey(t *testing.T) {
	ca := testCA(t)
	key := filepath.Join(ca.Dir, KeyFile)
	os.Chmod(key, 0o644)
	_, _, err := LoadOrCreate(ca.Dir, Options{})
	if !errors.Is(err, ErrKeyExposed) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable key must be refused with what to do: %v", err)
	}
}

func TestLeaf(t *testing.T) {
	ca := testCA(t)
	m, err := NewMinter(ca, 0, Options{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, host := range []string{"tracking.intl.miui.com", "192.0.2.7", "::1"} {
		c, err := m.Get(host)
		if err != nil {
			t.Fatal(err)
		}
		leaf := c.Leaf
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, CurrentTime: t0}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
		if ip := net.ParseIP(host); ip != nil && (len(leaf.IPAddresses) != 1 || len(leaf.DNSNames) != 0) {
			t.Errorf("%s: an address goes in the IP SANs: %v %v", host, leaf.IPAddresses, leaf.DNSNames)
		}
		if d := leaf.NotAfter.Sub(leaf.NotBefore); d > 398*24*time.Hour {
			t.Errorf("%s: valid %v, longer than clients accept", host, d)
		}
		if !leaf.NotBefore.Before(t0) {
			t.Errorf("NotBefore must allow for a phone's clock running behind")
		}
	}
}

// TestConcurrentFirstRequests: many connections to a new host at once mint it once.
func TestConcurrentFirstRequests(t *testing.T) {
	m, err := NewMinter(testCA(t), 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	certs := make([]*tls.Certificate, 50)
	for i := range certs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			certs[i], _ = m.Get("data.mistat.intl.xiaomi.com")
		}()
	}
	wg.Wait()
	for _, c := range certs {
		if c == nil || c != certs[0] {
			t.Fatal("every caller must get the one certificate")
		}
	}
	if m.Minted() != 1 {
		t.Errorf("minted %d times", m.Minted())
	}
}

func TestCacheBound(t *testing.T) {
	m, _ := NewMinter(testCA(t), 10, Options{})
	for i := 0; i < 25; i++ {
		if _, err := m.Get(fmt.Sprintf("h%d.example.com", i)); err != nil {
			t.Fatal(err)
		}
	}
	if m.Len() != 10 {
		t.Errorf("cache holds %d, bound 10", m.Len())
	}
	m.Get("h24.example.com")
	if m.Minted() != 25 {
		t.Error("a recent host must come from the cache")
	}
}

// TestRealHandshake: a TLS client that trusts the CA accepts minted certificates over a real socket.
func TestRealHandshake(t *testing.T) {
	ca := testCA(t)
	m, _ := NewMinter(ca, 0, Options{})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: m.GetCertificate("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, name := range []string{"tracking.intl.miui.com", ""} {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: name})
		if name == "" {
			conn, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
		}
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		conn.Close()
	}
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "x.example"}); err == nil {
		t.Error("a client without the CA must refuse the certificate")
	}
}

func BenchmarkMint(b *testing.B) {
	m, _ := NewMinter(testCA(b), 1<<30, Options{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := m.Get(fmt.Sprintf("h%d.example.com", i)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCached(b *testing.B) {
	m, _ := NewMinter(testCA(b), 0, Options{})
	m.Get("tracking.intl.miui.com")
	b.ReportAllocs()
	for b.Loop() {
		m.Get("tracking.intl.miui.com")
	}
}
