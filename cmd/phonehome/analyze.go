package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nyaruka/phonenumbers"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"phonehome/internal/capture"
	"phonehome/internal/decode"
	"phonehome/internal/detect"
	"phonehome/internal/detect/pii"
	"phonehome/internal/detect/trackers"
	"phonehome/internal/example"
	"phonehome/internal/flow"
	"phonehome/internal/pipeline"
	"phonehome/internal/report"
	"phonehome/internal/store"
)

type analyzeOpts struct {
	example    bool
	flows      bool
	format     string
	db         string
	session    string
	sensor     string
	maxBody    int
	output     string
	noProgress bool
	trackers   []string
	region     string
	noDetect   bool
	profile    string
	evidence   string
}

func newAnalyzeCmd(stdout, stderr io.Writer) *cobra.Command {
	var o analyzeOpts
	cmd := &cobra.Command{
		Use:   "analyze [flags] FILE...",
		Short: "Read capture files and show who was told what",
		Long: `Read capture files and show every conversation in them: per destination host,
the owner, requests, bytes sent and received, methods, whether it was cleartext
or encrypted, and when it was first and last seen; then, per destination, the
personal data it received (identifiers, location, contacts, visited pages,
searches, installed apps, device details), where in the request it sat, and
which app sent it. Each request is decoded layer by layer (forms, JSON,
compression, base64, protobuf, JWT, ...) before it is searched.

Formats are recognised by content, not by name:
  pcap, pcapng   tcpdump, Wireshark/dumpcap, tshark, PCAPdroid (Ethernet, Linux
                 cooked SLL/SLL2, raw IP, loopback; IPv4 and IPv6). HTTP/1.x is
                 reassembled from TCP; DNS names encrypted connections; TLS and
                 QUIC show the server name (SNI).
  HAR            browser developer tools, Charles, Fiddler, mitmproxy, WebPageTest
  mitmproxy      flow files written by mitmdump -w (mitmproxy 4 to 11)

A damaged file is reported with the packet or entry where it broke; everything
read before that point is still shown.`,
		Example: `  phonehome analyze --example
  phonehome analyze phone.pcapng
  phonehome analyze --flows session.har
  phonehome analyze --format json capture.pcap > flows.jsonl
  phonehome analyze --format html -o report.html --evidence evidence/ phone.pcapng
  phonehome analyze --db phone.db --session before-opt-out phone.pcapng
  phonehome analyze --profile me.yaml --trackers easyprivacy.txt phone.pcapng`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !o.example {
				return errors.New("analyze: name at least one capture file, or use --example (see phonehome analyze --help)")
			}
			return analyze(cmd, o, args, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.example, "example", false, "analyze the example phone session that ships with phonehome")
	f.BoolVar(&o.flows, "flows", false, "list every flow instead of the table of destinations")
	f.StringVar(&o.format, "format", "text", formatHelp+"; JSON has a line per flow, one per finding and a last \"report\" line")
	f.StringVar(&o.evidence, "evidence", "", "also write an evidence pack into this directory: per party, the requests that carried personal data as HAR, with SHA-256 sums")
	f.StringVar(&o.db, "db", "", "keep the session in this database: a SQLite file or a postgres:// URL (default: $"+store.EnvDB+", else in memory, gone on exit)")
	f.StringVar(&o.sensor, "sensor", "", "name of this machine in the session it stores (default: the host name)")
	f.StringVar(&o.session, "session", "", "name of the session in the store (default: the file names and the time)")
	f.IntVar(&o.maxBody, "max-body", 1<<20, "bytes of each request and response body kept for analysis and storage")
	f.StringVarP(&o.output, "output", "o", "", "write the result to this file instead of standard output")
	f.BoolVar(&o.noProgress, "no-progress", false, "do not show a progress bar for large files")
	f.BoolVar(&o.noDetect, "no-detect", false, "only list who talked to whom: skip decoding and finding personal data (much faster on very large captures)")
	f.StringArrayVar(&o.trackers, "trackers", nil, "also load this tracker list (hosts file, domain list, Adblock/EasyPrivacy, Disconnect services.json, DuckDuckGo tds.json, Exodus export); repeatable")
	f.StringVar(&o.profile, "profile", "", "YAML or JSON file of your own values (imei, android_id, phone_number, email, contact, location, ...) to find in every form: encoded, hashed, reformatted")
	f.StringVar(&o.region, "phone-region", "", "two-letter country (e.g. IN, DE) for reading phone numbers written without a country code")
	return cmd
}

func analyze(cmd *cobra.Command, o analyzeOpts, files []string, stdout, stderr io.Writer) error {
	if err := checkFormat("analyze", o.format); err != nil {
		return err
	}
	if o.maxBody < 0 {
		return fmt.Errorf("analyze: --max-body must be 0 or more bytes")
	}
	if o.evidence != "" && o.noDetect {
		return fmt.Errorf("analyze: --evidence needs detection: drop --no-detect")
	}
	out, closeOut, err := output("analyze", o.output, stdout)
	if err != nil {
		return err
	}
	defer closeOut()
	color := colorful(out)
	bw := bufio.NewWriterSize(out, 256<<10) // one write per flow line would be one syscall per flow
	defer bw.Flush()
	out = bw
	ctx := cmd.Context()

	var lines timeOrdered
	var engine *detect.Engine
	if !o.noDetect {
		if engine, err = newEngine(o, stderr); err != nil {
			return err
		}
	}
	summary := report.NewSummary()
	summary.NoSchema = o.noDetect
	addEvidence, finishEvidence, err := evidenceSink(o.evidence, stderr)
	if err != nil {
		return err
	}
	popts := pipeline.Options{Engine: engine, Summary: summary}
	if engine != nil {
		// analyze inspects and summarises the flows itself, on two
		// goroutines (below); the pipeline stores them and feeds the sinks
		popts.Engine, popts.Summary = nil, nil
	}
	if o.db = dbOrEnv(o.db); o.db != "" {
		name := o.session
		if name == "" {
			name = defaultSessionName(o, files)
		}
		st, sess, err := openSession(ctx, o.db, name, strings.Join(sourceNames(o, files), ", "), o.sensor, o.maxBody)
		if err != nil {
			return err
		}
		defer st.Close()
		popts.Store = st.Writer(ctx, sess)
		fmt.Fprintf(stderr, "storing session %q in %s\n", name, st.Where())
	} else {
		nextID := int64(0)
		popts.Sinks = append(popts.Sinks, func(f *flow.Flow) error { nextID++; f.ID = nextID; return nil })
	}
	popts.Sinks = append(popts.Sinks, addEvidence)
	var jw *report.JSONWriter
	var earlier laterFindings
	switch {
	case o.format == "json":
		jw = report.NewJSONWriter(out)
		popts.Sinks = append(popts.Sinks, jw.Flow, jw.Findings)
		if engine != nil {
			// a value that comes back is an identifier in its first request
			// too: those findings are written once the capture is read
			engine.Earlier = earlier.add
			popts.Sinks = append(popts.Sinks, earlier.ids.add)
		}
	case o.flows && len(sourceNames(o, files)) > 1:
		// several files: their flows are listed in time order across them
		popts.Sinks = append(popts.Sinks, lines.add)
	case o.flows:
		popts.Sinks = append(popts.Sinks, func(f *flow.Flow) error { return report.FlowLine(out, f) })
	}
	// With detection, reading and analysis run on two goroutines, so that a
	// capture is read on one core while the flows read before are decoded,
	// detected and reported on the other. The flows go over in order, so
	// what is learned across them is what one goroutine would learn; the
	// reader keeps none of their buffers (not Transient), as the analysis
	// holds them later.
	pl := pipeline.New(popts)
	var failed []readFailure
	sources, flows := 0, 0
	// readAll reads every capture, handing its flows to emit; stop says
	// when to give up after a file.
	readAll := func(opts capture.Options, emit func(*flow.Flow), stop func() bool) {
		if o.example {
			for _, ex := range example.Files() {
				sources++
				res, err := capture.Read(bytes.NewReader(ex.Data), ex.Name, opts, emit)
				flows += res.Flows
				if err != nil {
					failed = append(failed, readFailure{err, res.Flows})
				}
			}
		}
		for _, path := range files {
			if stop() {
				break
			}
			sources++
			p := newProgress(stderr, path, o.noProgress)
			opts.Progress = p.update
			res, err := capture.ReadFile(path, opts, emit)
			p.finish()
			flows += res.Flows
			if err != nil {
				failed = append(failed, readFailure{err, res.Flows})
			}
			if res.Pcap != nil && (res.Pcap.MissingBytes > 0 || res.Pcap.Malformed > 0) {
				fmt.Fprintf(stderr, "%s: %s\n", path, res.Pcap)
			}
		}
	}
	if o.noDetect {
		// Listing who talked to whom costs less than reading: one goroutine,
		// and every stage is done with a flow's bytes when it returns (the
		// store's driver copies what it binds), so readers reuse their buffers.
		readAll(capture.Options{MaxBody: o.maxBody, Transient: true}, pl.Done, func() bool { return pl.Err() != nil })
	} else {
		ho := newHandoff()
		go func() {
			defer ho.close()
			readAll(capture.Options{MaxBody: o.maxBody}, ho.put, ho.stopped)
		}()
		// Decoding and the recognisers depend on no other flow: they run on
		// their own goroutine, a few flows ahead (each holds a decoder until
		// it is finished); what depends on the flows before (values that
		// come back, the summary) and the sinks run here, in order.
		prepared := make(chan []*detect.Prepared, preparedBatches)
		go func() {
			defer close(prepared)
			for batch := range ho.batches {
				for len(batch) > 0 {
					n := min(len(batch), preparedFlows)
					ps := make([]*detect.Prepared, n)
					for i, f := range batch[:n] {
						ps[i] = engine.Prepare(f)
					}
					prepared <- ps
					batch = batch[n:]
				}
			}
		}()
		for ps := range prepared {
			for _, p := range ps {
				if pl.Err() != nil {
					engine.Finish(p, nil) // gives its decoder back
					continue
				}
				engine.Finish(p, summary.AddDecoded)
				p.Flow().Inspected = true
				pl.Done(p.Flow())
			}
			if pl.Err() != nil {
				ho.stop() // a sink failed: the reader stops at the end of its file
			}
		}
	}
	if err := pl.Close(); err != nil {
		return err
	}
	if err := earlier.write(jw); err != nil {
		return err
	}
	if err := lines.write(out); err != nil {
		return err
	}
	if err := finishEvidence(); err != nil {
		return err
	}
	// When every file failed before giving a flow there is nothing to report:
	// an empty table would only contradict the errors.
	nothingRead := len(failed) == sources && flows == 0
	if !nothingRead && (!o.flows || o.format != "text") {
		if err := writeReport(out, o.format, summary, "", "", color); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("analyze: write output: %w", err)
	}
	for _, f := range failed {
		fmt.Fprintln(stderr, "phonehome:", f.message("analyze"))
	}
	if len(failed) > 0 {
		return exitError{1}
	}
	return nil
}

// laterFindings are findings of flows that only a later flow revealed (the
// first request of a value that came back), kept to be written at the end,
// with the IDs of the last flows to name their flows by.
type laterFindings struct {
	heads []*flow.Flow
	ids   idRing
}

func (l *laterFindings) add(first *flow.Flow, x flow.Finding) {
	h := *first
	h.Findings = []flow.Finding{x}
	l.heads = append(l.heads, &h)
}

// write writes the findings as JSON lines of their flows; a flow too far back
// to be named by its ID is left out.
func (l *laterFindings) write(jw *report.JSONWriter) error {
	if jw == nil {
		return nil
	}
	for _, h := range l.heads {
		if h.ID = l.ids.get(h.Source, h.Seq); h.ID != 0 {
			if err := jw.Findings(h); err != nil {
				return err
			}
		}
	}
	return nil
}

// idRing remembers the IDs of the last idRingSize flows by source and sequence.
type idRing struct {
	keys []idKey
	ids  map[idKey]int64
	next int
}

type idKey struct {
	source string
	seq    int
}

const idRingSize = 1 << 16

func (r *idRing) add(f *flow.Flow) error {
	if r.ids == nil {
		r.ids, r.keys = map[idKey]int64{}, make([]idKey, idRingSize)
	}
	k := idKey{f.Source, f.Seq}
	if old := r.keys[r.next]; old != (idKey{}) {
		delete(r.ids, old)
	}
	r.keys[r.next], r.ids[k] = k, f.ID
	r.next = (r.next + 1) % idRingSize
	return nil
}

func (r *idRing) get(source string, seq int) int64 { return r.ids[idKey{source, seq}] }

// handoff carries flows from the reader's goroutine to the analysis, in
// batches, bounded in bytes: at most handoffBatches batches of about
// handoffBytes wait, so a fast reader never holds more than that ahead.
type handoff struct {
	batches chan []*flow.Flow
	batch   []*flow.Flow
	size    int
	halt    atomic.Bool
}

// Flows prepared for detection ahead of the analysis: each holds a decoder.
const (
	preparedBatches = 4
	preparedFlows   = 16
)

const (
	handoffBatches = 8
	handoffFlows   = 256
	handoffBytes   = 4 << 20
)

func newHandoff() *handoff {
	return &handoff{batches: make(chan []*flow.Flow, handoffBatches)}
}

// put is the readers' emit: it queues f and sends a full batch.
func (h *handoff) put(f *flow.Flow) {
	if h.halt.Load() {
		return
	}
	h.batch = append(h.batch, f)
	if r := f.Request; r != nil {
		h.size += len(r.Body.Data) + len(r.URL)
	}
	if r := f.Response; r != nil {
		h.size += len(r.Body.Data)
	}
	if len(h.batch) >= handoffFlows || h.size >= handoffBytes {
		h.send()
	}
}

func (h *handoff) send() {
	if len(h.batch) > 0 {
		h.batches <- h.batch
	}
	h.batch, h.size = nil, 0
}

// close sends what is left; the analysis ends when it has read it.
func (h *handoff) close() {
	h.send()
	close(h.batches)
}

// stop makes the reader drop what it reads from now on.
func (h *handoff) stop() { h.halt.Store(true) }

func (h *handoff) stopped() bool { return h.halt.Load() }

// readFailure is a capture that could not be read to its end.
type readFailure struct {
	err   error
	flows int // flows read before the error
}

// message says, once, what went wrong with the file and what of it is used,
// for the command cmd: analyze shows the flows read before the damage, diff
// compares them.
func (f readFailure) message(cmd string) string {
	name, cause := "", f.err.Error()
	var ce *capture.Error
	if errors.As(f.err, &ce) {
		name, cause = ce.Name, ce.Err.Error()
		if errors.Is(ce.Err, capture.ErrDirectory) {
			if cmd == "analyze" {
				cause += ": name the files in it, e.g. phonehome analyze " + captureGlob(ce.Name)
			} else {
				cause += ": name one capture file for each session"
			}
		}
	}
	shown := "shown"
	if cmd == "diff" {
		shown = "compared"
	}
	switch {
	case name == "":
		return cause
	case f.flows == 0:
		return fmt.Sprintf("nothing could be read from %s: %s", name, cause)
	case f.flows == 1:
		return fmt.Sprintf("read %s: %s; the flow read before the damage is %s", name, cause, shown)
	}
	return fmt.Sprintf("read %s: %s; the %d flows read before the damage are %s", name, cause, f.flows, shown)
}

// captureExts are the names capture files usually have.
var captureExts = []string{".pcapng", ".pcap", ".cap", ".har", ".flows", ".mitm"}

// captureGlob is a shell pattern for the capture files in dir: by the
// extension most of them have (as written: a shell's * is case-sensitive),
// *.pcap when none has one of captureExts.
func captureGlob(dir string) string {
	ext, most := ".pcap", 0
	if entries, err := os.ReadDir(dir); err == nil {
		count := map[string]int{}
		for _, e := range entries {
			if x := filepath.Ext(e.Name()); !e.IsDir() && slices.Contains(captureExts, strings.ToLower(x)) {
				count[x]++
			}
		}
		for x, n := range count {
			if n > most || n == most && x < ext {
				ext, most = x, n
			}
		}
	}
	return shellQuote(filepath.Clean(dir)) + string(filepath.Separator) + "*" + ext
}

// shellQuote quotes s for a POSIX shell when it holds anything but the
// characters of a plain path.
func shellQuote(s string) string {
	plain := func(r rune) bool {
		return r == '/' || r == '.' || r == '-' || r == '_' || r == '+' || r == ',' || r == ':' || r == '@' ||
			r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
	}
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !plain(r) }) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// openSession opens (or creates) the store at path and starts a session in
// it by the sensor ("" the host name).
func openSession(ctx context.Context, path, name, source, sensor string, maxBody int) (*store.Store, store.Session, error) {
	st, err := store.Open(ctx, path, store.Options{MaxBody: maxBody, Sensor: sensor})
	if err != nil {
		return nil, store.Session{}, err
	}
	sess, err := st.CreateSession(ctx, name, time.Now(), source)
	if err != nil {
		st.Close()
		return nil, store.Session{}, err
	}
	return st, sess, nil
}

// newEngine builds the detection engine with the built-in knowledge and the
// tracker lists the user named.
func newEngine(o analyzeOpts, stderr io.Writer) (*detect.Engine, error) {
	region, err := phoneRegion(o.region)
	if err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	kb := trackers.Builtin()
	for _, path := range o.trackers {
		fh, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("analyze: --trackers: %w", err)
		}
		n, err := kb.Load(fh, filepath.Base(path))
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("analyze: --trackers %s: %w", path, err) // err says what was expected
		}
		fmt.Fprintf(stderr, "loaded %d tracker domains from %s\n", n, path)
	}
	d := pii.New(region)
	if o.profile != "" {
		b, err := os.ReadFile(o.profile)
		if err != nil {
			return nil, fmt.Errorf("analyze: --profile: %w", err)
		}
		prof, err := pii.ParseProfile(b)
		if err != nil {
			return nil, fmt.Errorf("analyze: --profile %s: %w", o.profile, err)
		}
		if d.Known, err = pii.NewKnown(prof, d.Region); err != nil {
			return nil, fmt.Errorf("analyze: --profile %s: %w", o.profile, err)
		}
		fmt.Fprintf(stderr, "looking for %d forms of the values in %s\n", d.Known.Patterns(), o.profile)
	}
	return detect.New(kb, d, decode.Limits{}), nil
}

// phoneRegion checks a --phone-region against the regions the phone number
// library has metadata for: with any other, numbers without a country code
// would silently never parse.
func phoneRegion(r string) (string, error) {
	if r == "" {
		return "", nil
	}
	if len(r) != 2 {
		return "", fmt.Errorf("--phone-region takes a two-letter country code such as IN or DE, not %q", r)
	}
	up := strings.ToUpper(r)
	known := phonenumbers.GetSupportedRegions()
	if known[up] {
		return up, nil
	}
	codes := slices.Sorted(maps.Keys(known))
	hint := ""
	if up == "UK" {
		hint = "the United Kingdom is GB; "
	}
	return "", fmt.Errorf("--phone-region %q is not a region the phone number library knows: %suse one of its %d two-letter country codes: %s",
		r, hint, len(codes), strings.Join(codes, " "))
}

func sourceNames(o analyzeOpts, files []string) []string {
	var names []string
	if o.example {
		for _, ex := range example.Files() {
			names = append(names, ex.Name)
		}
	}
	return append(names, files...)
}

func defaultSessionName(o analyzeOpts, files []string) string {
	names := sourceNames(o, files)
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return strings.Join(names, "+") + " " + time.Now().Format("2006-01-02 15:04:05")
}

// progress draws a bar on a terminal for files that take over a second.
type progress struct {
	w       io.Writer
	name    string
	size    int64
	start   time.Time
	bar     *progressbar.ProgressBar
	enabled bool
}

func newProgress(w io.Writer, path string, off bool) *progress {
	p := &progress{w: w, name: filepath.Base(path), start: time.Now()}
	if fh, ok := w.(*os.File); ok && !off && term.IsTerminal(int(fh.Fd())) {
		if fi, err := os.Stat(path); err == nil {
			p.size, p.enabled = fi.Size(), true
		}
	}
	return p
}

func (p *progress) update(n int64) {
	if !p.enabled {
		return
	}
	if p.bar == nil {
		if time.Since(p.start) < time.Second {
			return
		}
		p.bar = progressbar.NewOptions64(p.size,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.name),
			progressbar.OptionShowBytes(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
	}
	_ = p.bar.Set64(n)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// timeOrdered keeps flow lines to write them in the order the flows began,
// across files (each file's reader hands them over in its own order).
type timeOrdered struct {
	lines []timedLine
	buf   bytes.Buffer
}

type timedLine struct {
	at   time.Time
	line string
}

func (t *timeOrdered) add(f *flow.Flow) error {
	t.buf.Reset()
	if err := report.FlowLine(&t.buf, f); err != nil {
		return err
	}
	t.lines = append(t.lines, timedLine{f.Start, t.buf.String()})
	return nil
}

func (t *timeOrdered) write(w io.Writer) error {
	slices.SortStableFunc(t.lines, func(a, b timedLine) int { return a.at.Compare(b.at) })
	for _, l := range t.lines {
		if _, err := io.WriteString(w, l.line); err != nil {
			return err
		}
	}
	t.lines = nil
	return nil
}
