-- +goose Up
-- Bulk actions: one action (posture query, lock, selective or full wipe)
-- on the devices a console filter selected. The devices are fixed when the
-- action is created, one row each in bulk_action_targets, so a second
-- admin approves a list of devices and progress is counted from the rows.
CREATE TABLE bulk_actions (
    id              TEXT PRIMARY KEY,
    action          TEXT NOT NULL CHECK (action IN ('query', 'lock', 'wipe_selective', 'wipe_full')),
    filter          TEXT NOT NULL,
    params          TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    state           TEXT NOT NULL CHECK (state IN ('awaiting_approval', 'running', 'done', 'cancelled')),
    total           INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    created_by_name TEXT NOT NULL DEFAULT '',
    created_at      DATETIME NOT NULL,
    approval_id     TEXT NOT NULL DEFAULT '',
    started_at      DATETIME,
    finished_at     DATETIME
);
CREATE INDEX bulk_actions_created ON bulk_actions (created_at DESC, id DESC);

-- A target is claimed under a lease (claimed_until) by the replica that
-- sends it; a claim whose replica died is taken over when it runs out.
CREATE TABLE bulk_action_targets (
    bulk_id       TEXT NOT NULL REFERENCES bulk_actions (id) ON DELETE CASCADE,
    device_id     TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'skipped')),
    command_id    TEXT NOT NULL DEFAULT '',
    error         TEXT NOT NULL DEFAULT '',
    claimed_until DATETIME,
    updated_at    DATETIME,
    PRIMARY KEY (bulk_id, device_id)
);
CREATE INDEX bulk_action_targets_state ON bulk_action_targets (bulk_id, state, device_id);

-- +goose Down
DROP TABLE bulk_action_targets;
DROP TABLE bulk_actions;
