-- Who received each flow and what it carried, as detection found it.
ALTER TABLE flows ADD COLUMN dest TEXT; -- JSON {"Owner","Category","SDK","List","Site","Party"}
ALTER TABLE flows ADD COLUMN app TEXT NOT NULL DEFAULT '';

CREATE TABLE findings (
    id         INTEGER PRIMARY KEY,
    flow_id    INTEGER NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    confidence REAL    NOT NULL,
    context    INTEGER NOT NULL DEFAULT 0 -- 1: a device description without identifying data beside it
);

CREATE INDEX findings_flow ON findings(flow_id);
CREATE INDEX findings_kind_value ON findings(kind, value);
