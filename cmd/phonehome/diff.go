package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"phonehome/internal/capture"
	"phonehome/internal/example"
	"phonehome/internal/flow"
	"phonehome/internal/report"
	"phonehome/internal/store"
)

func newDiffCmd(stdout, stderr io.Writer) *cobra.Command {
	var o analyzeOpts
	var db string
	var ff filterFlags
	cmd := &cobra.Command{
		Use:   "diff [flags] BEFORE AFTER",
		Short: "Compare two sessions: what stopped, what is new, what is still sent",
		Long: `Compare a session recorded before a change (switching off personalised ads,
usage statistics, sync, an app's consent) with one recorded after it, and say
what went away, what is new, and what is still sent: the same kind of data to
the same destination. Identifiers that appear in both sessions were not reset.

BEFORE and AFTER are session names in the database given with --db (a SQLite
file or a postgres:// URL; see phonehome sessions), or, without --db, capture
files (pcap, pcapng, HAR, mitmproxy flows) analysed as analyze would. With
--device, only that device's flows of each session are compared. --example compares the example
session with the same phone the next day, after its owner opted out.`,
		Example: `  phonehome diff --example
  phonehome diff --db phone.db before-opt-out after-opt-out
  phonehome diff --format markdown -o diff.md before.pcapng after.pcapng`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.example {
				if len(args) != 0 {
					return errors.New("diff: --example compares the two example sessions; drop the file names")
				}
			} else if len(args) != 2 {
				return fmt.Errorf("diff: name two sessions (with --db) or two capture files, before then after; got %d", len(args))
			}
			switch o.format {
			case "text", "markdown", "md", "json":
			default:
				return fmt.Errorf("diff: unknown --format %q: use text, markdown or json", o.format)
			}
			ctx := cmd.Context()
			var before, after *report.Doc
			var err error
			switch {
			case o.example:
				before, err = summarizeFiles(o, "example (before)", exampleInputs(example.Files()), stderr)
				if err == nil {
					after, err = summarizeFiles(o, "example, next day (after opting out)", exampleInputs(example.After()), stderr)
				}
			case db != "":
				var f store.Filter
				if f, err = ff.filter("diff"); err != nil {
					return err
				}
				before, err = summarizeStored(ctx, db, args[0], f)
				if err == nil {
					after, err = summarizeStored(ctx, db, args[1], f)
				}
			default:
				before, err = summarizeFiles(o, args[0], []input{{name: args[0]}}, stderr)
				if err == nil {
					after, err = summarizeFiles(o, args[1], []input{{name: args[1]}}, stderr)
				}
			}
			if err != nil {
				return err
			}
			out, closeOut, err := output("diff", o.output, stdout)
			if err != nil {
				return err
			}
			defer closeOut()
			bw := bufio.NewWriter(out)
			d := report.Diff(before, after)
			if o.format == "json" {
				err = report.WriteDiffJSON(bw, d)
			} else {
				err = report.WriteDiffText(bw, d, o.format != "text")
			}
			if err != nil {
				return err
			}
			return bw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&db, "db", "", "compare two sessions of this database (written by run or analyze --db): a SQLite file or a postgres:// URL")
	ff.add(f, false)
	f.BoolVar(&o.example, "example", false, "compare the example session with the same phone after opting out")
	f.StringVar(&o.format, "format", "text", "output format: text, markdown or json")
	f.StringVarP(&o.output, "output", "o", "", "write to this file instead of standard output")
	f.StringArrayVar(&o.trackers, "trackers", nil, "also load this tracker list when reading capture files; repeatable")
	f.StringVar(&o.profile, "profile", "", "YAML or JSON file of your own values to find when reading capture files")
	f.StringVar(&o.region, "phone-region", "", "two-letter country for phone numbers written without a country code")
	f.IntVar(&o.maxBody, "max-body", 1<<20, "bytes of each body kept for analysis when reading capture files")
	return cmd
}

// input is a capture to read: a file by name, or bytes in memory.
type input struct {
	name string
	data []byte
}

func exampleInputs(fs []example.File) []input {
	out := make([]input, 0, len(fs))
	for _, f := range fs {
		out = append(out, input{name: f.Name, data: f.Data})
	}
	return out
}

// summarizeFiles reads captures through the detection engine into a report.
func summarizeFiles(o analyzeOpts, label string, ins []input, stderr io.Writer) (*report.Doc, error) {
	engine, err := newEngine(o, io.Discard)
	if err != nil {
		return nil, err
	}
	summary := report.NewSummary()
	emit := func(f *flow.Flow) {
		engine.Inspect(f)
		summary.Add(f)
	}
	opts := capture.Options{MaxBody: o.maxBody, Transient: true}
	var failed []string
	for _, in := range ins {
		var res capture.Result
		if in.data != nil {
			res, err = capture.Read(bytes.NewReader(in.data), in.name, opts, emit)
		} else {
			res, err = capture.ReadFile(in.name, opts, emit)
		}
		if err != nil {
			failed = append(failed, readFailure{err, res.Flows}.message("diff"))
		}
	}
	if len(failed) > 0 {
		if summary.Flows() == 0 {
			return nil, fmt.Errorf("diff: %s", strings.Join(failed, "; "))
		}
		for _, m := range failed {
			fmt.Fprintln(stderr, "phonehome:", m)
		}
	}
	doc := summary.Doc()
	doc.Session = label
	return doc, nil
}

// summarizeStored reads a stored session into a report.
func summarizeStored(ctx context.Context, db, name string, filter store.Filter) (*report.Doc, error) {
	st, chosen, err := openChosen(ctx, "diff", db, []string{name}, false, filter)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	sess := chosen[0]
	summary := report.NewSummary()
	if err := st.FlowsOf(ctx, chosen, filter, store.ReadOptions{}, func(f *flow.Flow) error { summary.Add(f); return nil }); err != nil {
		return nil, err
	}
	doc := summary.Doc()
	doc.Session = fmt.Sprintf("%s (%s, %s)", sess.Name, sess.Source, sess.Started.Format("2006-01-02 15:04"))
	if !filter.IsZero() {
		doc.Session = fmt.Sprintf("%s (%s, %s; %s)", sess.Name, sess.Source, sess.Started.Format("2006-01-02 15:04"), filter)
	}
	return doc, nil
}
