package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"phonehome/internal/flow"
	"phonehome/internal/pipeline"
	"phonehome/internal/report"
	"phonehome/internal/store"
)

func newReportCmd(stdout, stderr io.Writer) *cobra.Command {
	var db, format, outPath, evidence string
	var sessions []string
	var all, flows bool
	var ff filterFlags
	cmd := &cobra.Command{
		Use:   "report [--db FILE|URL] [--session NAME]...",
		Short: "Show what a stored session sent, and to whom",
		Long: `Show a session kept in a phonehome database (by run, or by analyze --db) the
way analyze shows a capture file: per destination, then what each received.
Without --session the newest session is shown; phonehome sessions lists them.
Without --db it reads $PHONEHOME_DB, else the database run writes by default:
phonehome.db in $XDG_DATA_HOME/phonehome, or ~/.local/share/phonehome.

A report can span sessions: name several with --session, or choose them with
--all, --sensor, --device, --since and --until ("everything this phone sent
in May, from every sensor": --device anna-phone --since 2026-05-01 --until
2026-06-01).`,
		Example: `  phonehome report
  phonehome report --db phone.db --session before-opt-out --format json
  phonehome report --db phone.db --format html -o report.html --evidence evidence/
  phonehome report --db postgres://phonehome@db.example/phonehome --device anna-phone --since 2026-05-01 --until 2026-06-01`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat("report", format); err != nil {
				return err
			}
			ctx := cmd.Context()
			filter, err := ff.filter("report")
			if err != nil {
				return err
			}
			st, chosen, err := openChosen(ctx, "report", db, sessions, all, filter)
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
			err = pipeline.ReadAhead(ctx, func(emit func(*flow.Flow) error) error { return st.FlowsOf(ctx, chosen, filter, readOpts, emit) },
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
				name, source := sessionsLabel(chosen, filter)
				if err := writeReport(bw, format, summary, name, source, color); err != nil {
					return err
				}
			}
			return bw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&db, "db", "", "the database run or analyze --db wrote: "+dbHelp+"the one run writes, "+defaultDBHelp+")")
	f.StringArrayVar(&sessions, "session", nil, "the session to show (repeatable: one report of them all; default: the newest)")
	f.BoolVar(&all, "all", false, "report every session (those --sensor, --device, --since and --until choose)")
	ff.add(f, true)
	f.StringVar(&format, "format", "text", formatHelp)
	f.StringVar(&evidence, "evidence", "", "also write an evidence pack into this directory: per party, the requests that carried personal data as HAR, with SHA-256 sums")
	f.BoolVar(&flows, "flows", false, "list every flow instead of the table of destinations")
	f.StringVarP(&outPath, "output", "o", "", "write to this file instead of standard output")
	return cmd
}

// defaultDBHelp says where defaultDB puts the database, for the help of the
// commands that read it.
const defaultDBHelp = "phonehome.db in $XDG_DATA_HOME/phonehome, or ~/.local/share/phonehome"

// openDB opens the existing database named with --db or, when db is empty,
// the one run writes by default. It never creates one: a reading command
// given a wrong name would otherwise make an empty database and list nothing.
func openDB(ctx context.Context, cmd, db string) (*store.Store, error) {
	db = dbOrEnv(db)
	if store.IsURL(db) {
		st, err := store.Open(ctx, db, store.Options{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		return st, nil
	}
	named := db != ""
	if !named {
		var err error
		if db, err = defaultDB(); err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
	}
	if _, err := os.Stat(db); err != nil {
		switch {
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%s: %w", cmd, err)
		case named:
			return nil, fmt.Errorf("%s: no database at %s: name the file that phonehome run or analyze --db wrote", cmd, db)
		}
		return nil, fmt.Errorf("%s: no database at %s, where phonehome run stores its sessions: run it first, or name another database with --db FILE", cmd, db)
	}
	// reading needs no write access: an archived evidence file, a database
	// owned by another user
	return store.Open(ctx, db, store.Options{ReadOnly: true})
}

// openChosen opens an existing store (as openDB does) and chooses the
// sessions to report: those named, else with --all or a filter every one
// the filter chooses, else the newest.
func openChosen(ctx context.Context, cmd, db string, names []string, all bool, f store.Filter) (*store.Store, []store.Session, error) {
	if len(names) == 0 && !all && f.IsZero() {
		st, sess, err := openStored(ctx, cmd, db, "")
		if err != nil {
			return nil, nil, err
		}
		return st, []store.Session{sess}, nil
	}
	st, err := openDB(ctx, cmd, db)
	if err != nil {
		return nil, nil, err
	}
	chosen, err := st.Select(ctx, names, f)
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return st, chosen, nil
}

// openStored opens an existing store (as openDB does) and finds a session in
// it (the newest when name is empty).
func openStored(ctx context.Context, cmd, db, name string) (*store.Store, store.Session, error) {
	st, err := openDB(ctx, cmd, db)
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
