-- +goose Up
CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    platform         TEXT NOT NULL CHECK (platform IN ('ios', 'android')),
    name             TEXT NOT NULL DEFAULT '',
    serial_number    TEXT NOT NULL DEFAULT '',
    udid             TEXT UNIQUE,
    amapi_name       TEXT UNIQUE,
    model            TEXT NOT NULL DEFAULT '',
    os_version       TEXT NOT NULL DEFAULT '',
    ownership        TEXT NOT NULL CHECK (ownership IN ('corporate', 'personal')),
    enrollment_state TEXT NOT NULL CHECK (enrollment_state IN ('pending', 'enrolled', 'unenrolled', 'wiped')),
    owner_user       TEXT NOT NULL DEFAULT '',
    last_seen_at     TIMESTAMPTZ,
    enrolled_at      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    CHECK ((platform = 'ios' AND udid IS NOT NULL AND amapi_name IS NULL)
        OR (platform = 'android' AND amapi_name IS NOT NULL AND udid IS NULL))
);
-- Listings are keyset-paged by id; each filter column leads an index that
-- ends in id, so a filtered page is an index range scan, not a sort.
CREATE INDEX devices_platform ON devices (platform, id);
CREATE INDEX devices_state ON devices (enrollment_state, id);
CREATE INDEX devices_owner ON devices (owner_user, id);
CREATE INDEX devices_serial ON devices (serial_number);
CREATE INDEX devices_last_seen ON devices (last_seen_at);

CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE device_groups (
    group_id  TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX device_groups_device ON device_groups (device_id);

CREATE TABLE commands (
    id           TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    request_type TEXT NOT NULL,
    payload      BYTEA,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'not_now', 'acknowledged', 'error', 'format_error', 'canceled')),
    priority     INTEGER NOT NULL DEFAULT 0,
    created_by   TEXT NOT NULL DEFAULT '',
    deliveries   INTEGER NOT NULL DEFAULT 0,
    result       BYTEA,
    error        TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    sent_at      TIMESTAMPTZ,
    completed_at TIMESTAMPTZ
);
-- The queue lookup of a checking-in device reads only active commands, in order.
CREATE INDEX commands_device_queue ON commands (device_id, priority DESC, created_at, id)
    WHERE status IN ('queued', 'sent', 'not_now');
CREATE INDEX commands_device_all ON commands (device_id, id);
CREATE INDEX commands_completed ON commands (completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    actor_type  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL DEFAULT '',
    target_id   TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL,
    details     BYTEA,
    request_id  TEXT NOT NULL DEFAULT '',
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_events_target ON audit_events (target_id, seq);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE admin_users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until  TIMESTAMPTZ,
    last_login_at TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    created_by   TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);

-- Key pairs (the device CA, the profile signer). key_enc is sealed with the
-- server's secret key; a dump of this table does not reveal a private key.
CREATE TABLE keypairs (
    name       TEXT PRIMARY KEY,
    cert_pem   TEXT NOT NULL,
    key_enc    BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      BYTEA,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'dead')),
    run_at       TIMESTAMPTZ NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    unique_key   TEXT UNIQUE,
    lease_owner  TEXT NOT NULL DEFAULT '',
    lease_until  TIMESTAMPTZ,
    last_error   TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    done_at      TIMESTAMPTZ
);
CREATE INDEX jobs_ready ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE status = 'running';
CREATE INDEX jobs_done ON jobs (done_at) WHERE status IN ('done', 'dead');

-- +goose Down
DROP TABLE jobs;
DROP TABLE settings;
DROP TABLE keypairs;
DROP TABLE api_tokens;
DROP TABLE admin_users;
DROP TABLE audit_events;
DROP TABLE commands;
DROP TABLE device_groups;
DROP TABLE groups;
DROP TABLE devices;
