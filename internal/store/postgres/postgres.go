// Package postgres is the store's engine for a team: sessions and their flows
// in a PostgreSQL database that several sensors write to at once, and that
// reports read while they do. The schema is the one SQLite holds (package
// record encodes the rows for both), created and migrated on open from
// embedded migrations under an advisory lock, so that sensors starting
// together do not migrate twice.
//
// Contract: a Writer is owned by one goroutine; any number of writers (of
// this process or of other sensors) and readers share the database. A
// Writer keeps its batch in memory and sends it with COPY when it commits;
// a lost connection fails the batch with ErrUnavailable, and the same flows
// added again once the server is back are stored once.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"phonehome/internal/flow"
	"phonehome/internal/store/record"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a PostgreSQL database of sessions and flows.
type Store struct {
	pool     *pgxpool.Pool
	opts     record.Options
	where    string // host:port/database, for messages
	codec    *record.Codec
	readOnly bool
}

// migrationLock is the advisory lock key held while migrating ("phonehome").
const migrationLock = 0x70686f6e65686f6d

// Open connects to the database the URL names and migrates its schema
// (with opts.ReadOnly: only checks it). The database itself must exist.
func Open(ctx context.Context, dsn string, opts record.Options) (*Store, error) {
	opts = opts.Defaults()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open store: the PostgreSQL URL does not parse (%w): write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=disable", redactErr(err, dsn))
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	cfg.MaxConns = 4
	cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	rp := cfg.ConnConfig.RuntimeParams
	rp["lock_timeout"] = strconv.FormatInt(opts.LockTimeout.Milliseconds(), 10)
	rp["application_name"] = "phonehome"
	if opts.ReadOnly {
		rp["default_transaction_read_only"] = "on"
	}
	c, err := record.NewCodec()
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	s := &Store{opts: opts, where: where, codec: c, readOnly: opts.ReadOnly}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err == nil {
		err = s.pool.Ping(ctx)
	}
	if err == nil {
		err = s.migrate(ctx)
	}
	if err != nil {
		if s.pool != nil {
			s.pool.Close()
		}
		c.Close()
		if se := (*schemaError)(nil); errors.As(err, &se) {
			return nil, err
		}
		return nil, s.fault("open store", err)
	}
	return s, nil
}

// redactErr hides the password of dsn in err's message.
func redactErr(err error, dsn string) error {
	u, perr := url.Parse(dsn)
	if perr != nil || u.User == nil {
		return err
	}
	if p, ok := u.User.Password(); ok && p != "" {
		return errors.New(strings.ReplaceAll(err.Error(), p, "xxxxx"))
	}
	return err
}

// Close closes the connections.
func (s *Store) Close() error {
	s.pool.Close()
	s.codec.Close()
	return nil
}

// migrate applies the migrations the database lacks, in one transaction
// under an advisory lock; a read-only store only checks the version.
func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	if s.readOnly {
		var version int
		err := s.pool.QueryRow(ctx, "SELECT version FROM phonehome_schema").Scan(&version)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
			return &schemaError{fmt.Sprintf("open store %s: the database holds no phonehome sessions (no schema): name the database phonehome run or analyze --db wrote to", s.where)}
		}
		if err != nil {
			return err
		}
		return s.checkVersion(version, len(names))
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS phonehome_schema (version INTEGER NOT NULL)"); err != nil {
		return err
	}
	var version int
	if err := tx.QueryRow(ctx, "SELECT version FROM phonehome_schema").Scan(&version); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if err := s.checkVersion(version, len(names)); err != nil {
		return err
	}
	if version == len(names) {
		return nil
	}
	for i := version; i < len(names); i++ {
		body, err := migrations.ReadFile(names[i])
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", names[i], err)
		}
	}
	if _, err := tx.Exec(ctx, "DELETE FROM phonehome_schema"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO phonehome_schema(version) VALUES($1)", len(names)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// schemaError says what is wrong with a database's schema, in full.
type schemaError struct{ msg string }

func (e *schemaError) Error() string { return e.msg }

func (s *Store) checkVersion(version, known int) error {
	if version > known {
		return &schemaError{fmt.Sprintf("open store %s: database schema version %d is newer than this phonehome knows (%d): upgrade phonehome", s.where, version, known)}
	}
	if s.readOnly && version < known {
		return &schemaError{fmt.Sprintf("open store %s read-only: schema version %d is older than this phonehome's (%d): let a sensor of this version write to it once (phonehome run or analyze --db with its URL), which migrates it", s.where, version, known)}
	}
	return nil
}

// NewSession creates a session as sess describes it.
func (s *Store) NewSession(ctx context.Context, sess record.Session) (record.Session, error) {
	action := fmt.Sprintf("create session %q", sess.Name)
	if s.readOnly {
		return record.Session{}, s.fault(action, record.ErrReadOnly)
	}
	out := record.Session{Name: record.Text(sess.Name), Started: sess.Started, Source: record.Text(sess.Source), Sensor: record.Text(sess.Sensor)}
	err := s.pool.QueryRow(ctx, "INSERT INTO sessions(name, started, source, sensor) VALUES($1, $2, $3, $4) RETURNING id",
		out.Name, out.Started.UnixNano(), out.Source, out.Sensor).Scan(&out.ID)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
			return record.Session{}, fmt.Errorf("%s: %w; choose another name with --session", action, record.ErrSessionExists)
		}
		return record.Session{}, s.fault(action, err)
	}
	return out, nil
}

// Sessions lists the sessions, oldest first, with their flow counts and
// devices.
func (s *Store) Sessions(ctx context.Context) ([]record.Session, error) {
	rows, err := s.pool.Query(ctx, `SELECT s.id, s.name, s.started, s.source, s.sensor,
		(SELECT count(*) FROM flows f WHERE f.session_id = s.id),
		ARRAY(SELECT d.device FROM session_devices d WHERE d.session_id = s.id ORDER BY d.device COLLATE "C")
		FROM sessions s ORDER BY s.started, s.id`)
	if err != nil {
		return nil, s.fault("list sessions", err)
	}
	defer rows.Close()
	var out []record.Session
	for rows.Next() {
		var ss record.Session
		var started int64
		if err := rows.Scan(&ss.ID, &ss.Name, &started, &ss.Source, &ss.Sensor, &ss.Flows, &ss.Devices); err != nil {
			return nil, s.fault("list sessions", err)
		}
		if len(ss.Devices) == 0 {
			ss.Devices = nil
		}
		ss.Started = time.Unix(0, started)
		out = append(out, ss)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fault("list sessions", err)
	}
	return out, nil
}

// DeleteSession removes a session and its flows.
func (s *Store) DeleteSession(ctx context.Context, sess record.Session) error {
	action := fmt.Sprintf("delete session %q", sess.Name)
	if s.readOnly {
		return s.fault(action, record.ErrReadOnly)
	}
	// flows have no foreign key to cascade along (see the schema)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.fault(action, err)
	}
	defer tx.Rollback(ctx)
	for _, q := range []string{"DELETE FROM flows WHERE session_id = $1", "DELETE FROM sessions WHERE id = $1"} {
		if _, err := tx.Exec(ctx, q, sess.ID); err != nil {
			return s.fault(action, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return s.fault(action, err)
	}
	return nil
}

// FlowsWith calls fn for each flow of the session in the order they were
// stored. A lean read of a large session runs on two connections at once.
func (s *Store) FlowsWith(ctx context.Context, sess record.Session, opts record.ReadOptions, fn func(*flow.Flow) error) error {
	var lo, hi *int64
	if err := s.pool.QueryRow(ctx, "SELECT min(id), max(id) FROM flows WHERE session_id = $1", sess.ID).Scan(&lo, &hi); err != nil {
		return s.fault(fmt.Sprintf("read flows of %q", sess.Name), err)
	}
	if lo == nil {
		return nil
	}
	if *lo, *hi = opts.Clamp(*lo, *hi); *lo > *hi {
		return nil
	}
	cols := record.FlowColumns
	if opts.Lean {
		cols = record.LeanColumns
	}
	query := "SELECT id, " + cols + " FROM flows WHERE session_id = $1 AND id BETWEEN $2 AND $3 ORDER BY id"
	var chunk int64
	if opts.Lean {
		chunk = 4096 // four of a writer's blocks of ids: a few chunks in memory, as for SQLite
	}
	return record.Read(ctx, *lo, *hi, opts.Lean, chunk, s.codec, func(ctx context.Context, from, to int64) (record.Rows, func(), error) {
		rows, err := s.pool.Query(ctx, query, sess.ID, from, to)
		if err != nil {
			return nil, nil, err
		}
		return rows, rows.Close, nil
	}, func(err error) error { return s.fault(fmt.Sprintf("read flows of %q", sess.Name), err) }, fn)
}
