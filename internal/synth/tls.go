package synth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"time"
)

// Chunk is what one side wrote in one go.
type Chunk struct {
	FromClient bool
	Data       []byte
}

// recorder records every write on a connection, tagged with its side.
type recorder struct {
	net.Conn
	client bool
	mu     *sync.Mutex
	out    *[]Chunk
}

func (r recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	*r.out = append(*r.out, Chunk{FromClient: r.client, Data: append([]byte(nil), p...)})
	r.mu.Unlock()
	return r.Conn.Write(p)
}

// TLSConversation runs a real TLS handshake between crypto/tls peers in memory
// (the client offering sni and alpn), sends request bytes up and response bytes
// down, and returns the bytes each side put on the wire, in order.
func TLSConversation(sni string, alpn []string, request, response int) ([]Chunk, error) {
	cert, err := selfSigned(sni)
	if err != nil {
		return nil, err
	}
	a, b := net.Pipe()
	var mu sync.Mutex
	var chunks []Chunk
	cli := tls.Client(recorder{a, true, &mu, &chunks}, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true})
	srv := tls.Server(recorder{b, false, &mu, &chunks}, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: alpn})
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, request)
		if _, err := io.ReadFull(srv, buf); err != nil {
			errc <- err
			return
		}
		_, err := srv.Write(make([]byte, response))
		errc <- err
	}()
	if _, err := cli.Write(make([]byte, request)); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(cli, make([]byte, response)); err != nil {
		return nil, err
	}
	if err := <-errc; err != nil {
		return nil, err
	}
	// Close the pipes, not the TLS conns: a close_notify nobody reads would wait for its 5 s deadline.
	a.Close()
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	return chunks, nil
}

func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
