package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newSessionsCmd(stdout io.Writer) *cobra.Command {
	var db string
	cmd := &cobra.Command{
		Use:   "sessions [--db FILE]",
		Short: "List the sessions kept in a phonehome database",
		Long: `List the capture sessions kept in a phonehome database (made by run or
analyze --db), oldest first. Without --db it reads the database run writes by
default: phonehome.db in $XDG_DATA_HOME/phonehome, or ~/.local/share/phonehome.`,
		Example: `  phonehome sessions
  phonehome sessions --db phone.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openDB(cmd.Context(), "sessions", db)
			if err != nil {
				return err
			}
			defer st.Close()
			all, err := st.Sessions(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTARTED\tFLOWS\tSOURCE")
			for _, s := range all {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Name, s.Started.Format("2006-01-02 15:04:05"), s.Flows, s.Source)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "the SQLite file written by run or analyze --db (default: the one run writes, "+defaultDBHelp+")")
	return cmd
}
