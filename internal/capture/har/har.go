// Package har reads HTTP Archive (HAR 1.2) files as written by browsers' developer
// tools, Charles, Fiddler, mitmproxy, browsertime/sitespeed and WebPageTest. It
// streams the entries array, so a large archive needs memory for one entry at a
// time, and tolerates the fields producers leave out or set to null.
package har

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"phonehome/internal/flow"
)

// Options bound what the reader keeps.
type Options struct {
	MaxBody int // bytes of each body kept (default 1 MiB)
}

// Sniff reports whether head (leading white space removed) starts a HAR file.
func Sniff(head []byte) bool {
	return len(head) > 0 && head[0] == '{' && bytes.Contains(head, []byte(`"log"`))
}

// Error locates a problem in a HAR file.
type Error struct {
	Entry  int   // 1-based entry number, 0 outside the entries
	Offset int64 // byte offset where reading stopped
	Err    error
}

func (e *Error) Error() string {
	if e.Entry > 0 {
		return fmt.Sprintf("HAR entry %d at offset %d: %v", e.Entry, e.Offset, e.Err)
	}
	return fmt.Sprintf("HAR at offset %d: %v", e.Offset, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Read streams the entries of a HAR file and emits one flow per entry.
func Read(r io.Reader, name string, opts Options, emit func(*flow.Flow)) error {
	if opts.MaxBody <= 0 {
		opts.MaxBody = 1 << 20
	}
	dec := json.NewDecoder(r)
	dec.UseNumber()
	fail := func(entry int, err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("file ends before the JSON does (truncated?)")
		}
		return &Error{Entry: entry, Offset: dec.InputOffset(), Err: err}
	}
	if err := expectDelim(dec, '{'); err != nil {
		return fail(0, err)
	}
	found := false
	seq := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return fail(0, err)
		}
		if key != "log" {
			if err := skip(dec); err != nil {
				return fail(0, err)
			}
			continue
		}
		found = true
		if err := expectDelim(dec, '{'); err != nil {
			return fail(0, fmt.Errorf("log: %w", err))
		}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return fail(0, err)
			}
			if key != "entries" {
				if err := skip(dec); err != nil {
					return fail(0, err)
				}
				continue
			}
			tok, err := dec.Token()
			if err != nil {
				return fail(0, err)
			}
			if tok == nil {
				continue // "entries": null
			}
			if d, ok := tok.(json.Delim); !ok || d != '[' {
				return fail(0, fmt.Errorf("log.entries is %v, not an array", tok))
			}
			for dec.More() {
				var e entry
				if err := dec.Decode(&e); err != nil {
					return fail(seq+1, err)
				}
				seq++
				f, err := e.flow(opts.MaxBody)
				if err != nil {
					return fail(seq, err)
				}
				f.Source, f.Seq = name, seq
				emit(f)
			}
			if _, err := dec.Token(); err != nil {
				return fail(seq, err)
			}
		}
		if _, err := dec.Token(); err != nil {
			return fail(seq, err)
		}
	}
	if !found {
		return fail(0, errors.New(`no "log" object: not a HAR file`))
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q, found %v", want, tok)
	}
	return nil
}

func skip(dec *json.Decoder) error {
	var v json.RawMessage
	return dec.Decode(&v)
}

// number accepts a JSON number, a numeric string, or null.
type number float64

func (n *number) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" || s == "" {
		*n = -1
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		*n = -1
		return nil // producers write odd values ("N/A"); a size is not worth failing the file for
	}
	*n = number(v)
	return nil
}

type nameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type entry struct {
	Started  string  `json:"startedDateTime"`
	Time     number  `json:"time"`
	ServerIP string  `json:"serverIPAddress"`
	Request  request `json:"request"`
	Response *struct {
		Status      number      `json:"status"`
		StatusText  string      `json:"statusText"`
		HTTPVersion string      `json:"httpVersion"`
		Headers     []nameValue `json:"headers"`
		Content     *struct {
			Size     number `json:"size"`
			Text     string `json:"text"`
			Encoding string `json:"encoding"`
		} `json:"content"`
		HeadersSize  *number `json:"headersSize"`
		BodySize     *number `json:"bodySize"`
		TransferSize *number `json:"_transferSize"`
	} `json:"response"`
}

type request struct {
	Method      string      `json:"method"`
	URL         string      `json:"url"`
	HTTPVersion string      `json:"httpVersion"`
	Headers     []nameValue `json:"headers"`
	PostData    *struct {
		MimeType string `json:"mimeType"`
		Text     string `json:"text"`
		Encoding string `json:"encoding"`
		Params   []struct {
			Name        string `json:"name"`
			Value       string `json:"value"`
			FileName    string `json:"fileName"`
			ContentType string `json:"contentType"`
		} `json:"params"`
	} `json:"postData"`
	HeadersSize *number `json:"headersSize"`
	BodySize    *number `json:"bodySize"`
}

func headers(nv []nameValue) flow.Headers {
	h := make(flow.Headers, 0, len(nv))
	for _, x := range nv {
		if strings.HasPrefix(x.Name, ":") { // HTTP/2 pseudo-headers some producers list
			continue
		}
		h = append(h, flow.Header{Name: x.Name, Value: x.Value})
	}
	return h
}

func proto(v string) string {
	switch strings.ToLower(v) {
	case "h2", "http/2", "http/2.0":
		return "HTTP/2.0"
	case "h3", "http/3", "http/3.0", "h3-29":
		return "HTTP/3.0"
	case "", "unknown":
		return ""
	}
	return strings.ToUpper(v)
}

func body(data []byte, max int) flow.Body {
	b := flow.Body{Size: int64(len(data)), Data: data}
	if len(data) > max {
		b.Data, b.Truncated = data[:max], true
	}
	return b
}

func (e *entry) flow(maxBody int) (*flow.Flow, error) {
	u, err := url.Parse(e.Request.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("request URL %q is not absolute", e.Request.URL)
	}
	f := &flow.Flow{Host: u.Hostname()}
	if t, err := time.Parse(time.RFC3339Nano, e.Started); err == nil {
		f.Start = t
		if e.Time > 0 {
			f.End = t.Add(time.Duration(float64(e.Time) * float64(time.Millisecond)))
		} else {
			f.End = t
		}
	} else if e.Started != "" {
		f.Note(flow.NoteMalformed, "startedDateTime "+strconv.Quote(e.Started)+" is not a date")
	}
	port := u.Port()
	switch u.Scheme {
	case "https", "wss":
		f.Transport = flow.TransportHTTPS
		f.TLS = &flow.TLSInfo{SNI: u.Hostname(), Decrypted: true}
		if port == "" {
			port = "443"
		}
	default:
		f.Transport = flow.TransportHTTP
		if port == "" {
			port = "80"
		}
	}
	p, _ := strconv.ParseUint(port, 10, 16)
	if ip, err := netip.ParseAddr(strings.Trim(e.ServerIP, "[]")); err == nil {
		f.Server.Addr = ip.Unmap()
	}
	f.Server.Port = uint16(p)

	req := &flow.Request{Method: e.Request.Method, URL: e.Request.URL, Proto: proto(e.Request.HTTPVersion), Headers: headers(e.Request.Headers)}
	if pd := e.Request.PostData; pd != nil {
		data, err := postBody(pd.Text, pd.Encoding, pd.MimeType, pd.Params)
		if err != nil {
			f.Note(flow.NoteMalformed, "request body: "+err.Error())
		}
		req.Body = body(data, maxBody)
	}
	f.Request = req
	f.BytesUp = sizeOr(e.Request.HeadersSize, headerBytes(req.Method+" "+req.URL+" "+req.Proto, req.Headers)) +
		sizeOr(e.Request.BodySize, req.Body.Size)

	if r := e.Response; r != nil && r.Status > 0 {
		resp := &flow.Response{Status: int(r.Status), Reason: r.StatusText, Proto: proto(r.HTTPVersion), Headers: headers(r.Headers)}
		if c := r.Content; c != nil && c.Text != "" {
			data := []byte(c.Text)
			if strings.EqualFold(c.Encoding, "base64") {
				if data, err = base64.StdEncoding.DecodeString(c.Text); err != nil {
					f.Note(flow.NoteMalformed, "response content is marked base64 but does not decode")
					data = []byte(c.Text)
				}
			}
			resp.Body = body(data, maxBody)
			if c.Size > number(len(data)) {
				resp.Body.Size = int64(c.Size)
				resp.Body.Incomplete = true
			}
		}
		f.Response = resp
		down := sizeOr(r.TransferSize, -1)
		if down < 0 {
			down = sizeOr(r.HeadersSize, headerBytes(resp.Proto+" "+strconv.Itoa(resp.Status)+" "+resp.Reason, resp.Headers)) +
				sizeOr(r.BodySize, resp.Body.Size)
		}
		f.BytesDown = down
	}
	return f, nil
}

// sizeOr returns a size the producer recorded, or fallback when it recorded
// none (absent, null or -1, as HAR allows).
func sizeOr(n *number, fallback int64) int64 {
	if n == nil || *n < 0 {
		return fallback
	}
	return int64(*n)
}

// headerBytes estimates the wire size of a start line and headers in HTTP/1.1.
func headerBytes(start string, h flow.Headers) int64 {
	n := int64(len(start) + 4)
	for _, x := range h {
		n += int64(len(x.Name) + len(x.Value) + 4)
	}
	return n
}

// postBody rebuilds a request body from postData: the text (base64 when the
// producer says so), or, when only params were recorded, a form or multipart body.
func postBody(text, encoding, mimeType string, params []struct {
	Name        string `json:"name"`
	Value       string `json:"value"`
	FileName    string `json:"fileName"`
	ContentType string `json:"contentType"`
}) ([]byte, error) {
	if text != "" {
		if strings.EqualFold(encoding, "base64") {
			b, err := base64.StdEncoding.DecodeString(text)
			if err != nil {
				return []byte(text), errors.New("marked base64 but does not decode; kept as text")
			}
			return b, nil
		}
		return []byte(text), nil
	}
	if len(params) == 0 {
		return nil, nil
	}
	if strings.HasPrefix(strings.ToLower(mimeType), "multipart/") {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		if _, ps, ok := strings.Cut(mimeType, "boundary="); ok {
			_ = w.SetBoundary(strings.Trim(strings.TrimSpace(ps), `"`))
		}
		for _, p := range params {
			var pw io.Writer
			var err error
			if p.FileName != "" {
				pw, err = w.CreateFormFile(p.Name, p.FileName)
			} else {
				pw, err = w.CreateFormField(p.Name)
			}
			if err != nil {
				return nil, err
			}
			_, _ = io.WriteString(pw, p.Value)
		}
		_ = w.Close()
		return buf.Bytes(), nil
	}
	vals := make([]string, 0, len(params))
	for _, p := range params {
		vals = append(vals, url.QueryEscape(p.Name)+"="+url.QueryEscape(p.Value))
	}
	return []byte(strings.Join(vals, "&")), nil
}
