package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newSessionsCmd(stdout io.Writer) *cobra.Command {
	var db string
	var ff filterFlags
	cmd := &cobra.Command{
		Use:   "sessions [--db FILE|URL] [--sensor NAME] [--device NAME]",
		Short: "List the sessions kept in a phonehome database",
		Long: `List the capture sessions kept in a phonehome database (made by run or
analyze --db), oldest first, with the sensor that captured each and the
devices it saw. Without --db it reads $PHONEHOME_DB, else the database run
writes by default: phonehome.db in $XDG_DATA_HOME/phonehome, or
~/.local/share/phonehome.`,
		Example: `  phonehome sessions
  phonehome sessions --db phone.db
  phonehome sessions --db postgres://phonehome@db.example/phonehome --device anna-phone`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := ff.filter("sessions")
			if err != nil {
				return err
			}
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
			fmt.Fprintln(tw, "NAME\tSTARTED\tFLOWS\tSENSOR\tDEVICES\tSOURCE")
			for _, s := range all {
				if !f.Session(s) {
					continue
				}
				devices := strings.Join(s.Devices, " ")
				if len(s.Devices) > 4 {
					devices = fmt.Sprintf("%s and %d more", strings.Join(s.Devices[:4], " "), len(s.Devices)-4)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.Name, s.Started.Format("2006-01-02 15:04:05"), s.Flows, dash(s.Sensor), dash(devices), s.Source)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "the database run or analyze --db wrote: "+dbHelp+"the one run writes, "+defaultDBHelp+")")
	ff.add(cmd.Flags(), false)
	return cmd
}

// dash is s, or "-" for nothing, so that columns stay aligned.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
