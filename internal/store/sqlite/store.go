// Package sqlite is the store's embedded engine: sessions and their flows in
// a SQLite file (pure Go, no cgo), with embedded migrations and write-ahead
// logging, so a capture can be reported on, compared and re-read long after
// it was made.
//
// Contract: a Writer is owned by one goroutine; readers may run concurrently
// with it (WAL). Bodies are stored up to Options.MaxBody bytes; a cut is
// recorded in the body's flags, never silent. Bodies are kept compressed
// where that pays and read back as they were captured. A store opened with
// Options.ReadOnly writes nothing, not even SQLite's log files, so archived
// evidence can be reported on as it is. The write-ahead log is checkpointed
// by the writers themselves (see Store.unchecked).
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	sqlite3 "modernc.org/sqlite/lib"

	"phonehome/internal/flow"
	"phonehome/internal/store/record"
)

//go:embed migrations/*.sql
var migrations embed.FS

// The types of the store, shared by its engines.
type (
	Options     = record.Options
	Session     = record.Session
	ReadOptions = record.ReadOptions
)

// Errors, as the store defines them.
var (
	ErrSessionExists = record.ErrSessionExists
	ErrNoSession     = record.ErrNoSession
)

// Store is a SQLite database of sessions and flows.
type Store struct {
	db       *sql.DB
	opts     Options
	path     string // "" in memory
	single   bool   // one connection (in memory): no reads side by side
	readOnly bool
	codec    *record.Codec
	plain    bool // store bodies uncompressed (benchmarks compare)
	version  int  // schema version of a database read as it is; else the newest
	// fullCols and leanCols are what reads select: a database read as it is
	// (read-only, older schema) lacks the newer columns.
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

// Open opens (creating if needed) the database at path; "" or ":memory:" keeps
// it in memory for the life of the Store. With opts.ReadOnly the database
// must exist and is only read. An error says what is wrong with the path and
// what to do: a missing directory, a directory given as the path, a file or
// directory that cannot be written (ErrReadOnly), a full disk (ErrFull), a
// file that is not SQLite.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	opts = opts.Defaults()
	inMemory := path == "" || path == ":memory:"
	if inMemory && opts.ReadOnly {
		return nil, errors.New("open store: a store in memory cannot be opened read-only: give the path of a database")
	}
	if !inMemory {
		if err := pathError(path, opts.ReadOnly); err != nil {
			return nil, err
		}
	}
	c, err := record.NewCodec()
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{opts: opts, single: inMemory, readOnly: opts.ReadOnly, codec: c, fullCols: record.FlowColumns, leanCols: record.LeanColumns}
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
		c.Close()
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
	s.version = version
	var old []string
	if version < 5 { // bodies stored as captured, no encoding columns
		old = append(old, "req_body_enc", "0", "resp_body_enc", "0")
	}
	if version < 6 { // no verdicts
		old = append(old, "verdict", "NULL")
	}
	if version < 7 { // no devices
		old = append(old, "device", "''")
	}
	if len(old) > 0 {
		r := strings.NewReplacer(old...)
		s.fullCols, s.leanCols = r.Replace(record.FlowColumns), r.Replace(record.LeanColumns)
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
	s.codec.Close()
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
		if strings.HasSuffix(names[i], "0007_sensors_devices.sql") && version > 0 {
			if err := s.backfillDevices(ctx); err != nil {
				return err
			}
		}
	}
	s.version = len(names)
	return nil
}

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
	enc     record.Encoder // its buffers are reused: the driver copies what it binds
	vals    []any
	// devices are the device names stored for the session; added, those the
	// open batch adds (committed with it)
	devices map[string]bool
	added   []string
}

const batchSize = 2000

var insertFlow = "INSERT INTO flows(" + record.FlowColumns + ") VALUES(" + strings.Repeat("?,", record.NumColumns-1) + "?)"

// Writer returns a writer for the session. Call Close to commit the last batch.
func (s *Store) Writer(ctx context.Context, session Session) *Writer {
	devices := map[string]bool{}
	for _, d := range session.Devices {
		devices[d] = true
	}
	return &Writer{s: s, session: session.ID, ctx: ctx, args: make([]driver.NamedValue, record.NumColumns), vals: make([]any, record.NumColumns),
		enc: record.Encoder{Codec: s.codec, MaxBody: s.opts.MaxBody, Plain: s.plain}, devices: devices}
}

// device records f's device name for the session, in the open batch, the
// first time the writer sees it.
func (w *Writer) device(f *flow.Flow) error {
	name := f.DeviceName()
	if w.devices[name] {
		return nil
	}
	if _, err := w.conn.ExecContext(w.ctx, "INSERT OR IGNORE INTO session_devices(session_id, device) VALUES(?, ?)", w.session, name); err != nil {
		return err
	}
	w.devices[name] = true
	w.added = append(w.added, name)
	return nil
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
	w.bytes += w.enc.Values(w.vals, w.session, f)
	for i, v := range w.vals {
		w.args[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	if err := w.device(f); err != nil {
		return w.fail(storeFlow(f), err)
	}
	var res driver.Result
	err := w.conn.Raw(func(any) error {
		var err error
		res, err = w.stmt.(driver.StmtExecContext).ExecContext(w.ctx, w.args)
		return err
	})
	if err != nil {
		return w.fail(storeFlow(f), err)
	}
	f.ID, _ = res.LastInsertId()
	w.pending++
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
	w.forget()
	w.conn, w.stmt, w.pending, w.bytes = nil, nil, 0, 0
	return w.s.fault(action, err)
}

// forget drops the devices of a batch that was rolled back.
func (w *Writer) forget() {
	for _, d := range w.added {
		delete(w.devices, d)
	}
	w.added = w.added[:0]
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
	w.conn, w.pending, w.added = nil, 0, w.added[:0]
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

// Flows calls fn for each flow of the session in the order they were stored,
// with its findings, one at a time, so memory stays bounded however large the
// session.
func (s *Store) Flows(ctx context.Context, session Session, fn func(*flow.Flow) error) error {
	return s.FlowsWith(ctx, session, ReadOptions{}, fn)
}

// FlowsWith is Flows with columns left out as opts say.
func (s *Store) FlowsWith(ctx context.Context, session Session, opts ReadOptions, fn func(*flow.Flow) error) error {
	// Read in rowid order, the order of writing; the index on session_id
	// would cost a seek per row and a sort.
	var lo, hi sql.NullInt64
	if err := s.db.QueryRowContext(ctx, "SELECT min(id), max(id) FROM flows WHERE session_id = ?", session.ID).Scan(&lo, &hi); err != nil {
		return fmt.Errorf("read flows of %q: %w", session.Name, err)
	}
	if !lo.Valid {
		return nil // no flows
	}
	if lo.Int64, hi.Int64 = opts.Clamp(lo.Int64, hi.Int64); lo.Int64 > hi.Int64 {
		return nil
	}
	cols := s.fullCols
	if opts.Lean {
		cols = s.leanCols
	}
	query := "SELECT id, " + cols + " FROM flows NOT INDEXED WHERE id BETWEEN ? AND ? AND session_id = ? ORDER BY id"
	var chunk int64
	if opts.Lean && !s.single {
		chunk = 4096
	}
	return record.Read(ctx, lo.Int64, hi.Int64, opts.Lean, chunk, s.codec, func(ctx context.Context, from, to int64) (record.Rows, func(), error) {
		rows, err := s.db.QueryContext(ctx, query, from, to, session.ID)
		if err != nil {
			return nil, nil, err
		}
		return rows, func() { rows.Close() }, nil
	}, func(err error) error { return fmt.Errorf("read flows of %q: %w", session.Name, err) }, fn)
}
