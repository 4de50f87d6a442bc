// Package store keeps sessions and their flows, so a capture can be reported
// on, compared and re-read long after it was made, from one machine or from
// many. It is a set of interfaces (Sessions, Reader, Writer) with two engines:
// SQLite (package sqlite, a file, the embedded default) and PostgreSQL
// (package postgres, a server several sensors write to at once). Open picks
// the engine from what names the database: a postgres:// URL or a file path.
//
// Contract: a Writer is owned by one goroutine; readers may run concurrently
// with writers, of this process and of others. Bodies are stored up to
// Options.MaxBody bytes; a cut is recorded in the body's flags, never silent.
// A flow reads back from either engine as it was captured (PostgreSQL
// mends, as encoding/json does, the rare string a text column cannot hold:
// invalid UTF-8, NUL bytes).
package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/store/postgres"
	"phonehome/internal/store/record"
	"phonehome/internal/store/sqlite"
)

// The types of the store, shared by its engines (see package record).
type (
	Options     = record.Options
	Session     = record.Session
	ReadOptions = record.ReadOptions
	Marker      = record.Marker
)

// Errors a store returns; faults wrap ErrFull, ErrReadOnly, ErrLocked or
// ErrUnavailable when the cause lies outside phonehome and may pass.
var (
	ErrSessionExists = record.ErrSessionExists
	ErrNoSession     = record.ErrNoSession
	ErrFull          = record.ErrFull
	ErrReadOnly      = record.ErrReadOnly
	ErrLocked        = record.ErrLocked
	ErrUnavailable   = record.ErrUnavailable
)

// Sessions are the capture runs a store keeps.
type Sessions interface {
	// NewSession creates a session with sess's name, start, source and
	// sensor. A name already used fails with ErrSessionExists.
	NewSession(ctx context.Context, sess Session) (Session, error)
	// Sessions lists every session, oldest first, with its flow count and
	// devices.
	Sessions(ctx context.Context) ([]Session, error)
	// DeleteSession removes a session and its flows.
	DeleteSession(ctx context.Context, sess Session) error
}

// Reader reads a session's flows.
type Reader interface {
	// FlowsWith calls fn for each flow of the session in the order they were
	// stored, with its findings, one at a time and on the caller's
	// goroutine, so memory stays bounded however large the session. An
	// error of fn ends the read and is returned as it is.
	FlowsWith(ctx context.Context, sess Session, opts ReadOptions, fn func(*flow.Flow) error) error
}

// Writer adds flows to one session in batches (the pipeline's Writer).
//
// Add stores a flow and sets its ID; it is committed with its batch, by
// Flush, Idle or Close, or by Add itself when the batch is full. A failed
// Add, Flush, Idle or Close leaves nothing of the open batch behind: every
// flow added since the last commit is rolled back as a whole and their IDs
// are void. The Writer stays usable: to retry, Add those same flows again, in
// order, once the fault is gone; nothing is stored twice. Rollback drops what
// was added since the last commit; after a failure it is not needed and does
// no harm.
type Writer interface {
	Add(f *flow.Flow) error
	Flush() error
	Idle() error
	Rollback() error
	Close() error
	// Pending is how many flows wait for a commit.
	Pending() int
}

// Markers are the moments a user marked in a session (the web UI's "I
// opened Contacts now").
type Markers interface {
	// Markers lists a session's markers in time order.
	Markers(ctx context.Context, sess Session) ([]Marker, error)
	// AddMarker stores m in its session (m.Session) and returns it with its
	// id; a read-only store fails with ErrReadOnly.
	AddMarker(ctx context.Context, m Marker) (Marker, error)
}

// Engine is what a database engine provides.
type Engine interface {
	Sessions
	Reader
	Markers
	// Writer returns a writer for the session.
	Writer(ctx context.Context, sess Session) Writer
	Close() error
}

// Store is a database of sessions and flows, in one of the engines.
type Store struct {
	e      Engine
	where  string // the path, or the URL without its password
	sensor string
}

// EnvDB is the environment variable naming the database when --db does not.
const EnvDB = "PHONEHOME_DB"

// IsURL says whether dsn names a PostgreSQL server rather than a file.
func IsURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open opens the database dsn names: a postgres:// (or postgresql://) URL
// opens PostgreSQL, anything else is the path of a SQLite file ("" or
// ":memory:" keeps it in memory). Either is created if needed (the schema,
// for PostgreSQL; the database itself must exist) and migrated, unless
// opts.ReadOnly. An error says what is wrong and what to do.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.Sensor == "" {
		opts.Sensor = DefaultSensor()
	}
	if IsURL(dsn) {
		pg, err := postgres.Open(ctx, dsn, opts)
		if err != nil {
			return nil, err
		}
		return &Store{e: pgEngine{pg}, where: Redact(dsn), sensor: opts.Sensor}, nil
	}
	if strings.Contains(dsn, "://") {
		return nil, fmt.Errorf("open store %s: not a database phonehome knows: give a SQLite file path or a postgres:// URL", Redact(dsn))
	}
	st, err := sqlite.Open(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	return &Store{e: sqliteEngine{st}, where: dsn, sensor: opts.Sensor}, nil
}

// pgEngine and sqliteEngine give the engines' writers as the interface.
type pgEngine struct{ *postgres.Store }

func (e pgEngine) Writer(ctx context.Context, sess Session) Writer { return e.Store.Writer(ctx, sess) }

type sqliteEngine struct{ *sqlite.Store }

func (e sqliteEngine) Writer(ctx context.Context, sess Session) Writer {
	return e.Store.Writer(ctx, sess)
}

// DefaultSensor is the sensor name of this machine: its host name.
func DefaultSensor() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "phonehome"
}

// Redact is dsn with any password in it replaced by "xxxxx", for messages.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Where names the database for messages: its path, or its URL without the
// password.
func (s *Store) Where() string { return s.where }

// Engine is the store's engine.
func (s *Store) Engine() Engine { return s.e }

// Close closes the database.
func (s *Store) Close() error { return s.e.Close() }

// CreateSession starts a new session by this store's sensor.
func (s *Store) CreateSession(ctx context.Context, name string, started time.Time, source string) (Session, error) {
	return s.e.NewSession(ctx, Session{Name: name, Started: started, Source: source, Sensor: s.sensor})
}

// NewSession creates a session as sess describes it (a copy of one from
// another store keeps its start, source and sensor).
func (s *Store) NewSession(ctx context.Context, sess Session) (Session, error) {
	return s.e.NewSession(ctx, sess)
}

// Sessions lists the sessions, oldest first, with their flow counts and
// devices.
func (s *Store) Sessions(ctx context.Context) ([]Session, error) { return s.e.Sessions(ctx) }

// SessionByName finds a session; an empty name means the newest.
func (s *Store) SessionByName(ctx context.Context, name string) (Session, error) {
	all, err := s.e.Sessions(ctx)
	if err != nil {
		return Session{}, err
	}
	return record.Find(all, name)
}

// DeleteSession removes a session and its flows.
func (s *Store) DeleteSession(ctx context.Context, sess Session) error {
	return s.e.DeleteSession(ctx, sess)
}

// Writer returns a writer for the session. Call Close to commit the last
// batch.
func (s *Store) Writer(ctx context.Context, sess Session) Writer { return s.e.Writer(ctx, sess) }

// Flows calls fn for each flow of the session in the order they were stored.
func (s *Store) Flows(ctx context.Context, sess Session, fn func(*flow.Flow) error) error {
	return s.e.FlowsWith(ctx, sess, ReadOptions{}, fn)
}

// FlowsWith is Flows with columns left out as opts say.
func (s *Store) FlowsWith(ctx context.Context, sess Session, opts ReadOptions, fn func(*flow.Flow) error) error {
	return s.e.FlowsWith(ctx, sess, opts, fn)
}

// Flow reads one flow of the session by its id, whole; ErrNoFlow when the
// session has none with that id.
func (s *Store) Flow(ctx context.Context, sess Session, id int64) (*flow.Flow, error) {
	if id <= 0 {
		return nil, fmt.Errorf("%w: no flow %d in session %q", ErrNoFlow, id, sess.Name)
	}
	var found *flow.Flow
	err := s.e.FlowsWith(ctx, sess, ReadOptions{From: id, To: id}, func(f *flow.Flow) error {
		found = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no flow %d in session %q", ErrNoFlow, id, sess.Name)
	}
	return found, nil
}

// ErrNoFlow is returned when a flow asked for by id is not in its session.
var ErrNoFlow = errors.New("no such flow")

// Markers lists a session's markers in time order.
func (s *Store) Markers(ctx context.Context, sess Session) ([]Marker, error) {
	return s.e.Markers(ctx, sess)
}

// AddMarker stores a marker in its session and returns it with its id.
func (s *Store) AddMarker(ctx context.Context, m Marker) (Marker, error) {
	return s.e.AddMarker(ctx, m)
}
