package certs

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"io"
	"math/big"
	"strings"
	"sync"
)

// Minter hands out leaf certificates for hosts, minting each once and keeping
// the most recently used ones. It is safe for concurrent use.
type Minter struct {
	ca     *CA
	opts   Options
	max    int
	key    *ecdsa.PrivateKey // one leaf key for all hosts: minting is then one signature
	mu     sync.Mutex
	lru    *list.List // of *entry, most recent first
	byKey  map[string]*list.Element
	calls  map[string]*call // mints in flight
	minted int
}

type entry struct {
	host string
	cert *tls.Certificate
}

type call struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// NewMinter returns a minter that keeps at most max certificates (default 10,000).
func NewMinter(ca *CA, max int, opts Options) (*Minter, error) {
	opts.defaults()
	if max <= 0 {
		max = 10_000
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), opts.Rand)
	if err != nil {
		return nil, err
	}
	return &Minter{ca: ca, opts: opts, max: max, key: key, lru: list.New(), byKey: map[string]*list.Element{}, calls: map[string]*call{}}, nil
}

// Get returns the certificate for host, minting it on first use. Concurrent
// first requests for one host wait for a single mint.
func (m *Minter) Get(host string) (*tls.Certificate, error) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	m.mu.Lock()
	if el, ok := m.byKey[host]; ok {
		m.lru.MoveToFront(el)
		c := el.Value.(*entry).cert
		m.mu.Unlock()
		return c, nil
	}
	if c, ok := m.calls[host]; ok {
		m.mu.Unlock()
		<-c.done
		return c.cert, c.err
	}
	c := &call{done: make(chan struct{})}
	m.calls[host] = c
	m.mu.Unlock()

	c.cert, c.err = m.ca.mint(host, m.key, m.opts)

	m.mu.Lock()
	delete(m.calls, host)
	if c.err == nil {
		m.minted++
		m.byKey[host] = m.lru.PushFront(&entry{host, c.cert})
		for m.lru.Len() > m.max {
			old := m.lru.Remove(m.lru.Back()).(*entry)
			delete(m.byKey, old.host)
		}
	}
	m.mu.Unlock()
	close(c.done)
	return c.cert, c.err
}

// CA is the authority the minter signs with.
func (m *Minter) CA() *CA { return m.ca }

// Minted is how many certificates were signed so far.
func (m *Minter) Minted() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.minted
}

// Len is the number of certificates kept.
func (m *Minter) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

// GetCertificate serves as tls.Config.GetCertificate: the SNI names the host;
// without SNI, the fallback (the address the client connected to) is used.
func (m *Minter) GetCertificate(fallback string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		host := hello.ServerName
		if host == "" {
			host = fallback
		}
		return m.Get(host)
	}
}

func randInt(r io.Reader, max *big.Int) (*big.Int, error) {
	if r == nil {
		r = rand.Reader
	}
	return rand.Int(r, max)
}
