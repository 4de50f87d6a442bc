package web

import (
	"context"
	"errors"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/store/record"
)

// Session is a stored capture run.
type Session struct {
	ID      int64     `json:"id"`
	Name    string    `json:"name"`
	Started time.Time `json:"started"`
	Source  string    `json:"source"`
	Flows   int64     `json:"flows"`
	// Live marks the session the running capture writes.
	Live bool `json:"live,omitempty"`
}

// Marker is a moment the user marked ("I opened Contacts now"), with a note;
// the flows that follow it, up to the next marker, are its group. It is the
// store's own type.
type Marker = record.Marker

// Store is what the UI needs from the database: the narrow part of it that
// any engine (SQLite, PostgreSQL) provides. The UI answers filters and pages
// from its own index of a session, built from one Flows read, so the store
// is asked for a session's flows once and for single flows when a flow's
// page is opened.
//
// Contract: methods may be called from many goroutines at once. Flow
// returns ErrNoFlow for an id the session does not hold. Flows may leave
// out response content (a lean read) unless full is set; Flow returns the
// flow whole.
// AddMarker may return ErrReadOnly, when the database is only read.
type Store interface {
	Sessions(ctx context.Context) ([]Session, error)
	Flows(ctx context.Context, session int64, full bool, fn func(*flow.Flow) error) error
	Flow(ctx context.Context, session, id int64) (*flow.Flow, error)
	Markers(ctx context.Context, session int64) ([]Marker, error)
	AddMarker(ctx context.Context, m Marker) (Marker, error)
}

// ErrNoFlow is what Store.Flow returns for an id not in the session.
var ErrNoFlow = errors.New("no such flow")

// ErrReadOnly is what Store.AddMarker returns when markers cannot be kept.
var ErrReadOnly = errors.New("the database is opened read-only: markers are added while phonehome run captures")
