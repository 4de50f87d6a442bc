package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
)

// client makes one request and reads the whole answer.
type client interface{ get() error }

// rawClient speaks HTTP/1.1 over one connection at a time: directly or
// through the proxy (absolute-form requests for http, CONNECT then TLS for
// https). Without keep-alive each request gets a new connection.
type rawClient struct {
	req       []byte
	scheme    string
	host      string // host:port of the target
	dial      string // where to connect: the proxy or the target
	proxied   bool
	tls       *tls.Config
	keepAlive bool
	conn      net.Conn
	br        *bufio.Reader
}

func newRaw(pool *x509.CertPool, proxy, target string) (*rawClient, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-target %q: want an http:// or https:// URL", target)
	}
	c := &rawClient{scheme: u.Scheme, host: u.Host, dial: u.Host,
		tls: &tls.Config{RootCAs: pool, ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}}}
	if u.Port() == "" {
		return nil, fmt.Errorf("-target %q: name the port", target)
	}
	path := u.RequestURI()
	if proxy != "" {
		p, err := url.Parse(proxy)
		if err != nil || p.Host == "" {
			return nil, fmt.Errorf("-proxy %q: want http://host:port", proxy)
		}
		c.dial, c.proxied = p.Host, true
		if u.Scheme == "http" {
			path = target // absolute form
		}
	}
	c.req = []byte("GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: proxyload\r\n\r\n")
	return c, nil
}

func (c *rawClient) connect() error {
	conn, err := net.Dial("tcp", c.dial)
	if err != nil {
		return err
	}
	br := bufio.NewReaderSize(conn, 16<<10)
	if c.proxied && c.scheme == "https" {
		if _, err := io.WriteString(conn, "CONNECT "+c.host+" HTTP/1.1\r\nHost: "+c.host+"\r\n\r\n"); err != nil {
			conn.Close()
			return err
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != 200 {
			conn.Close()
			return fmt.Errorf("CONNECT: %v %v", resp, err)
		}
	}
	if c.scheme == "https" {
		tc := tls.Client(conn, c.tls)
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return err
		}
		conn, br = tc, bufio.NewReaderSize(tc, 16<<10)
	}
	c.conn, c.br = conn, br
	return nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

var errAnswer = errors.New("answer: not a 200 with a Content-Length")

func (c *rawClient) get() error {
	if c.conn == nil {
		if err := c.connect(); err != nil {
			return err
		}
	}
	if !c.keepAlive {
		defer c.close()
	}
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return err
	}
	if err := c.readAnswer(); err != nil {
		c.close()
		return err
	}
	return nil
}

// readAnswer reads a status line, headers and a Content-Length body.
func (c *rawClient) readAnswer() error {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("%w: %q", errAnswer, line)
	}
	n := -1
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if name, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
			n, err = strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return errAnswer
			}
		}
	}
	if n < 0 {
		return errAnswer
	}
	_, err = c.br.Discard(n)
	return err
}

// netHTTPClient is Go's client, one connection per client.
type netHTTPClient struct {
	c      *http.Client
	target string
}

func newNetHTTP(pool *x509.CertPool, proxy, target string, keepAlive bool) *netHTTPClient {
	t := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: false,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	if proxy != "" {
		u, _ := url.Parse(proxy)
		t.Proxy = http.ProxyURL(u)
	}
	return &netHTTPClient{c: &http.Client{Transport: t}, target: target}
}

func (n *netHTTPClient) get() error {
	resp, err := n.c.Get(n.target)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}
