-- +goose Up
-- Each device's current compliance state, as compliance.Evaluate gave it.
-- rules holds every rule's result (observed, expected, outcome, reason).
CREATE TABLE device_compliance (
    device_id     TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    state         TEXT NOT NULL CHECK (state IN ('compliant', 'noncompliant', 'in_grace', 'not_evaluated', 'error')),
    policy_id     TEXT NOT NULL DEFAULT '',
    reason        TEXT NOT NULL DEFAULT '',
    rules         TEXT NOT NULL DEFAULT '[]',
    failing_since TIMESTAMPTZ,
    grace_ends_at TIMESTAMPTZ,
    evaluated_at  TIMESTAMPTZ NOT NULL,
    changed_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX device_compliance_state ON device_compliance (state);

-- Every change of state, in commit order: seq is the feed's cursor.
-- Writers serialise on an advisory lock so that seq never commits out of
-- order and a reader resuming after seq N cannot miss a change.
CREATE TABLE compliance_changes (
    seq        BIGSERIAL PRIMARY KEY,
    device_id  TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    policy_id  TEXT NOT NULL DEFAULT '',
    reason     TEXT NOT NULL DEFAULT '',
    rules      TEXT NOT NULL DEFAULT '[]',
    cause      TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX compliance_changes_device ON compliance_changes (device_id, seq);

-- +goose Down
DROP TABLE compliance_changes;
DROP TABLE device_compliance;
