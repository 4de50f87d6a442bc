package wireguard

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/skip2/go-qrcode"
)

// ClientConfig is what a phone needs to join: the wg-quick format that the
// WireGuard apps import, from a file or a QR code.
type ClientConfig struct {
	PrivateKey Key
	Peer       Peer
	ServerKey  Key    // the server's public key
	Endpoint   string // host:port the phone reaches the server at
}

// String is the configuration text. DNS is the resolver inside the tunnel
// (phonehome's recording one) and AllowedIPs sends everything through it.
func (c ClientConfig) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[Interface]\n# phonehome peer %s\nPrivateKey = %s\nAddress = %s/32, %s/128\nDNS = %s, %s\n\n",
		c.Peer.Name, c.PrivateKey, c.Peer.IPv4, c.Peer.IPv6, Server4, Server6)
	fmt.Fprintf(&b, "[Peer]\nPublicKey = %s\nAllowedIPs = 0.0.0.0/0, ::/0\nEndpoint = %s\nPersistentKeepalive = 25\n",
		c.ServerKey, c.Endpoint)
	return b.String()
}

// QR is the configuration as a QR code drawn with block characters, for a
// terminal (two rows of modules per line).
func (c ClientConfig) QR() (string, error) {
	q, err := qrcode.New(c.String(), qrcode.Low)
	if err != nil {
		return "", fmt.Errorf("draw the QR code: %w", err)
	}
	return q.ToSmallString(false), nil
}

// WritePNG writes the QR code as a PNG image of size pixels a side.
func (c ClientConfig) WritePNG(path string, size int) error {
	if err := qrcode.WriteFile(c.String(), qrcode.Low, size, path); err != nil {
		return fmt.Errorf("write the QR code to %s: %w", path, err)
	}
	return nil
}

// LANAddress is the address of this machine that a phone on the same
// network most likely reaches: the source of the default route (found
// without sending anything), else the first private address of an
// interface that is up.
func LANAddress() (netip.Addr, error) {
	for _, probe := range []string{"1.1.1.1:9", "[2606:4700:4700::1111]:9"} {
		c, err := net.Dial("udp", probe) // UDP "connect" only picks a route
		if err != nil {
			continue
		}
		ap, err := netip.ParseAddrPort(c.LocalAddr().String())
		c.Close()
		if err == nil && !ap.Addr().IsLoopback() {
			return ap.Addr().Unmap(), nil
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find this machine's LAN address (name it with --endpoint HOST:PORT): %w", err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsPrivate() {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("this machine has no LAN address that a phone could reach: name one with --endpoint HOST:PORT")
}
