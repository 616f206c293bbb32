-- +goose Up
-- Compliance policies. rules is the JSON of compliance.Policy. A device
-- gets the policy of its group with the lowest priority number; with none,
-- the default for its platform, then the default for every platform ('').
CREATE TABLE compliance_policies (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    platform   TEXT NOT NULL DEFAULT '' CHECK (platform IN ('', 'ios', 'android')),
    rules      TEXT NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT 0,
    version    INTEGER NOT NULL DEFAULT 1,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
CREATE UNIQUE INDEX compliance_policies_one_default ON compliance_policies (platform) WHERE is_default;

CREATE TABLE compliance_policy_groups (
    policy_id TEXT NOT NULL REFERENCES compliance_policies (id) ON DELETE CASCADE,
    group_id  TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    priority  INTEGER NOT NULL,
    PRIMARY KEY (policy_id, group_id)
);
CREATE INDEX compliance_policy_groups_group ON compliance_policy_groups (group_id);

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
DROP TABLE compliance_policy_groups;
DROP TABLE compliance_policies;
