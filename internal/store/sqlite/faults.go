package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"phonehome/internal/store/record"
)

// Faults of the place a store lives in (see record.ErrFull): they pass
// (space is freed, the file system is made writable again, the other program
// ends), and then the same writes succeed. Errors of Open, CreateSession and
// the Writer wrap one of them when it is the cause, with the action that
// failed and what to do; test with errors.Is.
var (
	ErrFull     = record.ErrFull
	ErrReadOnly = record.ErrReadOnly
	ErrLocked   = record.ErrLocked
)

// sqliteCode is the primary SQLite result code of err, or -1.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code() & 0xff
	}
	return -1
}

// fault wraps err, from action, with the fault it is (if any) and what to do.
func (s *Store) fault(action string, err error) error {
	kind, cause := s.classify(err)
	where := s.path
	if where == "" {
		where = "the store in memory"
	}
	switch kind {
	case ErrFull:
		return fmt.Errorf("%s: %w (%w): free space on the file system holding %s, then retry", action, kind, err, where)
	case ErrReadOnly:
		if s.readOnly {
			return fmt.Errorf("%s: %w: the store was opened read-only", action, kind)
		}
		if cause != nil {
			err = cause
		}
		return fmt.Errorf("%s: %w (%w): make %s and its directory writable, then retry", action, kind, err, where)
	case ErrLocked:
		return fmt.Errorf("%s: %w (%w): another program holds a write transaction on %s (a second phonehome, an sqlite3 shell, another writer of this store); end it, then retry", action, kind, err, where)
	}
	return fmt.Errorf("%s: %w", action, err)
}

// classify says which fault err is. SQLite names a full disk, a lock and a
// read-only database itself; when it only says it could not open or write a
// file (a new connection's log on a file system remounted read-only), the
// directory is probed for the operating system's reason, which is returned
// as cause.
func (s *Store) classify(err error) (kind, cause error) {
	for _, k := range [...]error{ErrFull, ErrReadOnly, ErrLocked} {
		if errors.Is(err, k) {
			return k, nil
		}
	}
	switch sqliteCode(err) {
	case sqlite3.SQLITE_FULL:
		return ErrFull, nil
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return ErrLocked, nil
	case sqlite3.SQLITE_READONLY:
		return ErrReadOnly, nil
	case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_PERM:
		if s.path == "" {
			return nil, nil
		}
		return probeWrite(s.path)
	}
	return nil, nil
}

// probeWrite finds out why path or the files SQLite keeps beside it (the
// write-ahead log and its index) cannot be written: it creates and removes
// a file in the directory, and asks whether path may be written.
func probeWrite(path string) (kind, cause error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".phonehome-probe-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) { // the probe's name would only confuse
			err = &fs.PathError{Op: "create a file in", Path: dir, Err: pe.Err}
		}
		return osFault(err), err
	}
	f.Close()
	os.Remove(f.Name())
	if err := canWrite(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return osFault(err), err
	}
	return nil, nil
}

// osFault maps an operating system error to a fault, or nil.
func osFault(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return ErrFull
	case errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission):
		return ErrReadOnly
	}
	return nil
}

// openError explains why the database at path could not be opened: what
// is wrong with the path, in the user's terms, and what to do. A file that
// is not SQLite is said to be so; anything else is err with the action.
func openError(path string, readOnly bool, err error) error {
	if code := sqliteCode(err); code == sqlite3.SQLITE_NOTADB {
		return fmt.Errorf("open store %s: not a SQLite database (is it a SQLite file? give a phonehome database or a new path): %w", path, err)
	}
	if e := pathError(path, readOnly); e != nil {
		return e
	}
	if err := canRead(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("open store %s: cannot read it (%w): ask its owner for read access, or for a copy", path, err)
	}
	if !readOnly {
		if kind, cause := probeWrite(path); kind != nil {
			return writeError(path, kind, cause)
		}
	}
	if sqliteCode(err) == sqlite3.SQLITE_FULL {
		return fmt.Errorf("open store %s: %w (%w): free space on the file system holding it", path, ErrFull, err)
	}
	return fmt.Errorf("open store %s: %w", path, err)
}

// pathError reports a path that cannot hold a database at all: a
// directory, a missing directory, or (for reading) a missing file.
func pathError(path string, readOnly bool) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("open store %s: it is a directory, not a database file: give a file path, such as %s", path, filepath.Join(path, "phonehome.db"))
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("open store %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	di, derr := os.Stat(dir)
	switch {
	case errors.Is(derr, fs.ErrNotExist):
		return &problem{fmt.Sprintf("open store %s: directory %s does not exist: create it (mkdir -p %s) or give a path in an existing directory", path, dir, dir), fs.ErrNotExist}
	case derr == nil && !di.IsDir():
		return fmt.Errorf("open store %s: %s is not a directory: give a path in a directory", path, dir)
	case readOnly:
		return &problem{fmt.Sprintf("open store %s: no such file: check the path; reading creates nothing", path), fs.ErrNotExist}
	}
	return nil
}

// writeError says that path cannot be written, and why, in the user's terms.
func writeError(path string, kind, cause error) error {
	if kind == ErrFull {
		return fmt.Errorf("open store %s: %w (%w): free space on the file system holding it", path, kind, cause)
	}
	_, err := os.Stat(path)
	exists := err == nil
	var pe *fs.PathError
	switch {
	case !exists && errors.Is(cause, syscall.EROFS):
		return fmt.Errorf("open store %s: cannot create it, %w: the file system is mounted read-only (%w): give a path on a writable file system", path, kind, cause)
	case !exists:
		return fmt.Errorf("open store %s: cannot create it, %w (%w): choose a directory you can write to", path, kind, cause)
	case errors.Is(cause, syscall.EROFS):
		return fmt.Errorf("open store %s: %w: the file system holding it is mounted read-only (%w): open the store read-only to read it, or copy it to a writable file system", path, kind, cause)
	case errors.As(cause, &pe) && pe.Path == path:
		return fmt.Errorf("open store %s: %w (%w): make it writable, or open the store read-only to read it", path, kind, cause)
	}
	return fmt.Errorf("open store %s: %w: SQLite keeps its log beside the database and cannot create it in %s (%w): make the directory writable, or open the store read-only to read it", path, kind, filepath.Dir(path), cause)
}

// problem is an error whose cause is a standard one (for errors.Is) that its
// message already says in other words.
type problem struct {
	msg   string
	cause error
}

func (p *problem) Error() string { return p.msg }
func (p *problem) Unwrap() error { return p.cause }
