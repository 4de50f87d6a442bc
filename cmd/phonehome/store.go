package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"phonehome/internal/store"
)

// dbHelp says what --db takes, for every command that has it.
const dbHelp = "a SQLite file or a postgres:// URL (default: $" + store.EnvDB + ", else "

// dbOrEnv is db, or when it is empty the database $PHONEHOME_DB names.
func dbOrEnv(db string) string {
	if db == "" {
		return os.Getenv(store.EnvDB)
	}
	return db
}

// filterFlags are the flags that choose sessions and flows by sensor,
// device and time.
type filterFlags struct {
	sensor, device, since, until string
}

func (ff *filterFlags) add(f *pflag.FlagSet, times bool) {
	f.StringVar(&ff.sensor, "sensor", "", "only sessions captured by this sensor (see phonehome sessions)")
	f.StringVar(&ff.device, "device", "", "only flows of this device: its name (a WireGuard peer, a spoof target) or its address")
	if times {
		f.StringVar(&ff.since, "since", "", "only flows that started at or after this time (2026-05-01, or 2026-05-01T09:00:00Z)")
		f.StringVar(&ff.until, "until", "", "only flows that started before this time (same forms as --since)")
	}
}

// filter is what the flags choose.
func (ff *filterFlags) filter(cmd string) (store.Filter, error) {
	f := store.Filter{Sensor: ff.sensor, Device: ff.device}
	var err error
	if f.Since, err = parseWhen(cmd, "--since", ff.since); err != nil {
		return f, err
	}
	if f.Until, err = parseWhen(cmd, "--until", ff.until); err != nil {
		return f, err
	}
	return f, nil
}

func parseWhen(cmd, flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s: %s %q: write a day as 2026-05-01 or a time as 2026-05-01T09:00:00Z", cmd, flag, s)
}

func newStoreCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Move sessions between databases (SQLite files, PostgreSQL)",
		Long: `Work on phonehome databases as a whole. A database is a SQLite file or a
PostgreSQL server's database named by a postgres:// URL, which several
sensors (phonehome run on different machines, --sensor NAME) can write to at
once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newStoreCopyCmd(stdout, stderr))
	return cmd
}

func newStoreCopyCmd(stdout, stderr io.Writer) *cobra.Command {
	var sessions []string
	var ff filterFlags
	cmd := &cobra.Command{
		Use:   "copy SRC DST [--session NAME]...",
		Short: "Copy sessions from one database into another",
		Long: `Copy sessions, with every flow, from the database SRC into DST: a field
laptop's SQLite file into the team's PostgreSQL, or back. SRC and DST are
SQLite files or postgres:// URLs; DST is created (a file) or migrated (a
database) if needed. Without --session every session is copied (those the
--sensor and --device filters choose, if given).

Copying is idempotent: a session DST already holds whole is skipped, one an
interrupted copy left half-written is copied again, and a different session
of the same name in DST is an error. A session copied reports the same as
the original.`,
		Example: `  phonehome store copy laptop.db postgres://phonehome@db.example/phonehome
  phonehome store copy phone.db postgres://phonehome@db.example/phonehome --session before-opt-out
  phonehome store copy postgres://phonehome@db.example/phonehome backup.db --sensor office-ap`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("store copy: name the database to copy from and the one to copy into (SRC DST); got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			f, err := ff.filter("store copy")
			if err != nil {
				return err
			}
			if args[0] == args[1] {
				return fmt.Errorf("store copy: SRC and DST are the same database (%s): name another DST", store.Redact(args[0]))
			}
			src, err := openDB(ctx, "store copy", args[0])
			if err != nil {
				return err
			}
			defer src.Close()
			chosen, err := src.Select(ctx, sessions, f)
			if err != nil {
				return fmt.Errorf("store copy: %s: %w", src.Where(), err)
			}
			dst, err := store.Open(ctx, args[1], store.Options{})
			if err != nil {
				return fmt.Errorf("store copy: %w", err)
			}
			defer dst.Close()
			var copied, skipped int
			err = store.Copy(ctx, src, dst, chosen, func(c store.Copied) {
				if c.Already {
					skipped++
					fmt.Fprintf(stderr, "session %q: already in %s (%d flows)\n", c.Session.Name, dst.Where(), c.Flows)
					return
				}
				copied++
				fmt.Fprintf(stderr, "session %q: %d flows copied\n", c.Session.Name, c.Flows)
			})
			if err != nil {
				return fmt.Errorf("store copy: %w", err)
			}
			fmt.Fprintf(stdout, "%d sessions copied into %s, %d already there\n", copied, dst.Where(), skipped)
			return dst.Close()
		},
	}
	cmd.Flags().StringArrayVar(&sessions, "session", nil, "copy this session (repeatable; default: every session)")
	cmd.Flags().StringVar(&ff.sensor, "sensor", "", "copy only the sessions captured by this sensor")
	return cmd
}

// sessionsLabel names the sessions a report covers, for its heading.
func sessionsLabel(sessions []store.Session, f store.Filter) (name, source string) {
	if len(sessions) == 1 && f.IsZero() {
		s := sessions[0]
		return s.Name, fmt.Sprintf("%s, %s", s.Source, s.Started.Format("2006-01-02 15:04:05"))
	}
	names := make([]string, len(sessions))
	for i, s := range sessions {
		names[i] = s.Name
	}
	name = strings.Join(names, " + ")
	if len(names) > 3 {
		name = fmt.Sprintf("%s + %d more", strings.Join(names[:3], " + "), len(names)-3)
	}
	first, last := sessions[0].Started, sessions[len(sessions)-1].Started
	source = fmt.Sprintf("%d sessions, %s to %s", len(sessions), first.Format("2006-01-02 15:04"), last.Format("2006-01-02 15:04"))
	if len(sessions) == 1 {
		source = fmt.Sprintf("%s, %s", sessions[0].Source, first.Format("2006-01-02 15:04:05"))
	}
	if s := f.String(); s != "" {
		source += "; " + s
	}
	return name, source
}
