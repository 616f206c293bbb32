-- +goose Up
-- The device event log that webhooks and SSF streams consume: compliance
-- changes, threat-level changes and noncompliance notifications. Writers
-- are serialised (SQLite has one writer at a time), so seq commits in
-- order and a consumer resuming after seq N misses nothing.
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    type      TEXT NOT NULL,
    device_id TEXT NOT NULL DEFAULT '',
    data      TEXT NOT NULL,
    at        DATETIME NOT NULL
);
CREATE INDEX events_at ON events (at);

-- How far each consumer (webhook fan-out, SSF fan-out) has read the log.
CREATE TABLE event_cursors (
    consumer   TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL DEFAULT 0,
    updated_at DATETIME NOT NULL
);

-- The latest threat verdict from a mobile-threat-defense partner.
CREATE TABLE device_threats (
    device_id    TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    level        TEXT NOT NULL CHECK (level IN ('secured', 'low', 'medium', 'high')),
    compromised  BOOLEAN,
    source       TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}',
    reported_by  TEXT NOT NULL DEFAULT '',
    reported_at  DATETIME NOT NULL,
    heartbeat_at DATETIME NOT NULL
);

-- Devices whose inputs changed since their last evaluation. Posture and
-- threat writes mark a device in their own transaction; evaluators claim
-- marks with a short lease and delete them only if not marked again since
-- (version counts the marks; marked_at is the first, so that marking a
-- marked device again leaves the index alone).
CREATE TABLE compliance_dirty (
    device_id     TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    version       BIGINT NOT NULL DEFAULT 1,
    marked_at     DATETIME NOT NULL,
    claimed_until DATETIME
);
CREATE INDEX compliance_dirty_marked ON compliance_dirty (marked_at);

-- Noncompliance actions, one row per device, episode (the failing_since
-- that began it) and action: the primary key makes each run once.
CREATE TABLE compliance_actions (
    id           TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    episode      DATETIME NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('notify', 'lock', 'selective_wipe')),
    policy_id    TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('running', 'pending_approval', 'done', 'rejected', 'failed', 'cancelled')),
    detail       TEXT NOT NULL DEFAULT '',
    command_id   TEXT NOT NULL DEFAULT '',
    decided_by   TEXT NOT NULL DEFAULT '',
    created_at   DATETIME NOT NULL,
    updated_at   DATETIME NOT NULL,
    UNIQUE (device_id, episode, action)
);
CREATE INDEX compliance_actions_state ON compliance_actions (state, created_at);

-- A relying party's API token names the audience of the compliance
-- tokens it may get.
ALTER TABLE api_tokens ADD COLUMN audience TEXT NOT NULL DEFAULT '';
-- The admin user who owns a token (who minted it, through any chain of
-- tokens): two-person rules compare people, not credentials.
ALTER TABLE api_tokens ADD COLUMN owner_user_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE api_tokens DROP COLUMN owner_user_id;
ALTER TABLE api_tokens DROP COLUMN audience;
DROP TABLE compliance_actions;
DROP TABLE compliance_dirty;
DROP TABLE device_threats;
DROP TABLE event_cursors;
DROP TABLE events;
