package store

import (
	"context"
	"fmt"
)

// DeleteSession removes a session and its flows: a run that captured
// nothing leaves no empty session behind.
func (s *Store) DeleteSession(ctx context.Context, sess Session) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM sessions WHERE id = ?", sess.ID); err != nil {
		return fmt.Errorf("delete session %q: %w", sess.Name, err)
	}
	return nil
}
