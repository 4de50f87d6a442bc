package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"phonehome/internal/flow"
	"phonehome/internal/report"
)

// formats are the report formats analyze, report and diff write.
var formats = []string{"text", "markdown", "html", "json"}

const formatHelp = "output format: text (colour on a terminal), markdown, html (one self-contained file) or json (JSON Lines)"

func checkFormat(cmd, format string) error {
	for _, f := range formats {
		if f == format {
			return nil
		}
	}
	if format == "md" {
		return nil
	}
	return fmt.Errorf("%s: unknown --format %q: use %s", cmd, format, strings.Join(formats, ", "))
}

// colorful reports whether text written to w should be coloured: a terminal,
// and NO_COLOR unset.
func colorful(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && os.Getenv("NO_COLOR") == "" && term.IsTerminal(int(f.Fd()))
}

// output opens -o FILE, or returns stdout; close closes what was opened.
func output(cmd, path string, stdout io.Writer) (w io.Writer, closeFn func() error, err error) {
	if path == "" {
		return stdout, func() error { return nil }, nil
	}
	fh, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w (check that the directory exists and is writable)", cmd, err)
	}
	return fh, fh.Close, nil
}

// writeReport writes the summary's report in a format; JSON gets the final
// "report" line (flow and finding lines were written as flows passed).
func writeReport(w io.Writer, format string, s *report.Summary, session, source string, color bool) error {
	if format == "text" {
		if session != "" {
			fmt.Fprintf(w, "session %q (%s)\n", session, source)
		}
		return s.WriteTerminal(w, color)
	}
	doc := s.Doc()
	doc.Session, doc.Source = session, source
	switch format {
	case "markdown", "md":
		return report.WriteMarkdown(w, doc)
	case "html":
		return report.WriteHTML(w, doc)
	}
	return report.WriteJSON(w, doc)
}

// evidenceSink returns a flow sink writing an evidence pack into dir, and the
// function that finishes it; with dir empty both do nothing.
func evidenceSink(dir string, stderr io.Writer) (func(*flow.Flow) error, func() error, error) {
	if dir == "" {
		return func(*flow.Flow) error { return nil }, func() error { return nil }, nil
	}
	ev, err := report.NewEvidence(dir, "phonehome "+buildVersion())
	if err != nil {
		return nil, nil, err
	}
	finish := func() error {
		m, err := ev.Close(time.Now())
		if err != nil {
			return err
		}
		entries := 0
		for _, f := range m.Files {
			entries += f.Entries
		}
		fmt.Fprintf(stderr, "evidence: %d requests that carried personal data, in %d HAR file(s), in %s (manifest.json, SHA256SUMS)\n",
			entries, len(m.Files), dir)
		return nil
	}
	return ev.Add, finish, nil
}
