package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"phonehome/internal/certs"
	"phonehome/internal/flow"
	"phonehome/internal/store"
	"phonehome/internal/web"
)

func newUICmd(stdout, stderr io.Writer) *cobra.Command {
	var db, addr string
	cmd := &cobra.Command{
		Use:   "ui [--db FILE] [--ui ADDR]",
		Short: "Browse stored sessions in the web UI, with no capture running",
		Long: `Serve phonehome's web UI on a stored database: the sessions phonehome run
and analyze --db kept, each with its parties, devices, identifiers, markers
and flows, diffs of two sessions, the HTML report and the evidence pack.
Nothing is captured and the database is only read (markers are set while
phonehome run captures; it serves the same UI, live, with --ui).

The UI listens on loopback unless told otherwise; on any other address a
token, printed at start, is required.`,
		Example: `  phonehome ui
  phonehome ui --db phone.db --ui 127.0.0.1:9000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := openDB(ctx, "ui", db)
			if err != nil {
				return err
			}
			defer st.Close()
			path := db
			if path == "" {
				if path, err = defaultDB(); err != nil {
					return err
				}
			}
			us, err := newUIStore(ctx, st, path, true)
			if err != nil {
				return err
			}
			defer us.Close()
			srv, err := web.New(web.Options{Addr: addr, Store: us})
			if err != nil {
				return fmt.Errorf("ui: %w", err)
			}
			defer srv.Close()
			fmt.Fprintf(stderr, "phonehome UI on %s (database %s); Ctrl-C stops it\n", srv.URL(), path)
			return srv.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&db, "db", "", "the SQLite file written by run or analyze --db (default: the one run writes, "+defaultDBHelp+")")
	f.StringVar(&addr, "ui", "127.0.0.1:8081", "address to serve the UI on; anywhere but loopback it requires the token it prints")
	return cmd
}

// startUI serves the web UI of a run (--ui), unless it is off. A UI that
// cannot listen on the default address is said and skipped: the capture
// matters more; one asked for explicitly must listen.
func startUI(ctx context.Context, o runOpts, st *store.Store, sess store.Session, ca *certs.CA, opts web.Options, stderr io.Writer) (func(), error) {
	if o.ui == "off" || o.ui == "" {
		return func() {}, nil
	}
	if pem, err := os.ReadFile(ca.CertPath()); err == nil {
		opts.CAPEM, opts.CAFingerprint = pem, ca.Fingerprint()
	}
	us, err := newUIStore(ctx, st, o.db, false)
	if err != nil {
		return nil, err
	}
	opts.Addr, opts.Store = o.ui, us
	if o.lan.target != "" {
		opts.Devices = append(opts.Devices, web.KnownDevice{Name: o.lan.target, Addr: o.lan.target, How: "ARP spoofing (--spoof)"})
	}
	opts.Logger = slog.New(slog.NewTextHandler(stderr, nil)) // rule changes and a live index that fell behind
	opts.LiveSession = web.Session{ID: sess.ID, Name: sess.Name, Started: sess.Started, Source: sess.Source}
	srv, err := web.New(opts)
	if err != nil {
		us.Close()
		if !o.uiSet {
			fmt.Fprintf(stderr, "warning: %v; the capture goes on without it\n", err)
			return func() {}, nil
		}
		return nil, fmt.Errorf("run: --ui: %w; or --ui off to run without it", err)
	}
	fmt.Fprintf(stderr, "web UI on %s\n", srv.URL())
	stop := runPart(ctx, srv.Run, srv.Close, "web UI", stderr)
	return func() { stop(); us.Close() }, nil
}

// uiStore is the web UI's view of today's SQLite store. The store has no
// reads by id and no markers, so: a flow's page reads the session until
// that flow (the newest are held by the UI and never read back), and
// markers live in the markers table through a connection of their own.
type uiStore struct {
	st *store.Store
	db *sql.DB // markers; nil when the database has no markers table
	ro bool
}

func newUIStore(ctx context.Context, st *store.Store, path string, readOnly bool) (*uiStore, error) {
	us := &uiStore{st: st, ro: readOnly}
	params := "_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)"
	if readOnly {
		params = "mode=ro&" + params
	}
	db, err := sql.Open("sqlite", "file:"+strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(path))+"?"+params)
	if err != nil {
		return nil, fmt.Errorf("open the markers of %s: %w", path, err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'markers'").Scan(&n); err != nil || n == 0 {
		db.Close() // an older database, read as it is: no markers
		return us, nil
	}
	us.db = db
	return us, nil
}

func (u *uiStore) Close() error {
	if u.db != nil {
		return u.db.Close()
	}
	return nil
}

func (u *uiStore) Sessions(ctx context.Context) ([]web.Session, error) {
	all, err := u.st.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]web.Session, len(all))
	for i, s := range all {
		out[i] = web.Session{ID: s.ID, Name: s.Name, Started: s.Started, Source: s.Source, Flows: s.Flows}
	}
	return out, nil
}

func (u *uiStore) session(ctx context.Context, id int64) (store.Session, error) {
	all, err := u.st.Sessions(ctx)
	if err != nil {
		return store.Session{}, err
	}
	for _, s := range all {
		if s.ID == id {
			return s, nil
		}
	}
	return store.Session{}, fmt.Errorf("%w: id %d", store.ErrNoSession, id)
}

func (u *uiStore) Flows(ctx context.Context, id int64, full bool, fn func(*flow.Flow) error) error {
	s, err := u.session(ctx, id)
	if err != nil {
		return err
	}
	return u.st.FlowsWith(ctx, s, store.ReadOptions{Lean: !full}, fn)
}

// errFound stops a read at the flow looked for.
var errFound = errors.New("found")

func (u *uiStore) Flow(ctx context.Context, session, id int64) (*flow.Flow, error) {
	s, err := u.session(ctx, session)
	if err != nil {
		return nil, err
	}
	var found *flow.Flow
	err = u.st.Flows(ctx, s, func(f *flow.Flow) error {
		if f.ID == id {
			found = f
			return errFound
		}
		return nil
	})
	switch {
	case found != nil:
		return found, nil
	case err != nil:
		return nil, err
	}
	return nil, web.ErrNoFlow
}

func (u *uiStore) Markers(ctx context.Context, session int64) ([]web.Marker, error) {
	if u.db == nil {
		return nil, nil
	}
	rows, err := u.db.QueryContext(ctx, "SELECT id, at_ns, label, note FROM markers WHERE session_id = ? ORDER BY at_ns, id", session)
	if err != nil {
		return nil, fmt.Errorf("read markers: %w", err)
	}
	defer rows.Close()
	var out []web.Marker
	for rows.Next() {
		m := web.Marker{Session: session}
		var at int64
		if err := rows.Scan(&m.ID, &at, &m.Label, &m.Note); err != nil {
			return nil, fmt.Errorf("read markers: %w", err)
		}
		m.Time = time.Unix(0, at)
		out = append(out, m)
	}
	return out, rows.Err()
}

func (u *uiStore) AddMarker(ctx context.Context, m web.Marker) (web.Marker, error) {
	if u.ro || u.db == nil {
		return web.Marker{}, web.ErrReadOnly
	}
	res, err := u.db.ExecContext(ctx, "INSERT INTO markers(session_id, at_ns, label, note) VALUES(?, ?, ?, ?)", m.Session, m.Time.UnixNano(), m.Label, m.Note)
	if err != nil {
		return web.Marker{}, fmt.Errorf("store the marker: %w", err)
	}
	m.ID, _ = res.LastInsertId()
	return m, nil
}

// proxyAddrFor is the address a phone points its proxy at, for the set-up
// page: the listening address, or with a wildcard, said as such.
func proxyAddrFor(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil || !ap.Addr().IsUnspecified() {
		return a.String()
	}
	return fmt.Sprintf("this computer's LAN address, port %d", ap.Port())
}
