-- Each flow's findings, packed in one value (see packFindings), so that a
-- report reads one row per flow; the findings table stays for queries by kind
-- and value. Rows written before this migration are filled in by phonehome
-- right after it.
ALTER TABLE flows ADD COLUMN findings BLOB;
