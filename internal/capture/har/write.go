package har

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"unicode/utf8"

	"phonehome/internal/flow"
)

// The HAR 1.2 document phonehome writes. Fields HAR requires are always
// present; sizes phonehome does not know are -1, as the format says.
type (
	outNV struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	outPost struct {
		MimeType string `json:"mimeType"`
		Text     string `json:"text"`
		Encoding string `json:"encoding,omitempty"`
	}
	outContent struct {
		Size     int64  `json:"size"`
		MimeType string `json:"mimeType"`
		Text     string `json:"text,omitempty"`
		Encoding string `json:"encoding,omitempty"`
	}
	outRequest struct {
		Method      string   `json:"method"`
		URL         string   `json:"url"`
		HTTPVersion string   `json:"httpVersion"`
		Cookies     []outNV  `json:"cookies"`
		Headers     []outNV  `json:"headers"`
		QueryString []outNV  `json:"queryString"`
		PostData    *outPost `json:"postData,omitempty"`
		HeadersSize int      `json:"headersSize"`
		BodySize    int64    `json:"bodySize"`
	}
	outResponse struct {
		Status      int        `json:"status"`
		StatusText  string     `json:"statusText"`
		HTTPVersion string     `json:"httpVersion"`
		Cookies     []outNV    `json:"cookies"`
		Headers     []outNV    `json:"headers"`
		Content     outContent `json:"content"`
		RedirectURL string     `json:"redirectURL"`
		HeadersSize int        `json:"headersSize"`
		BodySize    int64      `json:"bodySize"`
	}
	outEntry struct {
		Started  string      `json:"startedDateTime"`
		Time     float64     `json:"time"`
		Request  outRequest  `json:"request"`
		Response outResponse `json:"response"`
		Cache    struct{}    `json:"cache"`
		Timings  struct {
			Send    float64 `json:"send"`
			Wait    float64 `json:"wait"`
			Receive float64 `json:"receive"`
		} `json:"timings"`
		ServerIP string `json:"serverIPAddress,omitempty"`
	}
)

func outHeaders(h flow.Headers) []outNV {
	out := make([]outNV, len(h))
	for i, x := range h {
		out[i] = outNV{x.Name, x.Value}
	}
	return out
}

// text returns a body as HAR text, base64-encoded when it is not UTF-8.
func text(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// Write writes flows that carry an HTTP request as a HAR 1.2 document; other
// flows (DNS, undecrypted TLS) have no place in HAR and are skipped.
func Write(w io.Writer, creator string, flows []*flow.Flow) error {
	hw, err := NewWriter(w, creator)
	if err != nil {
		return err
	}
	for _, f := range flows {
		if err := hw.Add(f); err != nil {
			return err
		}
	}
	return hw.Close()
}

// Writer writes a HAR 1.2 document one entry at a time, so that any number of
// flows can be written with bounded memory.
type Writer struct {
	w       io.Writer
	entries int
	buf     bytes.Buffer
}

// NewWriter starts a HAR document.
func NewWriter(w io.Writer, creator string) (*Writer, error) {
	head, _ := json.Marshal(map[string]string{"name": creator, "version": "1"})
	if _, err := fmt.Fprintf(w, "{\n  \"log\": {\n    \"version\": \"1.2\",\n    \"creator\": %s,\n    \"entries\": [", head); err != nil {
		return nil, fmt.Errorf("write HAR: %w", err)
	}
	return &Writer{w: w}, nil
}

// Entries returns how many entries were written.
func (hw *Writer) Entries() int { return hw.entries }

// Add writes f as an entry; a flow without an HTTP request is skipped.
func (hw *Writer) Add(f *flow.Flow) error {
	e, ok := entryOf(f)
	if !ok {
		return nil
	}
	hw.buf.Reset()
	enc := json.NewEncoder(&hw.buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("      ", "  ")
	if err := enc.Encode(e); err != nil {
		return fmt.Errorf("write HAR: %w", err)
	}
	b := bytes.TrimSuffix(hw.buf.Bytes(), []byte("\n"))
	sep := ",\n      "
	if hw.entries == 0 {
		sep = "\n      "
	}
	hw.entries++
	if _, err := io.WriteString(hw.w, sep); err != nil {
		return fmt.Errorf("write HAR: %w", err)
	}
	if _, err := hw.w.Write(b); err != nil {
		return fmt.Errorf("write HAR: %w", err)
	}
	return nil
}

// Close ends the document.
func (hw *Writer) Close() error {
	end := "]\n  }\n}\n"
	if hw.entries > 0 {
		end = "\n    ]\n  }\n}\n"
	}
	if _, err := io.WriteString(hw.w, end); err != nil {
		return fmt.Errorf("write HAR: %w", err)
	}
	return nil
}

// entryOf converts a flow with an HTTP request to a HAR entry.
func entryOf(f *flow.Flow) (outEntry, bool) {
	if f.Request == nil {
		return outEntry{}, false
	}
	r := f.Request
	e := outEntry{Started: f.Start.UTC().Format("2006-01-02T15:04:05.000Z"), Time: float64(f.End.Sub(f.Start).Microseconds()) / 1000}
	if e.Time < 0 {
		e.Time = 0
	}
	if f.Server.Addr.IsValid() {
		e.ServerIP = f.Server.Addr.String()
	}
	e.Request = outRequest{Method: r.Method, URL: r.URL, HTTPVersion: r.Proto, Cookies: []outNV{}, Headers: outHeaders(r.Headers),
		QueryString: []outNV{}, HeadersSize: -1, BodySize: r.Body.Size}
	if u, err := url.Parse(r.URL); err == nil {
		for _, kv := range strings.Split(u.RawQuery, "&") {
			if kv == "" {
				continue
			}
			k, v, _ := strings.Cut(kv, "=")
			k, _ = url.QueryUnescape(k)
			v, _ = url.QueryUnescape(v)
			e.Request.QueryString = append(e.Request.QueryString, outNV{k, v})
		}
	}
	if len(r.Body.Data) > 0 {
		t, enc := text(r.Body.Data)
		e.Request.PostData = &outPost{MimeType: r.Headers.Get("Content-Type"), Text: t, Encoding: enc}
	}
	if resp := f.Response; resp != nil {
		e.Response = outResponse{Status: resp.Status, StatusText: resp.Reason, HTTPVersion: resp.Proto, Cookies: []outNV{},
			Headers: outHeaders(resp.Headers), HeadersSize: -1, BodySize: resp.Body.Size,
			Content: outContent{Size: resp.Body.Size, MimeType: resp.Headers.Get("Content-Type")}}
		e.Response.Content.Text, e.Response.Content.Encoding = text(resp.Body.Data)
	} else {
		// HAR has no way to say "no response"; status 0 is what browsers write for a failed request.
		e.Response = outResponse{Cookies: []outNV{}, Headers: []outNV{}, HeadersSize: -1, BodySize: -1}
	}
	return e, true
}
