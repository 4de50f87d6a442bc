-- What the policy decided about each flow, as JSON: {"action":"block",
-- "rule":"...","list":"...","status":451,"redactions":[...]}; NULL when the
-- flow was allowed by no rule, and in rows written before this migration.
ALTER TABLE flows ADD COLUMN verdict TEXT;
