// Package certs keeps phonehome's certificate authority and mints the leaf
// certificates the intercepting proxy shows to clients. The CA lives in the
// user's config directory (its key readable by the owner only); leaves are
// minted per host, cached with a bound, and minted once even when many
// connections ask for the same new host at the same moment.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside the CA directory.
const (
	CertFile = "ca.pem" // the CA certificate, PEM
	DERFile  = "ca.der" // the same, DER (what Android's installer likes)
	CRTFile  = "ca.crt" // the same, PEM, named as Windows and iOS expect
	KeyFile  = "ca.key" // the CA's private key, PKCS#8 PEM, mode 0600
)

// CA is a certificate authority that can sign leaf certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	Dir  string
}

// Options inject what makes certificates reproducible in tests.
type Options struct {
	Now  func() time.Time // default time.Now
	Rand io.Reader        // default crypto/rand
}

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
}

// ErrKeyExposed means the CA key file can be read by other users.
var ErrKeyExposed = errors.New("CA key is readable by other users")

// DefaultDir is where the CA lives: the user's config directory, phonehome.
func DefaultDir() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the config directory (set $XDG_CONFIG_HOME or $HOME): %w", err)
	}
	return filepath.Join(d, "phonehome"), nil
}

// LoadOrCreate loads the CA in dir, creating it (and dir) on first use.
func LoadOrCreate(dir string, opts Options) (*CA, bool, error) {
	opts.defaults()
	ca, err := Load(dir)
	if err == nil {
		return ca, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	ca, err = create(dir, opts)
	return ca, err == nil, err
}

// Load reads an existing CA, refusing a key others can read.
func Load(dir string) (*CA, error) {
	keyPath := filepath.Join(dir, KeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load CA: %w: %s has mode %#o; run: chmod 600 %s", ErrKeyExposed, keyPath, fi.Mode().Perm(), keyPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	cb, _ := pem.Decode(certPEM)
	if kb == nil || cb == nil {
		return nil, fmt.Errorf("load CA from %s: not PEM; move the directory away to make a new CA", dir)
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load CA key %s: %w", keyPath, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load CA key %s: not a signing key", keyPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: signer, Dir: dir}, nil
}

func create(dir string, opts Options) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), opts.Rand)
	if err != nil {
		return nil, fmt.Errorf("create CA key: %w", err)
	}
	now := opts.Now()
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(opts.Rand),
		Subject:               pkix.Name{CommonName: "phonehome CA (" + host + ")", Organization: []string{"phonehome"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(opts.Rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600},
		{CertFile, certPEM, 0o644},
		{CRTFile, certPEM, 0o644},
		{DERFile, der, 0o644},
	}
	for _, f := range files {
		if err := WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, fmt.Errorf("write CA: %w", err)
		}
	}
	return &CA{Cert: cert, Key: key, Dir: dir}, nil
}

// WriteFile writes a file with mode atomically, so a crash never leaves half
// a key.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func serial(r io.Reader) *big.Int {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := randInt(r, limit)
	if err != nil || n.Sign() == 0 {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// Fingerprint is the SHA-256 of the CA certificate, as browsers show it.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.Cert.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// CertPath is the CA certificate file to give to devices.
func (ca *CA) CertPath() string { return filepath.Join(ca.Dir, CertFile) }

// LeafValidity is how long a minted certificate is valid: under the 398 days
// Apple and browsers accept for server certificates.
const LeafValidity = 397 * 24 * time.Hour

// mint signs a certificate for one host name or IP address.
func (ca *CA) mint(host string, key *ecdsa.PrivateKey, opts Options) (*tls.Certificate, error) {
	now := opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(opts.Rand),
		Subject:      pkix.Name{CommonName: host, Organization: []string{"phonehome interception"}},
		NotBefore:    now.Add(-time.Hour), // clocks on phones drift
		NotAfter:     now.Add(LeafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(opts.Rand, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("mint certificate for %s: %w", host, err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}
