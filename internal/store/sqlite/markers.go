package sqlite

import (
	"context"
	"fmt"

	"phonehome/internal/store/record"
)

// Markers lists a session's markers in time order.
func (s *Store) Markers(ctx context.Context, sess Session) ([]record.Marker, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, at_ns, label, note FROM markers WHERE session_id = ? ORDER BY at_ns, id", sess.ID)
	if err != nil {
		return nil, s.fault(fmt.Sprintf("read the markers of %q", sess.Name), err)
	}
	defer rows.Close()
	ms, err := record.ScanMarkers(rows, sess.ID)
	if err != nil {
		return nil, s.fault(fmt.Sprintf("read the markers of %q", sess.Name), err)
	}
	return ms, nil
}

// AddMarker stores a marker in its session and returns it with its id.
func (s *Store) AddMarker(ctx context.Context, m record.Marker) (record.Marker, error) {
	if s.readOnly {
		return m, s.fault("store a marker", ErrReadOnly)
	}
	res, err := s.db.ExecContext(ctx, "INSERT INTO markers(session_id, at_ns, label, note) VALUES(?, ?, ?, ?)", m.Session, m.Time.UnixNano(), m.Label, m.Note)
	if err != nil {
		return m, s.fault("store a marker", err)
	}
	m.ID, err = res.LastInsertId()
	return m, err
}
