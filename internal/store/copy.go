package store

import (
	"context"
	"errors"
	"fmt"

	"phonehome/internal/flow"
	"phonehome/internal/store/record"
)

// Copied says what Copy did with one session.
type Copied struct {
	Session Session
	Flows   int64
	// Already: the destination held the whole session before; nothing was
	// written.
	Already bool
}

// Copy copies the sessions from src into dst, with their names, start
// times, sources, sensors and every flow as it was stored. It is idempotent:
// a session dst already holds whole (the same name, start and sensor, as
// many flows) is left alone; one an interrupted copy left half-written is
// written again. A different session of the same name in dst is an error,
// and nothing of that session is copied. done, if not nil, is told about
// each session as it is finished.
func Copy(ctx context.Context, src, dst *Store, sessions []Session, done func(Copied)) error {
	have, err := dst.Sessions(ctx)
	if err != nil {
		return err
	}
	for _, sess := range sessions {
		c, err := copySession(ctx, src, dst, have, sess)
		if err != nil {
			return err
		}
		if done != nil {
			done(c)
		}
	}
	return nil
}

func copySession(ctx context.Context, src, dst *Store, have []Session, sess Session) (Copied, error) {
	if old, err := record.Find(have, sess.Name); err == nil {
		same := old.Started.Equal(sess.Started) && old.Sensor == sess.Sensor && old.Source == sess.Source
		switch {
		case same && old.Flows == sess.Flows:
			return Copied{Session: old, Flows: old.Flows, Already: true}, nil
		case !same:
			return Copied{}, fmt.Errorf("copy session %q: %w: %s already holds a different session of that name (started %s, sensor %q): rename one of them, or copy the others with --session",
				sess.Name, ErrSessionExists, dst.Where(), old.Started.Format("2006-01-02 15:04:05"), old.Sensor)
		}
		// the same session, part of it: what an interrupted copy left
		if err := dst.DeleteSession(ctx, old); err != nil {
			return Copied{}, fmt.Errorf("copy session %q: remove what an earlier copy left: %w", sess.Name, err)
		}
	}
	out, err := dst.NewSession(ctx, Session{Name: sess.Name, Started: sess.Started, Source: sess.Source, Sensor: sess.Sensor})
	if err != nil {
		return Copied{}, fmt.Errorf("copy session %q: %w", sess.Name, err)
	}
	w := dst.Writer(ctx, out)
	var n int64
	err = src.Flows(ctx, sess, func(f *flow.Flow) error {
		n++
		return w.Add(f)
	})
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = copyMarkers(ctx, src, dst, sess, out)
	}
	if err != nil {
		// a copy is whole or absent: the next one starts afresh
		err = fmt.Errorf("copy session %q: %w", sess.Name, err)
		if derr := dst.DeleteSession(context.WithoutCancel(ctx), out); derr != nil {
			err = errors.Join(err, fmt.Errorf("and removing the part copied failed too (the next copy removes it): %w", derr))
		}
		return Copied{}, err
	}
	out.Flows = n
	return Copied{Session: out, Flows: n}, nil
}

// copyMarkers copies a session's markers to its copy out.
func copyMarkers(ctx context.Context, src, dst *Store, sess, out Session) error {
	ms, err := src.Markers(ctx, sess)
	if err != nil {
		return err
	}
	for _, m := range ms {
		m.Session = out.ID
		if _, err := dst.AddMarker(ctx, m); err != nil {
			return err
		}
	}
	return nil
}
