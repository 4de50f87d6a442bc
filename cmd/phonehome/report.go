package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"phonehome/internal/flow"
	"phonehome/internal/pipeline"
	"phonehome/internal/report"
	"phonehome/internal/store"
)

func newReportCmd(stdout, stderr io.Writer) *cobra.Command {
	var db, session, format, outPath, evidence string
	var flows bool
	cmd := &cobra.Command{
		Use:   "report --db FILE [--session NAME]",
		Short: "Show what a stored session sent, and to whom",
		Long: `Show a session kept in a phonehome database (by run, or by analyze --db) the
way analyze shows a capture file: per destination, then what each received.
Without --session the newest session is shown; phonehome sessions lists them.`,
		Example: `  phonehome report --db phone.db
  phonehome report --db phone.db --session before-opt-out --format json
  phonehome report --db phone.db --format html -o report.html --evidence evidence/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if db == "" {
				return fmt.Errorf("report: name the database with --db FILE (run and analyze --db write one)")
			}
			if err := checkFormat("report", format); err != nil {
				return err
			}
			ctx := cmd.Context()
			st, sess, err := openStored(ctx, "report", db, session)
			if err != nil {
				return err
			}
			defer st.Close()
			out, closeOut, err := output("report", outPath, stdout)
			if err != nil {
				return err
			}
			defer closeOut()
			color := colorful(out)
			bw := bufio.NewWriterSize(out, 256<<10)
			summary := report.NewSummary()
			jw := report.NewJSONWriter(bw)
			addEvidence, finishEvidence, err := evidenceSink(evidence, stderr)
			if err != nil {
				return err
			}
			// a report needs no response content; JSON lines and evidence do
			readOpts := store.ReadOptions{Lean: format != "json" && !flows && evidence == ""}
			popts := pipeline.Options{Summary: summary}
			switch {
			case format == "json":
				popts.Sinks = append(popts.Sinks, jw.Flow, jw.Findings)
			case flows:
				popts.Sinks = append(popts.Sinks, func(f *flow.Flow) error { return report.FlowLine(bw, f) })
			}
			popts.Sinks = append(popts.Sinks, addEvidence)
			pl := pipeline.New(popts) // findings are stored with the flows: nothing to detect again
			err = pipeline.ReadAhead(ctx, func(emit func(*flow.Flow) error) error { return st.FlowsWith(ctx, sess, readOpts, emit) },
				func(f *flow.Flow) error { pl.Done(f); return pl.Err() })
			if err != nil {
				return err
			}
			if err := pl.Close(); err != nil {
				return err
			}
			if err := finishEvidence(); err != nil {
				return err
			}
			if !flows || format != "text" {
				source := fmt.Sprintf("%s, %s", sess.Source, sess.Started.Format("2006-01-02 15:04:05"))
				if err := writeReport(bw, format, summary, sess.Name, source, color); err != nil {
					return err
				}
			}
			return bw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&db, "db", "", "the SQLite file written by run or analyze --db")
	f.StringVar(&session, "session", "", "the session to show (default: the newest)")
	f.StringVar(&format, "format", "text", formatHelp)
	f.StringVar(&evidence, "evidence", "", "also write an evidence pack into this directory: per party, the requests that carried personal data as HAR, with SHA-256 sums")
	f.BoolVar(&flows, "flows", false, "list every flow instead of the table of destinations")
	f.StringVarP(&outPath, "output", "o", "", "write to this file instead of standard output")
	return cmd
}

// openStored opens an existing store and finds a session in it (the newest
// when name is empty).
func openStored(ctx context.Context, cmd, db, name string) (*store.Store, store.Session, error) {
	if _, err := os.Stat(db); err != nil {
		return nil, store.Session{}, fmt.Errorf("%s: %w", cmd, err)
	}
	st, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		return nil, store.Session{}, err
	}
	sess, err := st.SessionByName(ctx, name)
	if err != nil {
		st.Close()
		return nil, store.Session{}, fmt.Errorf("%s: %w", cmd, err)
	}
	return st, sess, nil
}
