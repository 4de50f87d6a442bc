package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"phonehome/internal/flow"
	"phonehome/internal/report"
	"phonehome/internal/store"
)

func newReportCmd(stdout io.Writer) *cobra.Command {
	var db, session, format, output string
	var flows bool
	cmd := &cobra.Command{
		Use:   "report --db FILE [--session NAME]",
		Short: "Show what a stored session sent, and to whom",
		Long: `Show a session kept in a phonehome database (by run, or by analyze --db) the
way analyze shows a capture file: per destination, then what each received.
Without --session the newest session is shown; phonehome sessions lists them.`,
		Example: `  phonehome report --db phone.db
  phonehome report --db phone.db --session before-opt-out --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if db == "" {
				return fmt.Errorf("report: name the database with --db FILE (run and analyze --db write one)")
			}
			if format != "text" && format != "json" {
				return fmt.Errorf("report: unknown --format %q: use text or json", format)
			}
			if _, err := os.Stat(db); err != nil {
				return fmt.Errorf("report: %w", err)
			}
			ctx := cmd.Context()
			st, err := store.Open(ctx, db, store.Options{})
			if err != nil {
				return err
			}
			defer st.Close()
			sess, err := st.SessionByName(ctx, session)
			if err != nil {
				return fmt.Errorf("report: %w", err)
			}
			out := stdout
			if output != "" {
				fh, err := os.Create(output)
				if err != nil {
					return fmt.Errorf("report: %w", err)
				}
				defer fh.Close()
				out = fh
			}
			bw := bufio.NewWriter(out)
			defer bw.Flush()
			summary := report.NewSummary()
			jw := report.NewJSONWriter(bw)
			err = st.Flows(ctx, sess, func(f *flow.Flow) error {
				switch {
				case format == "json":
					if err := jw.Flow(f); err != nil {
						return err
					}
					return jw.Findings(f)
				case flows:
					return report.FlowLine(bw, f)
				}
				summary.Add(f)
				return nil
			})
			if err != nil {
				return err
			}
			if format == "text" && !flows {
				fmt.Fprintf(bw, "session %q (%s, %s)\n", sess.Name, sess.Source, sess.Started.Format("2006-01-02 15:04:05"))
				if err := summary.WriteText(bw); err != nil {
					return err
				}
			}
			return bw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&db, "db", "", "the SQLite file written by run or analyze --db")
	f.StringVar(&session, "session", "", "the session to show (default: the newest)")
	f.StringVar(&format, "format", "text", "output format: text or json (JSON Lines, as analyze writes)")
	f.BoolVar(&flows, "flows", false, "list every flow instead of the table of destinations")
	f.StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	return cmd
}
