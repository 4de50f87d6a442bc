// Package record is what the store's engines (SQLite and PostgreSQL) share:
// a session and the options of a store, the faults a store reports, and how a
// flow is held in a row (its columns, compressed bodies, packed findings,
// headers and verdict as JSON), so that a flow written by one engine reads
// back from the other exactly as it was captured.
package record

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Session is one capture run: a live proxy run or one analyze of files, made
// by one sensor (the machine that captured it).
type Session struct {
	ID      int64
	Name    string
	Started time.Time
	Source  string
	// Sensor names the machine that captured the session ("" for sessions
	// stored before sensors were recorded).
	Sensor string
	Flows  int64
	// Devices are the names the session's flows are reported under
	// (flow.Flow.DeviceName), sorted.
	Devices []string
}

// HasDevice says whether a flow of the session came from the device.
func (s Session) HasDevice(name string) bool {
	_, ok := slices.BinarySearch(s.Devices, name)
	return ok
}

// Options configure a store.
type Options struct {
	MaxBody int // bytes of each body stored (default 1 MiB)
	// ReadOnly opens an existing database for reading only: nothing is
	// written to it (for SQLite, not even beside it). Writes fail with
	// ErrReadOnly.
	ReadOnly bool
	// LockTimeout is how long a write waits for another connection's write
	// transaction (SQLite) or a lock (PostgreSQL) before failing with
	// ErrLocked (default 5 s).
	LockTimeout time.Duration
	// Sensor names this machine in the sessions it creates (default: the
	// host name).
	Sensor string
}

// Defaults fills in what o leaves unset.
func (o Options) Defaults() Options {
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	return o
}

// ReadOptions choose what a read of flows skips.
type ReadOptions struct {
	// Lean reads only what a report uses: times, endpoints, device, host,
	// transport, byte counts, the request (line, headers, body), the status
	// and the response's size, DNS, destination and app. Response content,
	// trailers, TLS details and notes, most of the bytes, are left out.
	Lean bool
	// From and To, when not 0, bound the ids of the flows read (both
	// included): one flow by its id, or a page of a session.
	From, To int64
}

// Clamp narrows a session's id range lo..hi to o's From and To; empty when
// lo > hi.
func (o ReadOptions) Clamp(lo, hi int64) (int64, int64) {
	if o.From > 0 {
		lo = max(lo, o.From)
	}
	if o.To > 0 {
		hi = min(hi, o.To)
	}
	return lo, hi
}

// Marker is a moment a user marked in a session ("I opened Contacts now",
// from the web UI): the flows from it to the next marker are its group.
type Marker struct {
	ID      int64     `json:"id"`
	Session int64     `json:"session"`
	Time    time.Time `json:"time"`
	Label   string    `json:"label"`
	Note    string    `json:"note,omitempty"`
}

// ErrSessionExists is returned when creating a session under a name already
// used.
var ErrSessionExists = errors.New("session already exists")

// ErrNoSession is returned when a named session is not in the store.
var ErrNoSession = errors.New("no such session")

// Faults of the place a store lives in rather than of phonehome: they pass
// (space is freed, the file system is made writable again, the other program
// ends, the server comes back), and then the same writes succeed. Errors of
// opening, creating sessions and writing wrap one of them when it is the
// cause, with the action that failed and what to do; test with errors.Is.
var (
	// ErrFull: the file system (or the server's disk) has no space left.
	ErrFull = errors.New("disk full")
	// ErrReadOnly: the database cannot be written (file mode, a read-only
	// mount, a read-only server or user), or the store was opened with
	// ReadOnly.
	ErrReadOnly = errors.New("database is read-only")
	// ErrLocked: another connection, usually another process, holds a lock
	// the write needs for longer than Options.LockTimeout.
	ErrLocked = errors.New("database is locked by another process")
	// ErrUnavailable: the database server cannot be reached, or it dropped
	// the connection (restarted, shut down, network lost). Writes succeed
	// again once it is back; nothing needs reopening.
	ErrUnavailable = errors.New("database server unavailable")
)

// Find finds a session by name among all (oldest first); an empty name means
// the newest. The error lists the names there are.
func Find(all []Session, name string) (Session, error) {
	if len(all) == 0 {
		return Session{}, fmt.Errorf("%w: the store holds no sessions yet", ErrNoSession)
	}
	if name == "" {
		return all[len(all)-1], nil
	}
	for _, s := range all {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, len(all))
	for i, s := range all {
		names[i] = s.Name
	}
	return Session{}, fmt.Errorf("%w %q (the store has: %s)", ErrNoSession, name, strings.Join(names, ", "))
}

// MarkerRows is what both engines' query results give: database/sql's Rows
// and pgx's.
type MarkerRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanMarkers reads the rows of a query of a session's markers (id, at_ns,
// label, note), in the query's order.
func ScanMarkers(rows MarkerRows, session int64) ([]Marker, error) {
	var out []Marker
	for rows.Next() {
		m := Marker{Session: session}
		var at int64
		if err := rows.Scan(&m.ID, &at, &m.Label, &m.Note); err != nil {
			return nil, err
		}
		m.Time = time.Unix(0, at).UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}
