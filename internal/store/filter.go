package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"phonehome/internal/flow"
	"phonehome/internal/store/record"
)

// Filter chooses sessions and flows: by the sensor that captured them, the
// device that sent them, and when. The zero Filter chooses everything.
type Filter struct {
	Sensor string // "" any
	Device string // a flow.Flow.DeviceName; "" any
	// Since and Until bound when flows started: Since <= start < Until; zero
	// leaves that side open.
	Since, Until time.Time
}

// IsZero says whether f chooses everything.
func (f Filter) IsZero() bool { return f == Filter{} }

// Session says whether the session may hold flows f chooses.
func (f Filter) Session(s Session) bool {
	switch {
	case f.Sensor != "" && s.Sensor != f.Sensor:
		return false
	case f.Device != "" && !s.HasDevice(f.Device):
		return false
	case !f.Until.IsZero() && !s.Started.Before(f.Until):
		return false
	}
	return true
}

// Flow says whether f chooses the flow.
func (f Filter) Flow(fl *flow.Flow) bool {
	switch {
	case f.Device != "" && fl.DeviceName() != f.Device:
		return false
	case !f.Since.IsZero() && fl.Start.Before(f.Since):
		return false
	case !f.Until.IsZero() && !fl.Start.Before(f.Until):
		return false
	}
	return true
}

// String says what f chooses, for headings.
func (f Filter) String() string {
	var parts []string
	if f.Sensor != "" {
		parts = append(parts, "sensor "+f.Sensor)
	}
	if f.Device != "" {
		parts = append(parts, "device "+f.Device)
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since "+f.Since.Format("2006-01-02 15:04"))
	}
	if !f.Until.IsZero() {
		parts = append(parts, "until "+f.Until.Format("2006-01-02 15:04"))
	}
	return strings.Join(parts, ", ")
}

// Select returns the sessions named (each must exist and match f), or, with
// no names, every session f matches, oldest first. It fails when nothing
// matches, saying what there is.
func (s *Store) Select(ctx context.Context, names []string, f Filter) ([]Session, error) {
	all, err := s.e.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	var out []Session
	if len(names) > 0 {
		for _, name := range names {
			sess, err := record.Find(all, name)
			if err != nil {
				return nil, err
			}
			if !f.Session(sess) {
				return nil, fmt.Errorf("%w: session %q holds no flows of %s", ErrNoSession, name, f)
			}
			out = append(out, sess)
		}
		return out, nil
	}
	for _, sess := range all {
		if f.Session(sess) {
			out = append(out, sess)
		}
	}
	if len(out) == 0 {
		if len(all) == 0 {
			return nil, fmt.Errorf("%w: the store holds no sessions yet", ErrNoSession)
		}
		return nil, fmt.Errorf("%w of %s among the store's %d sessions (phonehome sessions lists them, with their sensors and devices)", ErrNoSession, f, len(all))
	}
	return out, nil
}

// FlowsOf calls fn for each flow f chooses of the sessions, session after
// session, each in the order it was stored.
func (s *Store) FlowsOf(ctx context.Context, sessions []Session, f Filter, opts ReadOptions, fn func(*flow.Flow) error) error {
	for _, sess := range sessions {
		err := s.e.FlowsWith(ctx, sess, opts, func(fl *flow.Flow) error {
			if !f.Flow(fl) {
				return nil
			}
			return fn(fl)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
