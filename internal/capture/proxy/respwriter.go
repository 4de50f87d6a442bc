package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// connWriter writes HTTP/1.1 responses onto a decrypted client connection,
// streaming bodies of unknown length with chunked encoding.
type connWriter struct {
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	hijack  bool
	h       http.Header
	method  string
	wrote   bool
	chunked bool
	nobody  bool
	close   bool
	http10  bool // the client speaks HTTP/1.0: no chunking, the end of the body is the end of the connection
	err     error
}

// newResponseWriter answers one request on c through w, the connection's
// buffered writer (one per connection, reused from request to request).
func newResponseWriter(c net.Conn, r *bufio.Reader, w *bufio.Writer, method string) *connWriter {
	return &connWriter{conn: c, r: r, w: w, h: http.Header{}, method: method}
}

// Hijack hands the connection over (for a protocol upgrade); the request loop ends.
func (c *connWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c.hijack = true
	return c.conn, bufio.NewReadWriter(c.r, c.w), nil
}

func (c *connWriter) Header() http.Header { return c.h }

func (c *connWriter) WriteHeader(code int) {
	if c.wrote {
		return
	}
	c.wrote = true
	c.nobody = c.method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code/100 == 1
	if c.h.Get("Content-Length") == "" && !c.nobody {
		if c.http10 {
			c.close = true
		} else {
			c.chunked = true
			c.h.Set("Transfer-Encoding", "chunked")
		}
	}
	if c.http10 {
		c.close = true
	}
	if strings.EqualFold(c.h.Get("Connection"), "close") {
		c.close = true
	}
	fmt.Fprintf(c.w, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	c.err = c.h.Write(c.w)
	c.w.WriteString("\r\n")
}

func (c *connWriter) Write(b []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.nobody || len(b) == 0 {
		return len(b), nil
	}
	if c.chunked {
		fmt.Fprintf(c.w, "%x\r\n", len(b))
	}
	n, err := c.w.Write(b)
	if c.chunked && err == nil {
		_, err = c.w.WriteString("\r\n")
	}
	c.err = err
	return n, err
}

// Flush sends what is buffered, so streamed bodies reach the client as they come.
func (c *connWriter) Flush() { c.err = c.w.Flush() }

// errCut ends the request loop after an answer was cut: the client must
// see the connection close rather than a shorter answer that ends well.
var errCut = errors.New("answer cut")

// abort ends the answer where it is, and the connection with it.
func (c *connWriter) abort() {
	c.w.Flush()
	c.err = errCut
	c.close = true
}

// errHijacked ends the request loop after a protocol upgrade.
var errHijacked = errors.New("connection taken over")

// finish ends the response.
func (c *connWriter) finish() error {
	if c.hijack {
		return errHijacked
	}
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	if c.chunked && c.err == nil {
		_, c.err = c.w.WriteString("0\r\n\r\n")
	}
	if c.err == nil {
		c.err = c.w.Flush()
	}
	return c.err
}
