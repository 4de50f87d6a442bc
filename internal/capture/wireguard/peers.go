// Package wireguard is phonehome's WireGuard server: a phone joins by
// scanning a QR code in the WireGuard app, and every packet it sends arrives
// in a userspace network stack that phonehome controls, so every connection,
// to any destination, ends in phonehome. TCP enters the intercepting proxy
// with its original destination and the peer's name as its device, DNS is
// answered by the recording resolver, QUIC is dropped (apps fall back to TCP)
// and other UDP is relayed from host sockets.
//
// Peers are kept in a directory (the server's key and peers.json, both
// readable by the owner only); a running server picks up peers added or
// removed there without a restart.
package wireguard

import (
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"phonehome/internal/certs"
	"phonehome/internal/flow"
)

// Key is a Curve25519 key, private or public, as WireGuard uses it.
type Key [32]byte

// NewKey makes a private key from r (crypto/rand.Reader in use).
func NewKey(r io.Reader) (Key, error) {
	priv, err := ecdh.X25519().GenerateKey(r)
	if err != nil {
		return Key{}, fmt.Errorf("make a WireGuard key: %w", err)
	}
	return Key(priv.Bytes()), nil
}

// Public is the public key of a private key.
func (k Key) Public() Key {
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil { // cannot happen: every 32 bytes are an X25519 scalar
		return Key{}
	}
	return Key(priv.PublicKey().Bytes())
}

// String is the base64 form that wg and the apps read.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// hex is the form wireguard-go's configuration protocol reads.
func (k Key) hex() string { return hex.EncodeToString(k[:]) }

// ParseKey reads a key in base64, as wg prints it.
func ParseKey(s string) (Key, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return Key{}, fmt.Errorf("%q is not a WireGuard key (44 characters of base64, as wg genkey prints)", s)
	}
	return Key(b), nil
}

func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k *Key) UnmarshalText(b []byte) error {
	v, err := ParseKey(string(b))
	*k = v
	return err
}

// The tunnel's addresses: the server (and its resolver) takes the first of
// each prefix, peers the next ones. 10.77.0.0/24 and a ULA prefix spelling
// "phone" are unlikely to collide with a home network.
var (
	Prefix4 = netip.MustParsePrefix("10.77.0.0/24")
	Prefix6 = netip.MustParsePrefix("fd70:686f:6e65::/64")
	Server4 = netip.MustParseAddr("10.77.0.1")
	Server6 = netip.MustParseAddr("fd70:686f:6e65::1")
)

// Peer is a device allowed in: its name, its public key and its addresses
// in the tunnel (which its key vouches for: WireGuard drops a packet from a
// peer whose source is not one of its addresses).
type Peer struct {
	Name      string     `json:"name"`
	PublicKey Key        `json:"public_key"`
	IPv4      netip.Addr `json:"ipv4"`
	IPv6      netip.Addr `json:"ipv6"`
	Added     time.Time  `json:"added"`
}

// Files in a peers directory.
const (
	ServerKeyFile = "server.key"
	PeersFile     = "peers.json"
)

// ServerKey returns the server's private key kept in dir, made (0600) on
// first use.
func ServerKey(dir string, rand io.Reader) (Key, error) {
	path := filepath.Join(dir, ServerKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseKey(string(trimSpace(b)))
		if err != nil {
			return Key{}, fmt.Errorf("read the WireGuard server key %s (remove it to make a new one; every peer must then be added again): %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return Key{}, fmt.Errorf("read the WireGuard server key: %w", err)
	}
	k, err := NewKey(rand)
	if err != nil {
		return Key{}, err
	}
	if err := writePrivate(path, []byte(k.String()+"\n")); err != nil {
		return Key{}, fmt.Errorf("keep the WireGuard server key: %w", err)
	}
	return k, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// LoadPeers reads the peers kept in dir; none when there is no file yet.
func LoadPeers(dir string) ([]Peer, error) {
	b, err := os.ReadFile(filepath.Join(dir, PeersFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the WireGuard peers: %w", err)
	}
	var peers []Peer
	if err := json.Unmarshal(b, &peers); err != nil {
		return nil, fmt.Errorf("read the WireGuard peers %s (fix or remove the file): %w", filepath.Join(dir, PeersFile), err)
	}
	return peers, nil
}

func savePeers(dir string, peers []Peer) error {
	b, err := json.MarshalIndent(peers, "", "  ")
	if err != nil {
		return err
	}
	if err := writePrivate(filepath.Join(dir, PeersFile), append(b, '\n')); err != nil {
		return fmt.Errorf("keep the WireGuard peers: %w", err)
	}
	return nil
}

// AddPeer makes a key pair and the next free addresses for a new peer,
// keeps the peer in dir and returns it with its private key (which is not
// kept: the configuration shown once carries it).
func AddPeer(dir, name string, rand io.Reader, now time.Time) (Peer, Key, error) {
	if !flow.ValidDeviceName(name) {
		return Peer{}, Key{}, fmt.Errorf("peer name %q: use letters, digits, '.', '_' and '-' (at most 64), starting with a letter, e.g. pixel-7 (rules name it as device:pixel-7)", name)
	}
	unlock, err := lockPeers(dir)
	if err != nil {
		return Peer{}, Key{}, err
	}
	defer unlock()
	peers, err := LoadPeers(dir)
	if err != nil {
		return Peer{}, Key{}, err
	}
	used := map[netip.Addr]bool{}
	for _, p := range peers {
		if p.Name == name {
			return Peer{}, Key{}, fmt.Errorf("a peer named %q exists: choose another name, or remove it first (phonehome wireguard remove %s)", name, name)
		}
		used[p.IPv4] = true
	}
	priv, err := NewKey(rand)
	if err != nil {
		return Peer{}, Key{}, err
	}
	p := Peer{Name: name, PublicKey: priv.Public(), Added: now.UTC()}
	a4, a6 := Server4.As4(), Server6.As16()
	for host := 2; host < 255; host++ {
		a4[3] = byte(host)
		if !used[netip.AddrFrom4(a4)] {
			a6[15] = byte(host)
			p.IPv4, p.IPv6 = netip.AddrFrom4(a4), netip.AddrFrom16(a6)
			break
		}
	}
	if !p.IPv4.IsValid() {
		return Peer{}, Key{}, fmt.Errorf("no free address in %s: remove a peer first", Prefix4)
	}
	if err := savePeers(dir, append(peers, p)); err != nil {
		return Peer{}, Key{}, err
	}
	return p, priv, nil
}

// RemovePeer forgets a peer: a running server refuses its key from then on.
func RemovePeer(dir, name string) error {
	unlock, err := lockPeers(dir)
	if err != nil {
		return err
	}
	defer unlock()
	peers, err := LoadPeers(dir)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(peers, func(p Peer) bool { return p.Name == name })
	if i < 0 {
		return fmt.Errorf("no peer named %q (phonehome wireguard list shows them)", name)
	}
	return savePeers(dir, slices.Delete(peers, i, i+1))
}

// writePrivate writes a file readable by its owner only, whole or not at all.
func writePrivate(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return certs.WriteFile(path, data, 0o600)
}
