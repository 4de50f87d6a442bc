-- Sessions name the machine that captured them (phonehome run --sensor), and
-- each flow the device that sent it when the capture source knows it (a
-- WireGuard peer's name; '' for a device known only by its address).
-- session_devices lists the names each session's flows are reported under
-- (flow.Flow.DeviceName): reports and listings filter sessions by device
-- without reading their flows. Rows written before this migration are listed
-- by phonehome right after it.
ALTER TABLE sessions ADD COLUMN sensor TEXT NOT NULL DEFAULT '';
ALTER TABLE flows ADD COLUMN device TEXT NOT NULL DEFAULT '';

CREATE TABLE session_devices (
    session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    device     TEXT    NOT NULL,
    PRIMARY KEY (session_id, device)
) WITHOUT ROWID;
