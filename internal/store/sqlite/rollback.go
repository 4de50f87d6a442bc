package sqlite

// Rollback drops the flows added since the last commit. A failed Add or
// Flush has dropped them already (see Add), so a caller that will send them
// again may call it or not: none of them is stored twice. The writer then
// takes a new batch.
func (w *Writer) Rollback() error {
	if w.conn == nil {
		return nil
	}
	w.conn.Raw(func(any) error { return w.stmt.Close() })
	_, err := w.conn.ExecContext(w.ctx, "ROLLBACK")
	w.conn.Close()
	w.forget()
	w.conn, w.stmt, w.pending, w.bytes = nil, nil, 0, 0
	return err
}
