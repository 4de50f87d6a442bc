// Package store keeps sessions and their flows in a SQLite file (pure Go, no
// cgo), with embedded migrations and write-ahead logging, so a capture can be
// reported on, compared and re-read long after it was made.
//
// Contract: a Writer is owned by one goroutine; readers may run concurrently
// with it (WAL). Bodies are stored up to Options.MaxBody bytes; a cut is
// recorded in the body's flags, never silent. Bodies are kept compressed
// where that pays and read back as they were captured. A store opened with
// Options.ReadOnly writes nothing, not even SQLite's log files, so archived
// evidence can be reported on as it is.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"modernc.org/sqlite" // the "sqlite" driver; its errors carry SQLite's result codes
	sqlite3 "modernc.org/sqlite/lib"

	"phonehome/internal/flow"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options configure a store.
type Options struct {
	MaxBody int // bytes of each body stored (default 1 MiB)
	// ReadOnly opens an existing database for reading only: nothing is
	// written to it or beside it, so it may be a read-only file, in a
	// read-only directory, or owned by someone else. Migrations do not run;
	// databases from schema version 3 on are read as they are. Writes fail
	// with ErrReadOnly.
	ReadOnly bool
	// LockTimeout is how long a write waits for another connection's write
	// transaction before failing with ErrLocked (default 5 s).
	LockTimeout time.Duration
}

// Store is a SQLite database of sessions and flows.
type Store struct {
	db       *sql.DB
	opts     Options
	path     string // "" in memory
	single   bool   // one connection (in memory): no reads side by side
	readOnly bool
	codec    *codec
	plain    bool // store bodies uncompressed (benchmarks compare)
	// fullCols and leanCols are what reads select: a database read as it is
	// (read-only, older schema) lacks the body encoding columns.
	fullCols, leanCols string
	// unchecked counts the bytes committed to the write-ahead log since the
	// last checkpoint: SQLite's own checkpoint every 1000 pages is off, so a
	// burst of flows is not slowed by copying pages into the database file;
	// writers checkpoint when the capture is idle or the log passes
	// checkpointAfter.
	unchecked atomic.Int64
	// A checkpoint runs on a connection of its own while writers go on
	// (SQLite lets a passive checkpoint and a writer share the log).
	checkpointing atomic.Bool
	checkpoints   sync.WaitGroup
	checkpointErr atomic.Pointer[error]
}

// checkpointAfter bounds the write-ahead log between idle moments.
const checkpointAfter = 64 << 20

// Session is one capture run: a live proxy run or one analyze of files.
type Session struct {
	ID      int64
	Name    string
	Started time.Time
	Source  string
	Flows   int64
}

// ErrSessionExists is returned by CreateSession for a name already used.
var ErrSessionExists = errors.New("session already exists")

// ErrNoSession is returned when a named session is not in the store.
var ErrNoSession = errors.New("no such session")

// Open opens (creating if needed) the database at path; "" or ":memory:" keeps
// it in memory for the life of the Store. With opts.ReadOnly the database
// must exist and is only read. An error says what is wrong with the path and
// what to do: a missing directory, a directory given as the path, a file or
// directory that cannot be written (ErrReadOnly), a full disk (ErrFull), a
// file that is not SQLite.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.MaxBody <= 0 {
		opts.MaxBody = 1 << 20
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	inMemory := path == "" || path == ":memory:"
	if inMemory && opts.ReadOnly {
		return nil, errors.New("open store: a store in memory cannot be opened read-only: give the path of a database")
	}
	if !inMemory {
		if err := pathError(path, opts.ReadOnly); err != nil {
			return nil, err
		}
	}
	c, err := newCodec()
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{opts: opts, single: inMemory, readOnly: opts.ReadOnly, codec: c, fullCols: flowColumns, leanCols: leanColumns}
	if !inMemory {
		s.path = path
	}
	switch {
	case inMemory:
		err = s.openMemory(ctx)
	case opts.ReadOnly:
		err = s.openReadOnly(ctx)
	default:
		err = s.openFile(ctx)
	}
	if err != nil {
		if s.db != nil {
			s.db.Close()
		}
		c.close()
		return nil, err
	}
	return s, nil
}

func (s *Store) pragmas() string {
	return "_pragma=foreign_keys(1)&_pragma=busy_timeout(" + strconv.FormatInt(s.opts.LockTimeout.Milliseconds(), 10) + ")"
}

// uri is path as a SQLite URI file name: "?", "#" and "%" would end or
// change it.
func uri(path string) string {
	p := filepath.ToSlash(filepath.Clean(path))
	return "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
}

func (s *Store) openMemory(ctx context.Context) error {
	db, err := sql.Open("sqlite", "file::memory:?"+s.pragmas())
	if err != nil {
		return fmt.Errorf("open store in memory: %w", err)
	}
	db.SetMaxOpenConns(1) // each connection to :memory: would be a different database
	s.db = db
	if err := s.migrate(ctx); err != nil {
		return fmt.Errorf("open store in memory: %w", err)
	}
	return nil
}

func (s *Store) openFile(ctx context.Context) error {
	db, err := sql.Open("sqlite", uri(s.path)+"?"+s.pragmas()+"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		return fmt.Errorf("open store %s: %w", s.path, err)
	}
	s.db = db
	if err := db.PingContext(ctx); err != nil {
		return openError(s.path, false, err)
	}
	// SQLite opens a file it may not write read-only and says so only at
	// the first write; say it now, with the reason. (The directory was
	// writable enough: the log beside the file is open.)
	if err := canWrite(s.path); err != nil {
		if kind := osFault(err); kind != nil {
			return writeError(s.path, kind, err)
		}
	}
	if err := s.migrate(ctx); err != nil {
		if sqliteCode(err) != -1 {
			return openError(s.path, false, err)
		}
		return fmt.Errorf("open store %s: %w", s.path, err)
	}
	return nil
}

// openReadOnly opens the database without writing anything. Without a
// write-ahead log beside it (a store closed cleanly, an archived copy), the
// file is opened immutable: SQLite neither locks it nor creates the log and
// its index; a writer that starts later is not seen, and must not
// checkpoint while the store is read (phonehome's writers do so only past
// 64 MiB of log or when idle). With a log (a capture still writing, or one
// that was killed), the log holds flows the file lacks and is read through
// its index, which SQLite creates if it is missing and it can.
func (s *Store) openReadOnly(ctx context.Context) error {
	wal, walErr := os.Stat(s.path + "-wal")
	open := func(params string) error {
		if s.db != nil {
			s.db.Close()
		}
		db, err := sql.Open("sqlite", uri(s.path)+"?"+params+"&"+s.pragmas())
		if err != nil {
			return err
		}
		s.db = db
		return db.PingContext(ctx)
	}
	var err error
	if walErr == nil {
		err = open("mode=ro")
		if err != nil && wal.Size() == 0 && sqliteCode(err) != sqlite3.SQLITE_NOTADB {
			err = open("mode=ro&immutable=1") // an empty log holds nothing
		} else if err != nil && sqliteCode(err) == sqlite3.SQLITE_CANTOPEN {
			return fmt.Errorf("open store %s read-only: %s-wal holds flows not yet in the database file, and SQLite cannot open or create its index %s-shm here (%w): copy the database and its -wal file to a writable directory and open the copy", s.path, s.path, s.path, err)
		}
	} else {
		err = open("mode=ro&immutable=1")
	}
	if err != nil {
		return openError(s.path, true, err)
	}
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return openError(s.path, true, err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	switch {
	case version > len(names):
		return fmt.Errorf("open store %s: database schema version %d is newer than this phonehome knows (%d): upgrade phonehome", s.path, version, len(names))
	case version < 3:
		return fmt.Errorf("open store %s read-only: written by an older phonehome (schema version %d), which cannot be read without upgrading it: open it once for writing (a copy, if it must stay as it is)", s.path, version)
	}
	var old []string
	if version < 5 { // bodies stored as captured, no encoding columns
		old = append(old, "req_body_enc", "0", "resp_body_enc", "0")
	}
	if version < 6 { // no verdicts
		old = append(old, "verdict", "NULL")
	}
	if len(old) > 0 {
		r := strings.NewReplacer(old...)
		s.fullCols, s.leanCols = r.Replace(flowColumns), r.Replace(leanColumns)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.checkpoints.Wait()
	err := s.db.Close()
	if p := s.checkpointErr.Load(); p != nil && err == nil {
		err = *p
	}
	s.codec.close()
	return err
}

func (s *Store) migrate(ctx context.Context) error {
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	if version > len(names) {
		return fmt.Errorf("database schema version %d is newer than this phonehome knows (%d): upgrade phonehome", version, len(names))
	}
	for i := version; i < len(names); i++ {
		body, err := migrations.ReadFile(names[i])
		if err != nil {
			return err
		}
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", names[i], err)
		}
		if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(i+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		if strings.HasSuffix(names[i], "0003_flow_findings.sql") && version > 0 {
			if err := s.backfillFindings(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// CreateSession starts a new session.
func (s *Store) CreateSession(ctx context.Context, name string, started time.Time, source string) (Session, error) {
	action := fmt.Sprintf("create session %q", name)
	if s.readOnly {
		return Session{}, s.fault(action, ErrReadOnly)
	}
	res, err := s.db.ExecContext(ctx, "INSERT INTO sessions(name, started, source) VALUES(?, ?, ?)", name, started.UnixNano(), source)
	if err != nil {
		if e := (*sqlite.Error)(nil); errors.As(err, &e) && e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
			return Session{}, fmt.Errorf("%s: %w; choose another name with --session", action, ErrSessionExists)
		}
		return Session{}, s.fault(action, err)
	}
	id, _ := res.LastInsertId()
	return Session{ID: id, Name: name, Started: started, Source: source}, nil
}

// Sessions lists the sessions, oldest first, with their flow counts.
func (s *Store) Sessions(ctx context.Context) ([]Session, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT s.id, s.name, s.started, s.source,
		(SELECT count(*) FROM flows f WHERE f.session_id = s.id) FROM sessions s ORDER BY s.started, s.id`)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		var ss Session
		var started int64
		if err := rows.Scan(&ss.ID, &ss.Name, &started, &ss.Source, &ss.Flows); err != nil {
			return nil, err
		}
		ss.Started = time.Unix(0, started)
		out = append(out, ss)
	}
	return out, rows.Err()
}

// SessionByName finds a session; an empty name means the newest.
func (s *Store) SessionByName(ctx context.Context, name string) (Session, error) {
	all, err := s.Sessions(ctx)
	if err != nil {
		return Session{}, err
	}
	if len(all) == 0 {
		return Session{}, fmt.Errorf("%w: the store holds no sessions yet", ErrNoSession)
	}
	if name == "" {
		return all[len(all)-1], nil
	}
	for _, ss := range all {
		if ss.Name == name {
			return ss, nil
		}
	}
	names := make([]string, len(all))
	for i, ss := range all {
		names[i] = ss.Name
	}
	return Session{}, fmt.Errorf("%w %q (the store has: %s)", ErrNoSession, name, strings.Join(names, ", "))
}

const flowColumns = `session_id, source, seq, start_ns, end_ns, client, server, host, transport, bytes_up, bytes_down,
	method, url, req_proto, req_headers, req_trailers, req_body, req_body_size, req_body_flags, req_body_enc,
	status, reason, resp_proto, resp_headers, resp_trailers, resp_body, resp_body_size, resp_body_flags, resp_body_enc,
	tls, dns, notes, dest, app, findings, verdict`

// Writer adds flows to one session in batched transactions. It holds one
// connection while a batch is open and speaks to the SQLite driver directly:
// a live capture stores every flow, and database/sql's conversions and locks
// cost a fifth of an insert.
//
// A batch is committed by Flush, Idle and Close, and by Add itself once it
// holds batchSize flows; Pending says how many flows wait for a commit. When
// any of them fails, the whole batch is rolled back (see Add) and the Writer
// stays usable.
type Writer struct {
	s       *Store
	session int64
	conn    *sql.Conn // while a batch is open
	stmt    driver.Stmt
	args    []driver.NamedValue
	pending int
	bytes   int64 // roughly what the pending flows take in the log
	ctx     context.Context
	// zreq and zresp receive compressed bodies, reused from flow to flow
	// (the driver copies what it binds)
	zreq, zresp []byte
}

const batchSize = 2000

const insertFlow = "INSERT INTO flows(" + flowColumns + ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"

// Writer returns a writer for the session. Call Close to commit the last batch.
func (s *Store) Writer(ctx context.Context, session Session) *Writer {
	return &Writer{s: s, session: session.ID, ctx: ctx, args: make([]driver.NamedValue, 36)}
}

// begin opens a batch: a connection, a write transaction and the insert
// statement. BEGIN IMMEDIATE takes the write lock now, so another program's
// lock fails the batch's first Add, before anything of it is written.
func (w *Writer) begin() error {
	conn, err := w.s.db.Conn(w.ctx)
	if err != nil {
		return err
	}
	if _, err := conn.ExecContext(w.ctx, "BEGIN IMMEDIATE"); err != nil {
		discard(conn)
		return err
	}
	err = conn.Raw(func(dc any) error {
		p, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errors.New("the SQLite driver cannot prepare statements")
		}
		w.stmt, err = p.PrepareContext(w.ctx, insertFlow)
		return err
	})
	if err != nil {
		discard(conn)
		return err
	}
	w.conn = conn
	return nil
}

// discard closes conn and drops its driver connection from the pool, which
// rolls back what it has open. After a fault the connection is not reused: one
// opened while the file system was read-only stays read-only.
func discard(conn *sql.Conn) {
	conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}

// Add stores f and sets f.ID. The flow is committed with its batch: by
// Flush, Idle or Close, or by Add itself when the batch reaches 2,000 flows
// (Pending drops to 0); until then a crash loses it.
//
// A failed Add, Flush, Idle or Close leaves nothing of the open batch
// behind: every flow added since the last commit, the failed one included,
// is rolled back as a whole (no row is ever half-written) and their IDs are
// void (Add resets f.ID to 0); flows committed before are kept. The Writer
// stays usable: to retry, Add those same flows again, all of them in order,
// once the fault is gone; nothing is stored twice. The error wraps ErrFull,
// ErrReadOnly or ErrLocked (errors.Is) when the cause lies outside phonehome
// and may pass. Rollback is not needed after a failure and does no harm.
func (w *Writer) Add(f *flow.Flow) error {
	if err := w.add(f); err != nil {
		f.ID = 0
		return err
	}
	if w.pending >= batchSize {
		if err := w.Flush(); err != nil {
			f.ID = 0
			return err
		}
	}
	return nil
}

func (w *Writer) add(f *flow.Flow) error {
	if w.s.readOnly {
		return w.s.fault(storeFlow(f), ErrReadOnly)
	}
	if w.conn == nil {
		if err := w.begin(); err != nil {
			return w.fail(storeFlow(f), err)
		}
	}
	a := w.args
	set := func(i int, v driver.Value) { a[i] = driver.NamedValue{Ordinal: i + 1, Value: v} }
	set(0, w.session)
	set(1, f.Source)
	set(2, int64(f.Seq))
	set(3, nanos(f.Start))
	set(4, nanos(f.End))
	set(5, f.Client.String())
	set(6, f.Server.String())
	set(7, f.Host)
	set(8, f.Transport.String())
	set(9, f.BytesUp)
	set(10, f.BytesDown)
	for i := 11; i < 29; i++ {
		set(i, nil)
	}
	if r := f.Request; r != nil {
		w.zreq = w.setMessage(11, r.Method, r.URL, r.Proto, r.Headers, r.Trailers, r.Body, w.zreq)
	}
	if r := f.Response; r != nil {
		w.zresp = w.setMessage(20, int64(r.Status), r.Reason, r.Proto, r.Headers, r.Trailers, r.Body, w.zresp)
	}
	var dest driver.Value
	if f.Dest != (flow.Destination{}) {
		b, _ := json.Marshal(f.Dest)
		dest = string(b)
	}
	set(29, jsonOrNil(f.TLS))
	set(30, jsonOrNil(f.DNS))
	set(31, jsonOrNil(f.Notes))
	set(32, dest)
	set(33, f.App)
	set(34, packFindings(f.Findings))
	set(35, packVerdict(f.Verdict))
	var res driver.Result
	err := w.conn.Raw(func(any) error {
		var err error
		res, err = w.stmt.(driver.StmtExecContext).ExecContext(w.ctx, a)
		return err
	})
	if err != nil {
		return w.fail(storeFlow(f), err)
	}
	f.ID, _ = res.LastInsertId()
	w.pending++
	w.bytes += 512
	return nil
}

// storeFlow names the action of storing f, for errors.
func storeFlow(f *flow.Flow) string { return fmt.Sprintf("store flow %d of %s", f.Seq, f.Source) }

// fail rolls back the open batch, if any, and returns err for action with
// the fault it is.
func (w *Writer) fail(action string, err error) error {
	if w.conn != nil {
		if w.stmt != nil {
			w.conn.Raw(func(any) error { return w.stmt.Close() })
		}
		discard(w.conn)
	}
	w.conn, w.stmt, w.pending, w.bytes = nil, nil, 0, 0
	return w.s.fault(action, err)
}

// setMessage fills the nine columns of a request or an answer, from i on:
// its first line's two parts, protocol, headers, trailers and body (bytes,
// size, flags, encoding). It returns buf, grown to hold the compressed body.
func (w *Writer) setMessage(i int, first, second driver.Value, proto string, h, trailers flow.Headers, b flow.Body, buf []byte) []byte {
	data, size, flags := bodyCols(b, w.s.opts.MaxBody)
	enc := int64(encIdentity)
	if !w.s.plain {
		data, enc, buf = w.s.codec.compress(data, buf)
	}
	w.bytes += int64(len(data))
	for j, v := range [...]driver.Value{first, second, proto, headersJSON(h), headersJSON(trailers), data, size, int64(flags), enc} {
		w.args[i+j] = driver.NamedValue{Ordinal: i + j + 1, Value: v}
	}
	return buf
}

// Pending returns how many flows were added since the last commit: what a
// failed Add or Flush rolls back and the caller must send again.
func (w *Writer) Pending() int { return w.pending }

// Flush commits the flows added so far. On failure they are rolled back, as
// Add says.
func (w *Writer) Flush() error {
	if w.conn == nil {
		return nil
	}
	w.conn.Raw(func(any) error { return w.stmt.Close() })
	w.stmt = nil
	if _, err := w.conn.ExecContext(w.ctx, "COMMIT"); err != nil {
		return w.fail(fmt.Sprintf("store %d flows: commit", w.pending), err)
	}
	w.conn.Close()
	w.conn, w.pending = nil, 0
	if w.s.unchecked.Add(w.bytes) > checkpointAfter {
		w.s.checkpoint()
	}
	w.bytes = 0
	return nil
}

// Idle commits what is pending and moves the write-ahead log into the
// database file: a live capture calls it when no flow came for a while.
func (w *Writer) Idle() error {
	if err := w.Flush(); err != nil {
		return err
	}
	if w.s.unchecked.Load() > 0 {
		w.s.checkpoint()
	}
	return nil
}

// checkpoint starts copying the log into the database file, unless a copy
// is under way, without waiting for readers (what a reader still needs stays
// in the log for the next one) and without holding up the writer. An error
// is kept for Close, until a later checkpoint succeeds (the flows are safe
// in the log meanwhile).
func (s *Store) checkpoint() {
	if s.single || s.readOnly || !s.checkpointing.CompareAndSwap(false, true) {
		return
	}
	n := s.unchecked.Swap(0)
	s.checkpoints.Add(1)
	go func() {
		defer s.checkpoints.Done()
		defer s.checkpointing.Store(false)
		if _, err := s.db.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
			s.unchecked.Add(n)
			err = s.fault("store: checkpoint", err)
			s.checkpointErr.Store(&err)
			return
		}
		s.checkpointErr.Store(nil)
	}()
}

// Close commits what is pending.
func (w *Writer) Close() error { return w.Flush() }

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func bodyCols(b flow.Body, max int) ([]byte, int64, int) {
	data, flags := b.Data, 0
	if len(data) > max {
		data = data[:max]
		flags |= 1
	}
	if b.Truncated {
		flags |= 1
	}
	if b.Incomplete {
		flags |= 2
	}
	if data == nil {
		data = []byte{}
	}
	return data, b.Size, flags
}

// headersJSON writes headers as [["name","value"],...]. Strings with nothing
// to escape (nearly all) are copied as they are; the rest go through
// encoding/json, which also mends invalid UTF-8.
func headersJSON(h flow.Headers) driver.Value {
	if h == nil {
		return nil
	}
	n := 2
	for _, x := range h {
		n += len(x.Name) + len(x.Value) + 8
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, x := range h {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = appendJSONString(b, x.Name)
		b = append(b, ',')
		b = appendJSONString(b, x.Value)
		b = append(b, ']')
	}
	b = append(b, ']')
	return string(b)
}

func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		// what encoding/json would escape: quotes, backslashes, control
		// characters, <, > and &, and anything beyond ASCII (checked there)
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func jsonOrNil(v any) any {
	switch x := v.(type) {
	case *flow.TLSInfo:
		if x == nil {
			return nil
		}
	case *flow.DNS:
		if x == nil {
			return nil
		}
	case []string:
		if len(x) == 0 {
			return nil
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// ReadOptions choose what a read of flows skips.
type ReadOptions struct {
	// Lean reads only what a report uses: times, endpoints, host, transport,
	// byte counts, the request (line, headers, body), the status and the
	// response's size, DNS, destination and app. Response content, trailers,
	// TLS details and notes, most of the bytes, are left out.
	Lean bool
}

const leanColumns = `start_ns, end_ns, client, server, host, transport, bytes_up, bytes_down,
	method, url, req_headers, req_body, req_body_size, req_body_flags, req_body_enc, status, resp_body_size, dns, dest, app, findings, verdict`

// scanner turns rows into flows; a lean one remembers destinations, which
// repeat from flow to flow, instead of decoding their JSON each time.
type scanner struct {
	lean  bool
	codec *codec
	dests map[string]flow.Destination
	dns   map[string]flow.DNS
}

// parallel reads rows on one goroutine and parses them and calls fn on this
// one: on a large session the driver's work and the parsing take similar time.
func (sc *scanner) parallel(ctx context.Context, session Session, rows *sql.Rows, fn func(*flow.Flow) error) error {
	const batchSize = 256
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []leanRow, 8)
	var readErr error
	go func() {
		defer close(batches)
		batch := make([]leanRow, 0, batchSize)
		for rows.Next() {
			batch = append(batch, leanRow{})
			if readErr = batch[len(batch)-1].read(rows, sc.codec); readErr != nil {
				return
			}
			if len(batch) == batchSize {
				select {
				case batches <- batch:
				case <-ctx.Done():
					return
				}
				batch = make([]leanRow, 0, batchSize)
			}
		}
		if readErr = rows.Err(); readErr == nil && len(batch) > 0 {
			select {
			case batches <- batch:
			case <-ctx.Done():
			}
		}
	}()
	var err error
	for batch := range batches {
		for i := 0; i < len(batch) && err == nil; i++ {
			var f *flow.Flow
			if f, err = sc.parse(&batch[i]); err == nil {
				err = fn(f)
			}
		}
		if err != nil {
			cancel()
			for range batches { // let the reader stop
			}
			return err
		}
	}
	if readErr != nil {
		return fmt.Errorf("read flows of %q: %w", session.Name, readErr)
	}
	return nil
}

// readChunks reads a large session on two connections at once: the id range
// is cut into chunks, read alternately by two readers (the driver's work is
// most of the cost, and one reader keeps one core busy) and handed to fn in
// order, on this goroutine, after parsing. At most a few chunks are in memory.
func (s *Store) readChunks(ctx context.Context, session Session, lo, hi int64, sc *scanner, fn func(*flow.Flow) error) error {
	const chunk, readers, ahead = 4096, 2, 6
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := int((hi-lo)/chunk + 1)
	type result struct {
		rows []leanRow
		err  error
	}
	outs := make([]chan result, n)
	for i := range outs {
		outs[i] = make(chan result, 1)
	}
	tokens := make(chan struct{}, ahead)
	jobs := make(chan int)
	go func() { // chunks are handed out in order, each once a token is free
		defer close(jobs)
		for i := 0; i < n; i++ {
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				from := lo + int64(i)*chunk
				var res result
				rows, err := s.db.QueryContext(ctx, "SELECT id, "+s.leanCols+" FROM flows NOT INDEXED WHERE id BETWEEN ? AND ? AND session_id = ? ORDER BY id",
					from, min(from+chunk-1, hi), session.ID)
				if err == nil {
					for rows.Next() {
						res.rows = append(res.rows, leanRow{})
						if err = res.rows[len(res.rows)-1].read(rows, sc.codec); err != nil {
							break
						}
					}
					if err == nil {
						err = rows.Err()
					}
					rows.Close()
				}
				res.err = err
				outs[i] <- res
			}
		}()
	}
	defer wg.Wait()
	for i := 0; i < n; i++ {
		var res result
		select {
		case res = <-outs[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if res.err != nil {
			return fmt.Errorf("read flows of %q: %w", session.Name, res.err)
		}
		for j := range res.rows {
			f, err := sc.parse(&res.rows[j])
			if err == nil {
				err = fn(f)
			}
			if err != nil {
				return err
			}
		}
		<-tokens
	}
	return nil
}

// memoJSON decodes a JSON column value, remembering up to 4,096 of them: the
// same destinations (and lookups) come back flow after flow.
func memoJSON[T any](memo map[string]T, s string) (T, error) {
	if v, ok := memo[s]; ok {
		return v, nil
	}
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return v, err
	}
	if len(memo) < 4096 {
		memo[s] = v
	}
	return v, nil
}

// leanRow is a lean row as read, before its text is parsed.
type leanRow struct {
	f                                   flow.Flow
	start, end                          int64
	client, server, transport           string
	method, url, reqH                   sql.NullString
	reqBody                             []byte
	reqSize, reqFlags, status, respSize sql.NullInt64
	dnsJ, destJ, verdictJ               sql.NullString
	findings                            []byte
}

// read scans a lean row and decompresses its request body, on the reading
// goroutine: lean reads run several readers beside the one parser.
func (r *leanRow) read(rows *sql.Rows, c *codec) error {
	var enc sql.NullInt64
	err := rows.Scan(&r.f.ID, &r.start, &r.end, &r.client, &r.server, &r.f.Host, &r.transport, &r.f.BytesUp, &r.f.BytesDown,
		&r.method, &r.url, &r.reqH, &r.reqBody, &r.reqSize, &r.reqFlags, &enc, &r.status, &r.respSize, &r.dnsJ, &r.destJ, &r.f.App, &r.findings, &r.verdictJ)
	if err != nil {
		return err
	}
	if r.reqBody, err = c.decompress(r.reqBody, enc.Int64); err != nil {
		return fmt.Errorf("flow %d: request %w", r.f.ID, err)
	}
	return nil
}

func (sc *scanner) scan(rows *sql.Rows) (*flow.Flow, error) {
	if !sc.lean {
		return scanFlow(rows, sc.codec)
	}
	var r leanRow
	if err := r.read(rows, sc.codec); err != nil {
		return nil, err
	}
	return sc.parse(&r)
}

// parse turns a lean row into a flow.
func (sc *scanner) parse(r *leanRow) (*flow.Flow, error) {
	f := r.f
	if err := fillCommon(&f, r.start, r.end, r.client, r.server, r.transport, r.findings); err != nil {
		return nil, err
	}
	method, url, reqH, reqBody, reqSize, reqFlags := r.method, r.url, r.reqH, r.reqBody, r.reqSize, r.reqFlags
	status, respSize, dnsJ, destJ := r.status, r.respSize, r.dnsJ, r.destJ
	if method.Valid {
		f.Request = &flow.Request{Method: method.String, URL: url.String, Headers: parseHeaders(reqH), Body: body(reqBody, reqSize, reqFlags)}
	}
	if status.Valid {
		f.Response = &flow.Response{Status: int(status.Int64), Body: flow.Body{Size: respSize.Int64}}
	}
	if dnsJ.Valid {
		d, err := memoJSON(sc.dns, dnsJ.String)
		if err != nil {
			return nil, fmt.Errorf("flow %d: dns column: %w", f.ID, err)
		}
		f.DNS = &d // a copy; its answers are shared and read only
	}
	if destJ.Valid {
		d, err := memoJSON(sc.dests, destJ.String)
		if err != nil {
			return nil, fmt.Errorf("flow %d: dest column: %w", f.ID, err)
		}
		f.Dest = d
	}
	if err := scanVerdict(&f, r.verdictJ); err != nil {
		return nil, err
	}
	return &f, nil
}

// Flows calls fn for each flow of the session in the order they were stored,
// with its findings, one at a time, so memory stays bounded however large the
// session.
func (s *Store) Flows(ctx context.Context, session Session, fn func(*flow.Flow) error) error {
	return s.FlowsWith(ctx, session, ReadOptions{}, fn)
}

// FlowsWith is Flows with columns left out as opts say.
func (s *Store) FlowsWith(ctx context.Context, session Session, opts ReadOptions, fn func(*flow.Flow) error) error {
	sc := &scanner{lean: opts.Lean, codec: s.codec, dests: map[string]flow.Destination{}, dns: map[string]flow.DNS{}}
	// Read in rowid order, the order of writing; the index on session_id
	// would cost a seek per row and a sort.
	var lo, hi sql.NullInt64
	if err := s.db.QueryRowContext(ctx, "SELECT min(id), max(id) FROM flows WHERE session_id = ?", session.ID).Scan(&lo, &hi); err != nil {
		return fmt.Errorf("read flows of %q: %w", session.Name, err)
	}
	if !lo.Valid {
		return nil // no flows
	}
	if opts.Lean && !s.single {
		return s.readChunks(ctx, session, lo.Int64, hi.Int64, sc, fn)
	}
	cols := s.fullCols
	if opts.Lean {
		cols = s.leanCols
	}
	rows, err := s.db.QueryContext(ctx, "SELECT id, "+cols+" FROM flows NOT INDEXED WHERE id BETWEEN ? AND ? AND session_id = ? ORDER BY id", lo, hi, session.ID)
	if err != nil {
		return fmt.Errorf("read flows of %q: %w", session.Name, err)
	}
	defer rows.Close()
	if opts.Lean {
		return sc.parallel(ctx, session, rows, fn)
	}
	for rows.Next() {
		f, err := sc.scan(rows)
		if err != nil {
			return fmt.Errorf("read flows of %q: %w", session.Name, err)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read flows of %q: %w", session.Name, err)
	}
	return nil
}

func scanFlow(rows *sql.Rows, c *codec) (*flow.Flow, error) {
	var (
		f                                          flow.Flow
		sessionID, start, end                      int64
		client, server, transport                  string
		method, url, reqProto, reqH, reqT          sql.NullString
		reason, respProto, respH, respT            sql.NullString
		reqBody, respBody, findings                []byte
		reqSize, reqFlags, status, respSize, respF sql.NullInt64
		reqEnc, respEnc                            sql.NullInt64
		tlsJ, dnsJ, notesJ, destJ, verdictJ        sql.NullString
	)
	err := rows.Scan(&f.ID, &sessionID, &f.Source, &f.Seq, &start, &end, &client, &server, &f.Host, &transport,
		&f.BytesUp, &f.BytesDown, &method, &url, &reqProto, &reqH, &reqT, &reqBody, &reqSize, &reqFlags, &reqEnc,
		&status, &reason, &respProto, &respH, &respT, &respBody, &respSize, &respF, &respEnc, &tlsJ, &dnsJ, &notesJ, &destJ, &f.App, &findings, &verdictJ)
	if err != nil {
		return nil, err
	}
	if reqBody, err = c.decompress(reqBody, reqEnc.Int64); err != nil {
		return nil, fmt.Errorf("flow %d: request %w", f.ID, err)
	}
	if respBody, err = c.decompress(respBody, respEnc.Int64); err != nil {
		return nil, fmt.Errorf("flow %d: response %w", f.ID, err)
	}
	if err := fillCommon(&f, start, end, client, server, transport, findings); err != nil {
		return nil, err
	}
	if method.Valid {
		f.Request = &flow.Request{Method: method.String, URL: url.String, Proto: reqProto.String,
			Headers: parseHeaders(reqH), Trailers: parseHeaders(reqT), Body: body(reqBody, reqSize, reqFlags)}
	}
	if status.Valid {
		f.Response = &flow.Response{Status: int(status.Int64), Reason: reason.String, Proto: respProto.String,
			Headers: parseHeaders(respH), Trailers: parseHeaders(respT), Body: body(respBody, respSize, respF)}
	}
	if tlsJ.Valid {
		f.TLS = &flow.TLSInfo{}
		if err := json.Unmarshal([]byte(tlsJ.String), f.TLS); err != nil {
			return nil, fmt.Errorf("flow %d: tls column: %w", f.ID, err)
		}
	}
	if dnsJ.Valid {
		f.DNS = &flow.DNS{}
		if err := json.Unmarshal([]byte(dnsJ.String), f.DNS); err != nil {
			return nil, fmt.Errorf("flow %d: dns column: %w", f.ID, err)
		}
	}
	if notesJ.Valid {
		_ = json.Unmarshal([]byte(notesJ.String), &f.Notes)
	}
	if destJ.Valid {
		if err := json.Unmarshal([]byte(destJ.String), &f.Dest); err != nil {
			return nil, fmt.Errorf("flow %d: dest column: %w", f.ID, err)
		}
	}
	if err := scanVerdict(&f, verdictJ); err != nil {
		return nil, err
	}
	return &f, nil
}

// fillCommon sets what full and lean reads share.
func fillCommon(f *flow.Flow, start, end int64, client, server, transport string, findings []byte) error {
	if err := scanFindings(f, findings); err != nil {
		return err
	}
	if start != 0 {
		f.Start = time.Unix(0, start)
	}
	if end != 0 {
		f.End = time.Unix(0, end)
	}
	f.Client, f.Server = parseEndpoint(client), parseEndpoint(server)
	f.Transport = flow.ParseTransport(transport)
	return nil
}

func parseEndpoint(s string) flow.Endpoint {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return flow.Endpoint{Addr: ap.Addr(), Port: ap.Port()}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return flow.Endpoint{Addr: a}
	}
	return flow.Endpoint{}
}

func parseHeaders(s sql.NullString) flow.Headers {
	if !s.Valid {
		return nil
	}
	if h, ok := parseHeadersFast(s.String); ok {
		return h
	}
	var pairs [][2]string
	if json.Unmarshal([]byte(s.String), &pairs) != nil {
		return nil
	}
	h := make(flow.Headers, len(pairs))
	for i, p := range pairs {
		h[i] = flow.Header{Name: p[0], Value: p[1]}
	}
	return h
}

// parseHeadersFast reads [["name","value"],...] as headersJSON writes it when
// no string holds an escape: names and values are slices of s, no copying.
// Anything else is left to encoding/json.
func parseHeadersFast(s string) (flow.Headers, bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' || !utf8.ValidString(s) {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] < 0x20 { // escapes and control characters: left to encoding/json
			return nil, false
		}
	}
	h := make(flow.Headers, 0, strings.Count(s, "],[")+1)
	i := 1
	str := func() (string, bool) {
		if i >= len(s) || s[i] != '"' {
			return "", false
		}
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			return "", false
		}
		v := s[i+1 : i+1+j]
		i += j + 2
		return v, true
	}
	if s == "[]" {
		return h, true
	}
	for {
		if i >= len(s) || s[i] != '[' {
			return nil, false
		}
		i++
		name, ok := str()
		if !ok || i >= len(s) || s[i] != ',' {
			return nil, false
		}
		i++
		value, ok := str()
		if !ok || i >= len(s) || s[i] != ']' {
			return nil, false
		}
		i++
		h = append(h, flow.Header{Name: name, Value: value})
		if i == len(s)-1 {
			return h, true // the closing bracket
		}
		if i >= len(s) || s[i] != ',' {
			return nil, false
		}
		i++
	}
}

func body(data []byte, size, flags sql.NullInt64) flow.Body {
	return flow.Body{Data: data, Size: size.Int64, Truncated: flags.Int64&1 != 0, Incomplete: flags.Int64&2 != 0}
}
