package record

import (
	"database/sql"
	"encoding/json"
	"fmt"

	"phonehome/internal/flow"
)

// storedVerdict is the verdict column: the action by its name, so that the
// column reads the same whatever the numbering of actions becomes.
type storedVerdict struct {
	Action     string           `json:"action"`
	Rule       string           `json:"rule,omitempty"`
	List       string           `json:"list,omitempty"`
	Status     int              `json:"status,omitempty"`
	Redactions []flow.Redaction `json:"redactions,omitempty"`
}

// PackVerdict is the column's value: NULL for a flow no rule decided on.
func PackVerdict(v flow.Verdict) any {
	if v.Action == flow.ActionAllow && v.Rule == "" {
		return nil
	}
	b, _ := json.Marshal(storedVerdict{Action: v.Action.String(), Rule: v.Rule, List: v.List, Status: v.Status, Redactions: v.Redactions})
	return string(b)
}

// ScanVerdict sets f.Verdict from the column.
func ScanVerdict(f *flow.Flow, col sql.NullString) error {
	if !col.Valid {
		return nil
	}
	var sv storedVerdict
	if err := json.Unmarshal([]byte(col.String), &sv); err != nil {
		return fmt.Errorf("flow %d: verdict column: %w", f.ID, err)
	}
	a, ok := parseAction(sv.Action)
	if !ok {
		return fmt.Errorf("flow %d: verdict column: unknown action %q (written by a newer phonehome?)", f.ID, sv.Action)
	}
	f.Verdict = flow.Verdict{Action: a, Rule: sv.Rule, List: sv.List, Status: sv.Status, Redactions: sv.Redactions}
	return nil
}

func parseAction(s string) (flow.Action, bool) {
	for _, a := range []flow.Action{flow.ActionAllow, flow.ActionBlock, flow.ActionRedact, flow.ActionPassthrough} {
		if a.String() == s {
			return a, true
		}
	}
	return 0, false
}
