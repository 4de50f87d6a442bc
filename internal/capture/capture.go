// Package capture turns capture files into flows. It recognises the format by
// content, not by file name, and hands each file to its reader: pcap/pcapng,
// HAR, or a mitmproxy flow file. Every reader streams and emits flows as it
// completes them, so what was read before a damaged spot is never lost.
package capture

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"unicode/utf8"

	"phonehome/internal/capture/har"
	"phonehome/internal/capture/mitm"
	"phonehome/internal/capture/pcap"
	"phonehome/internal/flow"
)

// Format names a capture file format.
type Format string

const (
	FormatPcap      Format = "pcap"
	FormatHAR       Format = "har"
	FormatMitmproxy Format = "mitmproxy"
)

// Options configure every reader.
type Options struct {
	MaxBody int // bytes of each body kept for analysis (0: 1 MiB)
	// Transient promises that emit copies whatever it keeps of a flow's body
	// bytes, so readers may reuse their buffers once it returns.
	Transient bool
	// Progress, if set, is called now and then with bytes read so far.
	Progress func(read int64)
}

// Result says what a file held.
type Result struct {
	Format Format
	Flows  int
	Pcap   *pcap.Stats // packet-level counters, for pcap and pcapng
}

// ErrUnknownFormat is wrapped by Detect when no reader recognises a file.
var ErrUnknownFormat = errors.New("unknown capture format")

// ErrDirectory is wrapped by ReadFile when the path names a directory.
var ErrDirectory = errors.New("it is a directory, not a capture file")

// Error is what Read and ReadFile return: the file, and what went wrong with
// it. Err wraps *pcap.FormatError and the HAR and mitmproxy readers' errors
// (where the file broke), ErrUnknownFormat, ErrDirectory, or the error of the
// file system (fs.ErrNotExist, fs.ErrPermission). Flows read before the error
// have been emitted.
type Error struct {
	Name string // the file as it was named to Read or ReadFile
	Err  error
}

func (e *Error) Error() string { return "read " + e.Name + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Detect names the format of a file from its first bytes.
func Detect(head []byte) (Format, error) {
	if pcap.Sniff(head) {
		return FormatPcap, nil
	}
	trimmed := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n")
	if har.Sniff(trimmed) {
		return FormatHAR, nil
	}
	if mitm.Sniff(head) {
		return FormatMitmproxy, nil
	}
	return "", fmt.Errorf("%w: not pcap, pcapng, HAR or a mitmproxy flow file (it starts with %s)", ErrUnknownFormat, describe(head))
}

func describe(head []byte) string {
	if len(head) == 0 {
		return "nothing: the file is empty"
	}
	h := head[:min(len(head), 16)]
	if utf8.Valid(h) {
		return strconv.Quote(string(h))
	}
	return fmt.Sprintf("bytes % x", h)
}

// Read reads one capture stream. name labels its flows and its errors.
func Read(r io.Reader, name string, opts Options, emit func(*flow.Flow)) (Result, error) {
	if opts.Progress != nil {
		r = &counter{r: r, fn: opts.Progress}
	}
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(512)
	if len(head) == 0 && err != nil && err != io.EOF {
		return Result{}, &Error{name, err} // not an empty file: one that cannot be read
	}
	format, err := Detect(head)
	if err != nil {
		return Result{}, &Error{name, err}
	}
	res := Result{Format: format}
	count := func(f *flow.Flow) {
		res.Flows++
		emit(f)
	}
	switch format {
	case FormatPcap:
		var st pcap.Stats
		st, err = pcap.Read(br, name, pcap.Options{MaxBody: opts.MaxBody, ReuseBodies: opts.Transient}, count)
		res.Pcap = &st
	case FormatHAR:
		err = har.Read(br, name, har.Options{MaxBody: opts.MaxBody}, count)
	case FormatMitmproxy:
		err = mitm.Read(br, name, mitm.Options{MaxBody: opts.MaxBody}, count)
	}
	if err != nil {
		return res, &Error{name, err}
	}
	return res, nil
}

// ReadFile opens and reads one capture file.
func ReadFile(path string, opts Options, emit func(*flow.Flow)) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, &Error{path, pathCause(err)}
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return Result{}, &Error{path, ErrDirectory}
	}
	return Read(f, path, opts, emit)
}

// pathCause drops the operation and path from a file system error, which
// Error names already: "read x.pcap: no such file or directory".
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// counter reports how far a reader has got.
type counter struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.fn(c.n)
	return n, err
}
