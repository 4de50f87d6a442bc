CREATE TABLE sessions (
    id      INTEGER PRIMARY KEY,
    name    TEXT    NOT NULL UNIQUE,
    started INTEGER NOT NULL, -- unix nanoseconds
    source  TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE flows (
    id              INTEGER PRIMARY KEY,
    session_id      INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    source          TEXT    NOT NULL DEFAULT '',
    seq             INTEGER NOT NULL DEFAULT 0,
    start_ns        INTEGER NOT NULL DEFAULT 0,
    end_ns          INTEGER NOT NULL DEFAULT 0,
    client          TEXT    NOT NULL DEFAULT '',
    server          TEXT    NOT NULL DEFAULT '',
    host            TEXT    NOT NULL DEFAULT '',
    transport       TEXT    NOT NULL,
    bytes_up        INTEGER NOT NULL DEFAULT 0,
    bytes_down      INTEGER NOT NULL DEFAULT 0,
    method          TEXT,
    url             TEXT,
    req_proto       TEXT,
    req_headers     TEXT, -- JSON [[name, value], ...]
    req_trailers    TEXT,
    req_body        BLOB,
    req_body_size   INTEGER,
    req_body_flags  INTEGER, -- 1 truncated by a size limit, 2 bytes missing from the capture
    status          INTEGER,
    reason          TEXT,
    resp_proto      TEXT,
    resp_headers    TEXT,
    resp_trailers   TEXT,
    resp_body       BLOB,
    resp_body_size  INTEGER,
    resp_body_flags INTEGER,
    tls             TEXT, -- JSON {"sni","alpn","version","decrypted"}
    dns             TEXT, -- JSON {"id","name","type","rcode","answers","answered"}
    notes           TEXT  -- JSON array of strings
);

CREATE INDEX flows_session_host ON flows(session_id, host);
CREATE INDEX flows_session_start ON flows(session_id, start_ns);
