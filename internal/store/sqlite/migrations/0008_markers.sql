-- Markers set in the web UI ("I opened Contacts now"): the flows of the
-- session that start at or after a marker, up to the next one, are its group.
CREATE TABLE IF NOT EXISTS markers (
    id         INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at_ns      INTEGER NOT NULL, -- unix nanoseconds
    label      TEXT    NOT NULL,
    note       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS markers_session ON markers(session_id, at_ns);
