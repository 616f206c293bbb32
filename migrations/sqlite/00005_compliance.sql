-- +goose Up
-- Each device's current compliance state, as compliance.Evaluate gave it.
-- rules holds every rule's result (observed, expected, outcome, reason).
CREATE TABLE device_compliance (
    device_id     TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    state         TEXT NOT NULL CHECK (state IN ('compliant', 'noncompliant', 'in_grace', 'not_evaluated', 'error')),
    policy_id     TEXT NOT NULL DEFAULT '',
    reason        TEXT NOT NULL DEFAULT '',
    rules         TEXT NOT NULL DEFAULT '[]',
    failing_since DATETIME,
    grace_ends_at DATETIME,
    evaluated_at  DATETIME NOT NULL,
    changed_at    DATETIME NOT NULL
);
CREATE INDEX device_compliance_state ON device_compliance (state);

-- Every change of state, in commit order: seq is the feed's cursor.
-- SQLite has one writer at a time, so seq always commits in order and a
-- reader resuming after seq N cannot miss a change.
CREATE TABLE compliance_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    policy_id  TEXT NOT NULL DEFAULT '',
    reason     TEXT NOT NULL DEFAULT '',
    rules      TEXT NOT NULL DEFAULT '[]',
    cause      TEXT NOT NULL,
    at         DATETIME NOT NULL
);
CREATE INDEX compliance_changes_device ON compliance_changes (device_id, seq);

-- +goose Down
DROP TABLE compliance_changes;
DROP TABLE device_compliance;
