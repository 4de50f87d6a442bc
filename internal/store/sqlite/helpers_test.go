package sqlite

import (
	"context"
	"time"
)

// CreateSession starts a session by this machine, as the tests of the engine
// name them.
func (s *Store) CreateSession(ctx context.Context, name string, started time.Time, source string) (Session, error) {
	return s.NewSession(ctx, Session{Name: name, Started: started, Source: source})
}

// undoSensors are the statements that make a database look as it was before
// migration 0007 (sensors and devices).
func undoSensors() []string {
	return []string{"DROP TABLE session_devices", "ALTER TABLE flows DROP COLUMN device", "ALTER TABLE sessions DROP COLUMN sensor"}
}
