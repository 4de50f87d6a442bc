package pcap

import (
	"bytes"
	"strconv"
	"strings"

	"phonehome/internal/flow"
)

// httpState is where a one-direction HTTP/1 parser stands in its stream.
type httpState uint8

const (
	stHead       httpState = iota // reading a start line and headers
	stBody                        // Content-Length body
	stChunkSize                   // chunk-size line
	stChunkData                   // chunk payload
	stChunkEnd                    // CRLF after a chunk
	stTrailers                    // trailer headers after the last chunk
	stUntilClose                  // response body delimited by the connection's end
	stResync                      // lost our place; waiting for a line that starts a message
	stTunnel                      // no longer HTTP (CONNECT, Upgrade): count bytes only
)

const maxHeaderBytes = 64 << 10

// httpMsg is one request or response under construction.
type httpMsg struct {
	req   *flow.Request
	resp  *flow.Response
	body  *flow.Body
	bytes int64 // wire bytes of this message
}

// httpHalf parses one direction of an HTTP/1.x connection. It is push-driven:
// the TCP reassembler feeds it bytes in order and tells it about gaps, so it
// never blocks and never needs the whole stream in memory.
type httpHalf struct {
	isResp  bool
	st      httpState
	buf     []byte // partial start line and headers, chunk-size and trailer lines
	trailer []byte // trailer lines read so far
	msg     httpMsg
	remain  int64
	maxBody int
	c       *conn
}

// feed consumes data in stream order.
func (h *httpHalf) feed(data []byte) {
	for len(data) > 0 {
		switch h.st {
		case stTunnel:
			return
		case stResync:
			i := findMessageStart(data, h.isResp)
			if i < 0 {
				return
			}
			data = data[i:]
			h.st = stHead
		case stHead:
			if len(h.buf) == 0 {
				for len(data) > 0 && (data[0] == '\r' || data[0] == '\n') {
					data = data[1:] // stray CRLF between pipelined messages
				}
				if len(data) == 0 {
					return
				}
				if end := headerEnd(data, 0); end >= 0 {
					h.head(data[:end])
					data = data[end:]
					continue
				}
				h.buf = append(h.buf, data...)
			} else {
				old := len(h.buf)
				h.buf = append(h.buf, data...)
				if end := headerEnd(h.buf, max(0, old-3)); end >= 0 {
					h.head(h.buf[:end])
					data = data[end-old:]
					h.buf = h.buf[:0]
					continue
				}
			}
			if len(h.buf) > maxHeaderBytes {
				h.c.note(flow.NoteMalformed, "HTTP headers over 64 KiB; skipped to the next message")
				h.buf = h.buf[:0]
				h.st = stResync
			}
			return
		case stBody, stChunkData:
			n := int64(len(data))
			if n > h.remain {
				n = h.remain
			}
			h.bodyBytes(data[:n])
			data = data[n:]
			h.remain -= n
			if h.remain == 0 {
				if h.st == stBody {
					h.done()
				} else {
					h.st = stChunkEnd
				}
			}
		case stChunkEnd:
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				h.msg.bytes += int64(len(data))
				return
			}
			h.msg.bytes += int64(i + 1)
			data = data[i+1:]
			h.st = stChunkSize
		case stChunkSize:
			line, rest, ok := h.line(data)
			if !ok {
				return
			}
			data = rest
			if i := bytes.IndexByte(line, ';'); i >= 0 {
				line = line[:i]
			}
			size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
			if err != nil || size < 0 {
				h.c.note(flow.NoteMalformed, "HTTP chunk size "+strconv.Quote(string(line))+" is not a number; body ends there")
				h.msg.body.Incomplete = true
				h.done()
				h.st = stResync
				continue
			}
			if size == 0 {
				h.st = stTrailers
				continue
			}
			h.remain = size
			h.st = stChunkData
		case stTrailers:
			line, rest, ok := h.line(data)
			if !ok {
				return
			}
			data = rest
			if len(line) > 0 {
				if len(h.trailer) < maxHeaderBytes {
					h.trailer = append(append(h.trailer, line...), '\n')
				}
				continue
			}
			if len(h.trailer) > 0 {
				tr := parseHeaderLines(h.trailer)
				if h.msg.req != nil {
					h.msg.req.Trailers = tr
				} else {
					h.msg.resp.Trailers = tr
				}
				h.trailer = h.trailer[:0]
			}
			h.done()
		case stUntilClose:
			h.bodyBytes(data)
			return
		}
	}
}

// line returns one LF-terminated line (without CR LF), buffering partial lines.
func (h *httpHalf) line(data []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		h.buf = append(h.buf, data...)
		h.msg.bytes += int64(len(data))
		if len(h.buf) > 4096 {
			h.buf = h.buf[:0]
			h.msg.body.Incomplete = true
			h.c.note(flow.NoteMalformed, "HTTP chunk header line too long; body ends there")
			h.done()
			h.st = stResync
		}
		return nil, nil, false
	}
	h.msg.bytes += int64(i + 1)
	if len(h.buf) > 0 {
		h.buf = append(h.buf, data[:i]...)
		line = h.buf
		h.buf = h.buf[:0]
	} else {
		line = data[:i]
	}
	return bytes.TrimSuffix(line, []byte{'\r'}), data[i+1:], true
}

// reserve sizes the body buffer once when the length is declared, instead of
// growing it by doubling (which copies every body twice).
func (h *httpHalf) reserve() {
	n := int(min(h.remain, int64(h.maxBody)))
	if h.c.a.pool != nil {
		h.msg.body.Data = h.c.a.pool.get(n)
		return
	}
	h.msg.body.Data = make([]byte, 0, n)
}

func (h *httpHalf) bodyBytes(b []byte) {
	h.msg.bytes += int64(len(b))
	body := h.msg.body
	body.Size += int64(len(b))
	if room := h.maxBody - len(body.Data); room > 0 {
		if len(b) > room {
			b = b[:room]
			body.Truncated = true
		}
		if p := h.c.a.pool; p != nil && len(body.Data)+len(b) > cap(body.Data) {
			grown := p.get(min(max(2*cap(body.Data), len(body.Data)+len(b)), h.maxBody))
			grown = append(grown, body.Data...)
			p.put(body.Data)
			body.Data = grown
		}
		body.Data = append(body.Data, b...)
	} else if len(b) > 0 {
		body.Truncated = true
	}
}

// head parses a complete start line and header block and chooses how the body is delimited.
func (h *httpHalf) head(block []byte) {
	nl := bytes.IndexByte(block, '\n')
	start := string(bytes.TrimRight(block[:nl], "\r"))
	headers := parseHeaderLines(block[nl+1:])
	h.msg = httpMsg{bytes: int64(len(block))}
	if !h.isResp {
		method, rest, ok1 := strings.Cut(start, " ")
		target, proto, ok2 := strings.Cut(rest, " ")
		if !ok1 || !ok2 || !validMethod(method) || !strings.HasPrefix(proto, "HTTP/") {
			h.c.note(flow.NoteMalformed, "not an HTTP request line: "+strconv.Quote(clip(start, 80)))
			h.st = stResync
			return
		}
		req := &flow.Request{Method: method, Proto: proto, Headers: headers}
		req.URL = h.c.absoluteURL(target, headers.Get("Host"))
		h.msg.req, h.msg.body = req, &req.Body
		h.c.requestStarted(&h.msg)
		switch {
		case isChunked(headers):
			h.st = stChunkSize
		case contentLength(headers) > 0:
			h.remain, h.st = contentLength(headers), stBody
			h.reserve()
		default:
			h.done()
		}
		return
	}
	proto, rest, _ := strings.Cut(start, " ")
	code, reason, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/") || err != nil || status < 100 || status > 999 {
		h.c.note(flow.NoteMalformed, "not an HTTP status line: "+strconv.Quote(clip(start, 80)))
		h.st = stResync
		return
	}
	resp := &flow.Response{Status: status, Reason: reason, Proto: proto, Headers: headers}
	h.msg.resp, h.msg.body = resp, &resp.Body
	if status >= 100 && status < 200 && status != 101 {
		h.st = stHead // interim response (100 Continue): the real one follows
		h.msg = httpMsg{}
		return
	}
	method := h.c.responseStarted(&h.msg)
	switch {
	case status == 101 || (method == "CONNECT" && status/100 == 2):
		h.done()
		h.c.tunnel(method == "CONNECT")
	case method == "HEAD" || status == 204 || status == 304:
		h.done()
	case isChunked(headers):
		h.st = stChunkSize
	case contentLength(headers) >= 0:
		h.remain = contentLength(headers)
		if h.remain == 0 {
			h.done()
		} else {
			h.st = stBody
			h.reserve()
		}
	default:
		h.st = stUntilClose
	}
}

func (h *httpHalf) done() {
	if h.msg.body == nil {
		h.st = stHead
		return
	}
	m := h.msg
	h.msg = httpMsg{}
	h.st = stHead
	if m.req != nil {
		h.c.requestDone(&m)
	} else {
		h.c.responseDone(&m)
	}
}

// gap tells the parser that n bytes of the stream were never captured.
func (h *httpHalf) gap(n int64) {
	switch h.st {
	case stTunnel, stResync:
		return
	case stBody:
		h.msg.body.Incomplete = true
		h.msg.body.Size += min(n, h.remain)
		if n < h.remain {
			h.remain -= n
			return
		}
		h.done()
	case stUntilClose:
		h.msg.body.Incomplete = true
		h.msg.body.Size += n
		return
	case stHead:
		if len(h.buf) == 0 {
			h.st = stResync
			return
		}
		h.c.note(flow.NoteCaptureGap, "HTTP headers cut by missing bytes; message skipped")
	default:
		if h.msg.body != nil {
			h.msg.body.Incomplete = true
			h.done()
		}
	}
	h.buf = h.buf[:0]
	h.st = stResync
}

// close ends the stream: a body delimited by the close is complete, anything
// else in progress is incomplete.
func (h *httpHalf) close() {
	switch h.st {
	case stUntilClose:
		h.done()
	case stBody, stChunkSize, stChunkData, stChunkEnd, stTrailers:
		h.msg.body.Incomplete = true
		h.done()
	case stHead:
		if len(h.buf) > 0 {
			h.c.note(flow.NoteCaptureGap, "connection ended inside HTTP headers")
		}
	}
	h.buf = nil
	h.st = stTunnel
}

// headerEnd returns the index just past the blank line ending a header block,
// searching from index from, or -1.
func headerEnd(b []byte, from int) int {
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return -1
		}
		j := from + i + 1
		if j < len(b) && b[j] == '\n' {
			return j + 1
		}
		if j+1 < len(b) && b[j] == '\r' && b[j+1] == '\n' {
			return j + 2
		}
		from = j
	}
}

func parseHeaderLines(b []byte) flow.Headers {
	var hs flow.Headers
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		var line []byte
		if i < 0 {
			line, b = b, nil
		} else {
			line, b = b[:i], b[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(hs) > 0 { // obsolete line folding
			hs[len(hs)-1].Value += " " + string(bytes.TrimSpace(line))
			continue
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		hs = append(hs, flow.Header{Name: string(bytes.TrimSpace(name)), Value: string(bytes.TrimSpace(value))})
	}
	return hs
}

func isChunked(h flow.Headers) bool {
	for _, x := range h {
		if strings.EqualFold(x.Name, "Transfer-Encoding") && strings.Contains(strings.ToLower(x.Value), "chunked") {
			return true
		}
	}
	return false
}

// contentLength returns the declared body length, or -1 when absent or invalid.
func contentLength(h flow.Headers) int64 {
	v := h.Get("Content-Length")
	if v == "" {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

var methods = []string{"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "PURGE"}

func validMethod(m string) bool {
	if len(m) == 0 || len(m) > 20 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// looksLikeRequest reports whether a stream starting with b is HTTP/1 from a client.
func looksLikeRequest(b []byte) bool {
	for _, m := range methods {
		if len(b) > len(m) && b[len(m)] == ' ' && string(b[:len(m)]) == m {
			return true
		}
	}
	return false
}

func looksLikeResponse(b []byte) bool {
	return len(b) >= 8 && string(b[:7]) == "HTTP/1." || len(b) >= 9 && string(b[:9]) == "HTTP/1.0 "
}

// findMessageStart finds a line start that begins a request or status line.
func findMessageStart(b []byte, resp bool) int {
	for i := 0; i < len(b); {
		if (resp && looksLikeResponse(b[i:])) || (!resp && looksLikeRequest(b[i:])) {
			return i
		}
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
	}
	return -1
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
