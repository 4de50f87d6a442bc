package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"phonehome/internal/flow"
)

// A flow's findings are also kept packed in flows.findings: per finding, kind,
// value, path and method as varint-length-prefixed bytes, the confidence as a
// float64 (8 bytes, little endian) and context as one byte. Reading a session
// is then one row per flow instead of one more row per finding, which on a
// tracker-heavy session is most of the rows.

func packFindings(fs []flow.Finding) []byte {
	if len(fs) == 0 {
		return nil
	}
	n := 0
	for _, x := range fs {
		n += len(x.Kind) + len(x.Value) + len(x.Path) + len(x.Method.String()) + 4*binary.MaxVarintLen32 + 9
	}
	b := make([]byte, 0, n)
	for _, x := range fs {
		for _, s := range [...]string{string(x.Kind), x.Value, x.Path, x.Method.String()} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x.Confidence))
		c := byte(0)
		if x.Context {
			c = 1
		}
		b = append(b, c)
	}
	return b
}

var errPackedFindings = errors.New("findings column: malformed")

func unpackFindings(b []byte) ([]flow.Finding, error) {
	if len(b) == 0 {
		return nil, nil
	}
	// one string holds all the text; the findings' fields are slices of it
	var out []flow.Finding
	all := string(b)
	i := 0
	str := func() (string, error) {
		n, w := binary.Uvarint(b[i:])
		if w <= 0 || n > uint64(len(b)-i-w) {
			return "", errPackedFindings
		}
		i += w
		s := all[i : i+int(n)]
		i += int(n)
		return s, nil
	}
	for i < len(b) {
		var x flow.Finding
		var err error
		var kind, method string
		for _, p := range [...]*string{&kind, &x.Value, &x.Path, &method} {
			if *p, err = str(); err != nil {
				return nil, err
			}
		}
		x.Kind, x.Method = flow.Kind(kind), flow.ParseMethod(method)
		if len(b)-i < 9 || b[i+8] > 1 {
			return nil, errPackedFindings
		}
		x.Confidence = math.Float64frombits(binary.LittleEndian.Uint64(b[i:]))
		if math.IsNaN(x.Confidence) { // never packed: confidences are 0..1
			return nil, errPackedFindings
		}
		x.Context = b[i+8] == 1
		i += 9
		out = append(out, x)
	}
	return out, nil
}

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
		_, err := update.ExecContext(ctx, packFindings(fs), cur)
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

// scanFindings reads the packed findings column.
func scanFindings(f *flow.Flow, b []byte) error {
	fs, err := unpackFindings(b)
	if err != nil {
		return fmt.Errorf("flow %d: %w", f.ID, err)
	}
	f.Findings = fs
	return nil
}
