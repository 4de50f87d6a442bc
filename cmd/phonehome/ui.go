package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"phonehome/internal/certs"
	"phonehome/internal/flow"
	"phonehome/internal/store"
	"phonehome/internal/web"
)

func newUICmd(stdout, stderr io.Writer) *cobra.Command {
	var db, addr string
	cmd := &cobra.Command{
		Use:   "ui [--db FILE|URL] [--ui ADDR]",
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
			us := newUIStore(st, true)
			srv, err := web.New(web.Options{Addr: addr, Store: us})
			if err != nil {
				return fmt.Errorf("ui: %w", err)
			}
			defer srv.Close()
			fmt.Fprintf(stderr, "phonehome UI on %s (database %s); Ctrl-C stops it\n", srv.URL(), st.Where())
			return srv.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&db, "db", "", "the database run or analyze --db wrote: "+dbHelp+"the one run writes, "+defaultDBHelp+")")
	f.StringVar(&addr, "ui", "127.0.0.1:8081", "address to serve the UI on; anywhere but loopback it requires the token it prints")
	return cmd
}

// startUI serves the web UI of a run (--ui), unless it is off. A UI that
// cannot listen on the default address is said and skipped: the capture
// matters more; one asked for explicitly must listen.
func startUI(ctx context.Context, o runOpts, st *store.Store, sess store.Session, ca *certs.CA, opts web.Options, own *ownServices, stderr io.Writer) (func(), error) {
	if o.ui == "off" || o.ui == "" {
		return func() {}, nil
	}
	if pem, err := os.ReadFile(ca.CertPath()); err == nil {
		opts.CAPEM, opts.CAFingerprint = pem, ca.Fingerprint()
	}
	us := newUIStore(st, false)
	opts.Addr, opts.Store = o.ui, us
	if o.lan.target != "" {
		opts.Devices = append(opts.Devices, web.KnownDevice{Name: o.lan.target, Addr: o.lan.target, How: "ARP spoofing (--spoof)"})
	}
	opts.Logger = slog.New(slog.NewTextHandler(stderr, nil)) // rule changes and a live index that fell behind
	opts.LiveSession = web.Session{ID: sess.ID, Name: sess.Name, Started: sess.Started, Source: sess.Source}
	srv, err := web.New(opts)
	if err != nil {
		if !o.uiSet {
			fmt.Fprintf(stderr, "warning: %v; the capture goes on without it\n", err)
			return func() {}, nil
		}
		return nil, fmt.Errorf("run: --ui: %w; or --ui off to run without it", err)
	}
	own.add(srv.Addr())
	fmt.Fprintf(stderr, "web UI on %s\n", srv.URL())
	stop := runPart(ctx, srv.Run, srv.Close, "web UI", stderr)
	return stop, nil
}

// uiStore is the web UI's view of the store, whatever its engine.
type uiStore struct {
	st   *store.Store
	ro   bool
	mu   sync.Mutex
	byID map[int64]store.Session // sessions as last listed: listing counts every session's flows
}

func newUIStore(st *store.Store, readOnly bool) *uiStore {
	return &uiStore{st: st, ro: readOnly, byID: map[int64]store.Session{}}
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

// session finds a session by id, listing the sessions again only for an id
// not seen yet (a flow's page or a marker must not count every flow).
func (u *uiStore) session(ctx context.Context, id int64) (store.Session, error) {
	u.mu.Lock()
	s, ok := u.byID[id]
	u.mu.Unlock()
	if ok {
		return s, nil
	}
	all, err := u.st.Sessions(ctx)
	if err != nil {
		return store.Session{}, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range all {
		u.byID[s.ID] = s
	}
	if s, ok := u.byID[id]; ok {
		return s, nil
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

func (u *uiStore) Flow(ctx context.Context, session, id int64) (*flow.Flow, error) {
	s, err := u.session(ctx, session)
	if err != nil {
		return nil, err
	}
	f, err := u.st.Flow(ctx, s, id)
	if errors.Is(err, store.ErrNoFlow) {
		return nil, web.ErrNoFlow
	}
	return f, err
}

func (u *uiStore) Markers(ctx context.Context, session int64) ([]web.Marker, error) {
	s, err := u.session(ctx, session)
	if err != nil {
		return nil, err
	}
	return u.st.Markers(ctx, s)
}

func (u *uiStore) AddMarker(ctx context.Context, m web.Marker) (web.Marker, error) {
	if u.ro {
		return web.Marker{}, web.ErrReadOnly
	}
	got, err := u.st.AddMarker(ctx, m)
	if errors.Is(err, store.ErrReadOnly) {
		return web.Marker{}, web.ErrReadOnly
	}
	return got, err
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
