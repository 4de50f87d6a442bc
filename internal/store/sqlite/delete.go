package sqlite

import (
	"context"
	"fmt"
)

// DeleteSession removes a session and its flows: a run that captured
// nothing leaves no empty session behind.
func (s *Store) DeleteSession(ctx context.Context, sess Session) error {
	action := fmt.Sprintf("delete session %q", sess.Name)
	if s.readOnly {
		return s.fault(action, ErrReadOnly)
	}
	if _, err := s.db.ExecContext(ctx, "DELETE FROM sessions WHERE id = ?", sess.ID); err != nil {
		return s.fault(action, err)
	}
	return nil
}
