-- +goose Up
-- Keys that sign JWTs and SETs (jwtsign), one ring per purpose. Each
-- rotation inserts the ring's next generation, so replicas that rotate
-- or bootstrap at once create exactly one key.
CREATE TABLE signing_keys (
    ring        TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    kid         TEXT NOT NULL UNIQUE,
    alg         TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    key_enc     BLOB NOT NULL,
    created_at  DATETIME NOT NULL,
    active_from DATETIME NOT NULL,
    PRIMARY KEY (ring, generation)
);

-- Shared Signals Framework streams, each owned by one receiver token.
CREATE TABLE ssf_streams (
    id                   TEXT PRIMARY KEY,
    owner_id             TEXT NOT NULL,
    owner_name           TEXT NOT NULL DEFAULT '',
    aud                  TEXT NOT NULL,
    delivery_method      TEXT NOT NULL CHECK (delivery_method IN ('urn:ietf:rfc:8935', 'urn:ietf:rfc:8936')),
    endpoint_url         TEXT NOT NULL DEFAULT '',
    auth_header_enc      BLOB,
    events_requested     TEXT,
    events_delivered     TEXT NOT NULL DEFAULT '[]',
    description          TEXT NOT NULL DEFAULT '',
    subject_format       TEXT NOT NULL CHECK (subject_format IN ('complex', 'email', 'iss_sub', 'opaque')),
    all_subjects         BOOLEAN NOT NULL DEFAULT FALSE,
    status               TEXT NOT NULL CHECK (status IN ('enabled', 'paused', 'disabled')),
    status_reason        TEXT NOT NULL DEFAULT '',
    -- Who set the status: while an administrator's pause or disable is in
    -- force, the receiver cannot change it.
    status_by            TEXT NOT NULL DEFAULT 'receiver' CHECK (status_by IN ('receiver', 'admin')),
    last_verification_at DATETIME,
    push_next_at         DATETIME NOT NULL,
    push_lease_owner     TEXT NOT NULL DEFAULT '',
    push_lease_until     DATETIME,
    push_failures        INTEGER NOT NULL DEFAULT 0,
    push_last_error      TEXT NOT NULL DEFAULT '',
    created_at           DATETIME NOT NULL,
    updated_at           DATETIME NOT NULL
);
CREATE INDEX ssf_streams_owner ON ssf_streams (owner_id, created_at);

-- Subjects added to a stream (exclusions on an all-subjects stream). An
-- empty key is a wildcard.
CREATE TABLE ssf_subjects (
    stream_id  TEXT NOT NULL REFERENCES ssf_streams (id) ON DELETE CASCADE,
    device_key TEXT NOT NULL DEFAULT '',
    user_key   TEXT NOT NULL DEFAULT '',
    subject    TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (stream_id, device_key, user_key)
);
CREATE INDEX ssf_subjects_device ON ssf_subjects (device_key) WHERE device_key <> '';
CREATE INDEX ssf_subjects_user ON ssf_subjects (user_key) WHERE user_key <> '';

-- The SET queue: one row per SET and stream, its claims fixed when
-- queued and signed when delivered.
CREATE TABLE ssf_sets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    jti         TEXT NOT NULL UNIQUE,
    stream_id   TEXT NOT NULL REFERENCES ssf_streams (id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL,
    subject_key TEXT NOT NULL DEFAULT '',
    control     BOOLEAN NOT NULL DEFAULT FALSE,
    claims      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'outstanding', 'delivered', 'failed', 'expired')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     DATETIME NOT NULL,
    last_error  TEXT NOT NULL DEFAULT '',
    created_at  DATETIME NOT NULL,
    done_at     DATETIME
);
CREATE INDEX ssf_sets_queue ON ssf_sets (stream_id, state, id);
CREATE INDEX ssf_sets_age ON ssf_sets (state, created_at);
CREATE INDEX ssf_sets_done ON ssf_sets (done_at) WHERE done_at IS NOT NULL;

-- +goose Down
DROP TABLE ssf_sets;
DROP TABLE ssf_subjects;
DROP TABLE ssf_streams;
DROP TABLE signing_keys;
