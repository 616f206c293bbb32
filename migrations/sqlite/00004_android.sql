-- +goose Up
-- Android Enterprise enrollment tokens. The token value and QR payload are
-- sealed: anyone holding them can enroll a device.
CREATE TABLE android_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL CHECK (kind IN ('work_profile', 'fully_managed')),
    owner_user   TEXT NOT NULL DEFAULT '',
    policy_name  TEXT NOT NULL DEFAULT '',
    one_time     BOOLEAN NOT NULL,
    value_sealed BLOB NOT NULL,
    qr_sealed    BLOB NOT NULL,
    expires_at   DATETIME NOT NULL,
    created_by   TEXT NOT NULL DEFAULT '',
    created_at   DATETIME NOT NULL,
    revoked_at   DATETIME
);

-- The Android side of a device, as AMAPI last reported it.
CREATE TABLE android_devices (
    device_id              TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    amapi_name             TEXT NOT NULL UNIQUE,
    token_id               TEXT NOT NULL DEFAULT '',
    management_mode        TEXT NOT NULL DEFAULT '',
    amapi_ownership        TEXT NOT NULL DEFAULT '',
    applied_state          TEXT NOT NULL DEFAULT '',
    policy_name            TEXT NOT NULL DEFAULT '',
    applied_policy_version INTEGER NOT NULL DEFAULT 0,
    policy_compliant       BOOLEAN NOT NULL DEFAULT 0,
    non_compliance         TEXT,
    last_status_report     DATETIME,
    last_publish_time      DATETIME NOT NULL,
    updated_at             DATETIME NOT NULL
);

-- Pub/Sub message IDs already applied: a redelivered message changes nothing.
CREATE TABLE pubsub_messages (
    message_id  TEXT PRIMARY KEY,
    received_at DATETIME NOT NULL
);
CREATE INDEX pubsub_messages_received ON pubsub_messages (received_at);

-- The AMAPI operation (or call) a command became.
ALTER TABLE commands ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX commands_external ON commands (external_id);

-- Fixed-window counters shared by every replica: the client-side limit on
-- calls to AMAPI holds for the whole deployment.
CREATE TABLE rate_windows (
    name         TEXT NOT NULL,
    window_start DATETIME NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (name, window_start)
);

-- mdmd's Android policies and the AMAPI version each was last saved as.
CREATE TABLE android_policies (
    id         TEXT PRIMARY KEY,
    amapi_name TEXT NOT NULL UNIQUE,
    settings   TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_by TEXT NOT NULL DEFAULT '',
    updated_at DATETIME NOT NULL
);

-- +goose Down
DROP TABLE android_policies;
DROP TABLE rate_windows;
DROP INDEX commands_external;
ALTER TABLE commands DROP COLUMN external_id;
DROP TABLE pubsub_messages;
DROP TABLE android_devices;
DROP TABLE android_tokens;
