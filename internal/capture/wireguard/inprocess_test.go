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
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"phonehome/internal/capture"
	"phonehome/internal/capture/proxy"
	"phonehome/internal/certs"
	"phonehome/internal/flow"
)

// loopback is a server and a phone in this process, over loopback UDP, with
// no root: the phone is wireguard-go with its own userspace stack (the
// netstack package a client app would use). The server may reach this
// machine (ReachHost), where the upstream listens.
type loopback struct {
	srv    *Server
	client *http.Client
	flows  chan *flow.Flow
	close  func()
}

func newLoopback(tb testing.TB, upstream *httptest.Server) *loopback {
	tb.Helper()
	dir := tb.TempDir()
	ca, minter := newMinter(tb, filepath.Join(dir, "ca"))
	roots := x509.NewCertPool()
	roots.AddCert(upstream.Certificate())
	l := &loopback{flows: make(chan *flow.Flow, 1024)}
	h := capture.Observer(func(f *flow.Flow) {
		select {
		case l.flows <- f:
		default:
		}
	})
	peer, priv, err := AddPeer(filepath.Join(dir, "wg"), "bench", rand.Reader, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	l.srv, err = New(Options{Listen: ":0", Dir: filepath.Join(dir, "wg"), ReachHost: true,
		Proxy: proxy.Options{Minter: minter, Upstream: &tls.Config{RootCAs: roots, ServerName: "example.com"}, Handler: h}})
	if err != nil {
		tb.Fatal(err)
	}
	tunDev, tnet, err := netstack.CreateNetTUN([]netip.Addr{peer.IPv4}, []netip.Addr{Server4}, MTU)
	if err != nil {
		tb.Fatal(err)
	}
	phone := device.NewDevice(tunDev, conn.NewDefaultBind(), &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf})
	if err := phone.IpcSet(fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=0.0.0.0/0\n",
		priv.hex(), l.srv.PublicKey().hex(), l.srv.Port())); err != nil {
		tb.Fatal(err)
	}
	if err := phone.Up(); err != nil {
		tb.Fatal(err)
	}
	phoneRoots := x509.NewCertPool()
	phoneRoots.AddCert(ca.Cert)
	up := upstream.Listener.Addr().(*net.TCPAddr).AddrPort()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return tnet.DialContextTCPAddrPort(ctx, up) },
		// the phone trusts phonehome's CA, as after installing it
		TLSClientConfig:   &tls.Config{RootCAs: phoneRoots},
		ForceAttemptHTTP2: true,
	}
	l.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	l.close = func() {
		tr.CloseIdleConnections()
		phone.Close()
		l.srv.Close()
	}
	return l
}

// bigUpstream serves size bytes over HTTPS on this machine's LAN address
// (a userspace stack sends nothing to loopback through a tunnel).
// newMinter makes a CA in dir and a minter of its certificates.
func newMinter(tb testing.TB, dir string) (*certs.CA, *certs.Minter) {
	tb.Helper()
	ca, _, err := certs.LoadOrCreate(dir, certs.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	m, err := certs.NewMinter(ca, 0, certs.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return ca, m
}

func bigUpstream(tb testing.TB, size int) *httptest.Server {
	lan, err := LANAddress()
	if err != nil {
		tb.Skipf("needs an address of this machine other than loopback: %v", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(lan.String(), "0"))
	if err != nil {
		tb.Skipf("listen on the LAN address %s: %v", lan, err)
	}
	chunk := make([]byte, 64<<10)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Header().Set("Content-Type", "application/octet-stream")
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk[:min(len(chunk), size-sent)]); err != nil {
				return
			}
		}
	}))
	s.Listener.Close()
	s.Listener = ln
	s.StartTLS()
	return s
}

// The whole path without root: a phone's HTTPS through the tunnel,
// decrypted and recorded under the peer's name.
func TestLoopbackTunnel(t *testing.T) {
	up := bigUpstream(t, 1<<20)
	defer up.Close()
	l := newLoopback(t, up)
	defer l.close()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := l.client.Get(fmt.Sprintf("https://tracker.test/%d?gaid=38400000-8cf0-11bd-b23e-10b96e40000d", i))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != 1<<20 {
				t.Errorf("download %d: %d bytes, %v", i, n, err)
			}
		}()
	}
	wg.Wait()
	deadline := time.After(5 * time.Second)
	for seen := 0; seen < 4; {
		select {
		case f := <-l.flows:
			if f.Transport != flow.TransportHTTPS || f.Device != "bench" || f.Host != "tracker.test" || f.BytesDown != 1<<20 {
				t.Errorf("flow: %s %q %s ↓%d", f.Transport, f.Device, f.Host, f.BytesDown)
			}
			seen++
		case <-deadline:
			t.Fatalf("%d of 4 flows recorded", seen)
		}
	}
}

// BenchmarkLoopbackTunnel: a 20 MB HTTPS download through the tunnel,
// decrypted and recorded, all in this process (the phone's wireguard-go and
// userspace stack included): what phonehome's side costs per byte.
func BenchmarkLoopbackTunnel(b *testing.B) {
	const size = 20 << 20
	up := bigUpstream(b, size)
	defer up.Close()
	l := newLoopback(b, up)
	defer l.close()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := l.client.Get("https://tracker.test/big")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			b.Fatalf("%d bytes, %v", n, err)
		}
	}
}
