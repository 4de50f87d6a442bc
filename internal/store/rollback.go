package store

// Rollback drops the flows added since the last successful Flush: after a
// failed Add or Flush, a caller that will send those flows again calls it so
// that none of them is stored twice. The writer then takes a new batch.
func (w *Writer) Rollback() error {
	if w.conn == nil {
		return nil
	}
	w.conn.Raw(func(any) error { return w.stmt.Close() })
	_, err := w.conn.ExecContext(w.ctx, "ROLLBACK")
	w.conn.Close()
	w.conn, w.stmt, w.pending, w.bytes = nil, nil, 0, 0
	return err
}
