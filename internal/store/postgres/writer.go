package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"phonehome/internal/flow"
	"phonehome/internal/store/record"
)

// Writer adds flows to one session. It keeps the batch's rows in memory and
// sends them with COPY in one transaction when it commits, with the names of
// devices the session had not shown before: one round trip per batch, not
// one per flow, which is what lets one sensor store tens of thousands of
// flows a second over a network.
//
// A batch is committed by Flush, Idle and Close, and by Add itself once it
// holds batchSize flows or batchBytes of rows. See store.Writer for what a
// failure leaves behind: here, nothing of the batch reached the database
// unless its COMMIT did.
type Writer struct {
	s       *Store
	session int64
	ctx     context.Context
	enc     record.Encoder
	rows    [][]any
	bytes   int64
	// next and last are the block of flow ids this writer holds
	next, last int64
	devices    map[string]bool // stored for the session
	added      []string        // new in the open batch
}

const (
	batchSize  = 2000
	batchBytes = 32 << 20
	idBlock    = 1024 // the flow_ids sequence's increment
	// sendTimeout bounds one commit: a server that stops answering without
	// closing the connection fails the batch, to be sent again.
	sendTimeout = 60 * time.Second
)

// Writer returns a writer for the session. Call Close to commit the last
// batch.
func (s *Store) Writer(ctx context.Context, sess record.Session) *Writer {
	devices := map[string]bool{}
	for _, d := range sess.Devices {
		devices[d] = true
	}
	return &Writer{s: s, session: sess.ID, ctx: ctx, devices: devices,
		enc: record.Encoder{Codec: s.codec, MaxBody: s.opts.MaxBody, Fresh: true, Text: true}}
}

// Add stores f and sets f.ID; see store.Writer. The error wraps ErrFull,
// ErrReadOnly, ErrLocked or ErrUnavailable when the cause may pass.
func (w *Writer) Add(f *flow.Flow) error {
	if w.s.readOnly {
		f.ID = 0
		return w.s.fault(storeFlow(f), record.ErrReadOnly)
	}
	if w.next == w.last {
		// ids are taken a block at a time; a block left unused by a failed
		// batch is a gap, never an id used twice
		var start int64
		if err := w.s.pool.QueryRow(w.ctx, "SELECT nextval('flow_ids')").Scan(&start); err != nil {
			w.drop()
			f.ID = 0
			return w.s.fault(storeFlow(f), err)
		}
		w.next, w.last = start, start+idBlock
	}
	row := make([]any, record.NumColumns+1)
	w.bytes += w.enc.Values(row[1:], w.session, f)
	f.ID = w.next
	row[0] = w.next
	w.next++
	w.rows = append(w.rows, row)
	if name := record.Text(f.DeviceName()); !w.devices[name] {
		w.devices[name] = true
		w.added = append(w.added, name)
	}
	if len(w.rows) >= batchSize || w.bytes >= batchBytes {
		if err := w.Flush(); err != nil {
			f.ID = 0
			return err
		}
	}
	return nil
}

// storeFlow names the action of storing f, for errors.
func storeFlow(f *flow.Flow) string { return fmt.Sprintf("store flow %d of %s", f.Seq, f.Source) }

// columns are the COPY's columns: the id, then record.FlowColumns.
func columns() []string {
	cols := []string{"id"}
	for _, c := range strings.Split(record.FlowColumns, ",") {
		cols = append(cols, strings.TrimSpace(c))
	}
	return cols
}

// Pending returns how many flows were added since the last commit.
func (w *Writer) Pending() int { return len(w.rows) }

// Flush sends and commits the flows added so far. On failure none of them
// is stored.
func (w *Writer) Flush() error {
	if len(w.rows) == 0 {
		return nil
	}
	n := len(w.rows)
	err := w.send()
	w.rows, w.bytes = w.rows[:0], 0
	if err != nil {
		w.drop()
		return w.s.fault(fmt.Sprintf("store %d flows", n), err)
	}
	w.added = w.added[:0]
	return nil
}

func (w *Writer) send() error {
	ctx, cancel := context.WithTimeout(w.ctx, sendTimeout)
	defer cancel()
	tx, err := w.s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"flows"}, columns(), pgx.CopyFromRows(w.rows)); err != nil {
		return err
	}
	for _, d := range w.added {
		if _, err := tx.Exec(ctx, "INSERT INTO session_devices(session_id, device) VALUES($1, $2) ON CONFLICT DO NOTHING", w.session, d); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// drop forgets the open batch: its rows and the devices it would have added.
func (w *Writer) drop() {
	for _, d := range w.added {
		delete(w.devices, d)
	}
	w.rows, w.bytes, w.added = w.rows[:0], 0, w.added[:0]
}

// Idle commits what is pending (PostgreSQL tidies up on its own).
func (w *Writer) Idle() error { return w.Flush() }

// Rollback drops the flows added since the last commit.
func (w *Writer) Rollback() error {
	w.drop()
	return nil
}

// Close commits what is pending.
func (w *Writer) Close() error { return w.Flush() }
