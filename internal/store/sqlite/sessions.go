package sqlite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"phonehome/internal/store/record"
)

// NewSession starts a new session named, started, from the source and by
// the sensor sess gives (its ID, flows and devices are ignored).
func (s *Store) NewSession(ctx context.Context, sess Session) (Session, error) {
	action := fmt.Sprintf("create session %q", sess.Name)
	if s.readOnly {
		return Session{}, s.fault(action, ErrReadOnly)
	}
	res, err := s.db.ExecContext(ctx, "INSERT INTO sessions(name, started, source, sensor) VALUES(?, ?, ?, ?)", sess.Name, sess.Started.UnixNano(), sess.Source, sess.Sensor)
	if err != nil {
		if e := (*sqlite.Error)(nil); errors.As(err, &e) && e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
			return Session{}, fmt.Errorf("%s: %w; choose another name with --session", action, ErrSessionExists)
		}
		return Session{}, s.fault(action, err)
	}
	id, _ := res.LastInsertId()
	return Session{ID: id, Name: sess.Name, Started: sess.Started, Source: sess.Source, Sensor: sess.Sensor}, nil
}

// Sessions lists the sessions, oldest first, with their flow counts and
// devices.
func (s *Store) Sessions(ctx context.Context) ([]Session, error) {
	sensor := "s.sensor"
	if s.version < 7 {
		sensor = "''"
	}
	rows, err := s.db.QueryContext(ctx, `SELECT s.id, s.name, s.started, s.source, `+sensor+`,
		(SELECT count(*) FROM flows f WHERE f.session_id = s.id) FROM sessions s ORDER BY s.started, s.id`)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		var ss Session
		var started int64
		if err := rows.Scan(&ss.ID, &ss.Name, &started, &ss.Source, &ss.Sensor, &ss.Flows); err != nil {
			return nil, err
		}
		ss.Started = time.Unix(0, started)
		out = append(out, ss)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	rows.Close()
	devices, err := s.devices(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the devices of sessions: %w", err)
	}
	for i := range out {
		out[i].Devices = devices[out[i].ID]
	}
	return out, nil
}

// devices are the device names of each session, sorted. A database read as
// it is from before they were listed has them worked out from its flows.
func (s *Store) devices(ctx context.Context) (map[int64][]string, error) {
	query := "SELECT session_id, device FROM session_devices ORDER BY session_id, device"
	if s.version < 7 {
		query = "SELECT DISTINCT session_id, client FROM flows"
	}
	rows, err := s.db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64][]string{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, err
		}
		if s.version < 7 {
			name = record.ClientDevice(name)
		}
		out[id] = append(out[id], name)
	}
	if s.version < 7 {
		for id, names := range out {
			slices.Sort(names)
			out[id] = slices.Compact(names)
		}
	}
	return out, rows.Err()
}

// backfillDevices lists the devices of the sessions stored before migration
// 0007: their flows are known by the client's address.
func (s *Store) backfillDevices(ctx context.Context) error {
	old := s.version
	s.version = 6
	devices, err := s.devices(ctx)
	s.version = old
	if err != nil {
		return fmt.Errorf("list the devices of earlier sessions: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for id, names := range devices {
		for _, name := range names {
			if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO session_devices(session_id, device) VALUES(?, ?)", id, name); err != nil {
				return fmt.Errorf("list the devices of earlier sessions: %w", err)
			}
		}
	}
	return tx.Commit()
}

// SessionByName finds a session; an empty name means the newest.
func (s *Store) SessionByName(ctx context.Context, name string) (Session, error) {
	all, err := s.Sessions(ctx)
	if err != nil {
		return Session{}, err
	}
	return record.Find(all, name)
}
