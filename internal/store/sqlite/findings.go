package sqlite

import (
	"context"
	"fmt"

	"phonehome/internal/flow"
	"phonehome/internal/store/record"
)

// backfillFindings packs the findings of flows stored before migration 0003,
// one flow at a time.
func (s *Store) backfillFindings(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "SELECT flow_id, kind, value, path, method, confidence, context FROM findings ORDER BY flow_id, id")
	if err != nil {
		return err
	}
	defer rows.Close()
	update, err := tx.PrepareContext(ctx, "UPDATE flows SET findings = ? WHERE id = ?")
	if err != nil {
		return err
	}
	defer update.Close()
	var cur int64
	var fs []flow.Finding
	flush := func() error {
		if len(fs) == 0 {
			return nil
		}
		_, err := update.ExecContext(ctx, record.PackFindings(fs), cur)
		fs = fs[:0]
		return err
	}
	for rows.Next() {
		var id int64
		var x flow.Finding
		var method string
		if err := rows.Scan(&id, &x.Kind, &x.Value, &x.Path, &method, &x.Confidence, &x.Context); err != nil {
			return err
		}
		x.Method = flow.ParseMethod(method)
		if id != cur {
			if err := flush(); err != nil {
				return err
			}
			cur = id
		}
		fs = append(fs, x)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	rows.Close()
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("pack findings of earlier flows: %w", err)
	}
	return nil
}
