package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"phonehome/internal/store/record"
)

// classify says which fault err is, or nil: the server's SQLSTATE codes for
// a full disk, a read-only server or user, a lock or a shutdown; and any
// failure to reach the server or keep the connection (refused, reset, ended
// while a query ran), which is the usual way a restart or a lost network
// shows. A cancelled context is the caller's own doing and no fault.
func classify(err error) error {
	for _, k := range [...]error{record.ErrFull, record.ErrReadOnly, record.ErrLocked, record.ErrUnavailable} {
		if errors.Is(err, k) {
			return k
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "53100": // disk_full
			return record.ErrFull
		case pe.Code == "25006", pe.Code == "42501": // read_only_sql_transaction, insufficient_privilege
			return record.ErrReadOnly
		case pe.Code == "55P03", pe.Code == "40P01": // lock_not_available, deadlock_detected
			return record.ErrLocked
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "57P"): // connection exceptions; admin or crash shutdown, cannot connect now
			return record.ErrUnavailable
		case strings.HasPrefix(pe.Code, "53"): // out of memory, too many connections
			return record.ErrUnavailable
		}
		return nil
	}
	// not the server's answer: the connection could not be made, was lost,
	// or the server did not answer in time
	var ne net.Error
	var ce *pgconn.ConnectError
	switch {
	case errors.Is(err, context.Canceled):
		return nil // the caller's own doing
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.Timeout(err), pgconn.SafeToRetry(err),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, pgconn.ErrConnClosed):
		return record.ErrUnavailable
	}
	return nil
}

// fault wraps err, from action, with the fault it is (if any) and what to do.
func (s *Store) fault(action string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "3D000": // invalid_catalog_name
			return fmt.Errorf("%s: %w: the database does not exist on the server at %s: create it (createdb, or CREATE DATABASE as its owner), or name another in the URL", action, err, s.where)
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return fmt.Errorf("%s: %w: the server at %s refuses this user: check the user name and password in the URL (or in ~/.pgpass)", action, err, s.where)
		}
	}
	switch kind := classify(err); kind {
	case record.ErrFull:
		return fmt.Errorf("%s: %w (%w): the PostgreSQL server at %s has no disk space left; free some there, then retry", action, kind, err, s.where)
	case record.ErrReadOnly:
		if s.readOnly {
			return fmt.Errorf("%s: %w: the store was opened read-only", action, kind)
		}
		return fmt.Errorf("%s: %w (%w): the server at %s refuses writes (a standby, or a user without the right to write): give a primary server and a user who may write there", action, kind, err, s.where)
	case record.ErrLocked:
		return fmt.Errorf("%s: %w (%w): another connection to %s holds a lock for longer than the lock timeout; end it, then retry", action, kind, err, s.where)
	case record.ErrUnavailable:
		if errors.Is(err, record.ErrUnavailable) {
			return fmt.Errorf("%s: %w", action, err)
		}
		return fmt.Errorf("%s: %w (%w): start the PostgreSQL server at %s or check the network to it; writes succeed again once it answers", action, kind, err, s.where)
	}
	return fmt.Errorf("%s: %w", action, err)
}
