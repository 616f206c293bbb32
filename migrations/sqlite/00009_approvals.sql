-- +goose Up
-- Two-person approval of destructive actions (a full wipe, a group wipe):
-- a request is carried out only after a second admin approves it. The
-- pending → approved move is a conditional update, so exactly one of
-- several concurrent approvals (on any replica) carries the action out.
CREATE TABLE approvals (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    target_type       TEXT NOT NULL,
    target_id         TEXT NOT NULL,
    params            TEXT,
    reason            TEXT NOT NULL,
    requested_by      TEXT NOT NULL,
    requested_by_name TEXT NOT NULL DEFAULT '',
    -- The person behind the request (mdmd.Principal.Person).
    requested_by_person TEXT NOT NULL DEFAULT '',
    requested_at      DATETIME NOT NULL,
    expires_at        DATETIME NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'failed')),
    decided_by        TEXT NOT NULL DEFAULT '',
    decided_by_name   TEXT NOT NULL DEFAULT '',
    decided_at        DATETIME,
    decision_reason   TEXT NOT NULL DEFAULT '',
    result            TEXT
);
CREATE INDEX approvals_state ON approvals (state, requested_at);
CREATE INDEX approvals_requested ON approvals (requested_at);

-- +goose Down
DROP TABLE approvals;
